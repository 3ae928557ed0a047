"""Teacher outputs of augmented views (data.teacher_views): the labeller, and the FKD-style view cache.

`cached` (Shen & Xing, ECCV 2022): for every train image, K views are drawn once (bench/data/views.py, keyed by
view seed, image and view index), the teacher labels each at its own input size, and the outputs are cached
with the views' parameters; the student replays exactly those views. `online` (Beyer et al., CVPR 2022,
function matching) runs the same labeller on every augmented batch. The labeller is the reference the run's
KD logits come from: the linear probe's chosen head on the pooled features, the zero-shot head, or the
fine-tuned teacher and its head (then only its pooled features and logits are served, as in `fixed`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from bench.core.errors import BenchError
from bench.core.taps import IMAGE_EMBED, LOGITS, POOLED
from bench.data.splits import DatasetSplits
from bench.data.views import UNIFORMS, keyed_uniforms, params_from_uniforms, render_views
from bench.teacher_outputs.cache import CacheEvent, FeatureCache, content_hash
from bench.teacher_outputs.features import PassRate, split_fingerprint, teacher_batch_size
from bench.teacher_outputs.reference import OWN_HEAD_REFERENCE
from bench.teachers.base import Preprocess, Teacher

VIEWS_VERSION = 1  # in the view cache's key: bump when drawing, rendering or labelling changes
PARAM_NAMES = ("theta", "partner", "lam", "partner_theta")


@dataclass
class Labeller:
    """The frozen (or fine-tuned) teacher and the head that turns its outputs into the run's KD logits."""

    model: Teacher
    preprocess: Preprocess  # at the run's teacher input size
    reference: str  # probe, zero-shot or finetune
    head: dict[str, torch.Tensor] | nn.Module | object  # probe tensors, zero-shot head, or the fine-tuned Linear
    key: dict[str, object]  # what identifies teacher + head in a cache key
    calls: int = 0  # teacher forwards (batches) so far
    images: int = 0  # images labelled so far
    seconds: float = 0.0  # time in the teacher and head so far (synchronised on CUDA)

    @property
    def logits_tap(self) -> str:
        return {"zero-shot": IMAGE_EMBED, "own-head": LOGITS}.get(self.reference, POOLED)

    def served_taps(self, taps: Sequence[str]) -> list[str]:
        """The teacher taps a batch must compute for `taps` (logits come from the head's tap)."""
        wanted = {tap for tap in taps if tap != LOGITS}
        if LOGITS in taps:
            wanted.add(self.logits_tap)
        if self.reference == "finetune" and wanted - {POOLED}:
            raise BenchError(f"data.teacher_reference 'finetune' serves only the fine-tuned {POOLED!r} features "
                             f"and logits; {sorted(wanted - {POOLED})} are not kept: pick another method")
        return sorted(wanted)

    @torch.no_grad()  # not inference_mode: a head student's inputs (online views) must be usable by autograd
    def __call__(self, images: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        """`taps` (LOGITS included) of a batch of teacher inputs, as float32 on the batch's device."""
        start = time.perf_counter()
        device = images.device
        self.model.to(device)
        if getattr(self.model, "channels_last", True):
            images = images.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
        with autocast:
            raw = self.model.features(images, self.served_taps(taps))
        outputs = {tap: value.float() for tap, value in raw.items()}
        if LOGITS in taps:
            outputs[LOGITS] = self._logits(outputs[self.logits_tap])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.calls += 1
        self.images += len(images)
        self.seconds += time.perf_counter() - start
        return {tap: outputs[tap] for tap in taps}

    def _logits(self, features: torch.Tensor) -> torch.Tensor:
        if self.reference == "probe":  # float64 as the probe's fit computes its logits, then float32
            head = {name: value.to(features.device, torch.float64) for name, value in self.head.items()}  # type: ignore[union-attr]
            return (((features.double() - head["mean"]) / head["std"]) @ head["weight"] + head["bias"]).float()
        if self.reference == "finetune":
            return self.head.to(features.device)(features).float()  # type: ignore[union-attr, operator]
        if self.reference == "own-head":  # a trained run's own classifier: its LOGITS tap is the target
            return features
        return self.head.logits(features).float()  # type: ignore[union-attr]


def make_labeller(teacher: Teacher, data: DatasetSplits, reference: object) -> Labeller:
    """The run's labeller: `reference` is the ProbeResult (probe, zero-shot, a trained run's own head) or the
    FinetuneResult."""
    preprocess = teacher.preprocess.with_size(data.config.image_size)
    kind = data.config.teacher_reference
    base = {"teacher": teacher.name, "weights": teacher.fingerprint, "reference": kind}
    if kind == "finetune":
        from bench.teacher_outputs.finetune import apply_state

        state = reference.state  # type: ignore[attr-defined]
        model, head = apply_state(teacher, state, data.num_classes)
        return Labeller(model.eval(), preprocess, kind, head.eval(), {**base, "state": content_hash(state)})
    if kind == "zero-shot":
        from bench.teachers.zero_shot import zero_shot_head

        with torch.inference_mode():
            head = zero_shot_head(teacher, data.class_names)
        return Labeller(teacher, preprocess, kind, head, {**base, "head": content_hash({"c": head.class_embeds})})
    if getattr(reference, "reference", None) == OWN_HEAD_REFERENCE:  # a trained run (teacher: run:...)
        return Labeller(teacher, preprocess, "own-head", None, {**base, "reference": "own-head"})
    probe_head = getattr(reference, "head", None)
    if probe_head is None:
        raise BenchError("data.teacher_views: the linear probe kept no head to label views with; clear the "
                         "cache directory's probe entries so it is refit")
    return Labeller(teacher, preprocess, kind, dict(probe_head), {**base, "head": content_hash(probe_head)})


def reference_targets(reference: str) -> str:
    """runs.kd_targets for views: which head labelled them (the probe's chosen head is not out-of-fold)."""
    return f"{reference}-views" if reference != "probe" else "probe-head-views"


@dataclass
class ViewCache:
    """Per train row and view: the teacher's outputs (`outputs`, name -> (K, N, ...)) and the view parameters
    (`params`, name -> (K, N, ...)); logits under top-k as values + indices + the tail's logit."""

    outputs: dict[str, torch.Tensor]
    params: dict[str, torch.Tensor]
    count: int
    event: CacheEvent
    images: int  # teacher images the entry took to compute (K x N)
    topk: int | None = None
    sizes: dict[str, int] = field(default_factory=dict)

    def targets(self, view: torch.Tensor, rows: torch.Tensor, name: str) -> torch.Tensor:
        """The outputs `name` of view[i] of row rows[i] (CPU indices); top-k logits rebuilt to full width."""
        if name == LOGITS and self.topk is not None:
            values = self.outputs["logits.values"][view, rows]
            indices = self.outputs["logits.indices"][view, rows]
            rest = self.outputs["logits.rest"][view, rows]
            full = rest.unsqueeze(-1).expand(-1, self.sizes["classes"]).clone()
            return full.scatter_(1, indices, values)
        return self.outputs[name][view, rows]

    def view_params(self, view: torch.Tensor, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: value[view, rows] for name, value in self.params.items()}


def compress_topk(logits: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """FKD's marginal smoothing in logit space: the top-k logits and their classes, and one logit for every other
    class such that, at temperature 1, each top-k class keeps its probability exactly and the other classes share
    the rest of the mass equally."""
    classes = logits.shape[-1]
    values, indices = logits.topk(k, dim=-1)
    if k >= classes:
        return {"logits.values": values, "logits.indices": indices, "logits.rest": values[..., -1]}
    masked = logits.scatter(-1, indices, float("-inf"))
    rest = torch.logsumexp(masked, dim=-1) - math.log(classes - k)
    return {"logits.values": values, "logits.indices": indices, "logits.rest": rest}


def view_cache(labeller: Labeller, data: DatasetSplits, taps: Sequence[str], cache: FeatureCache,
               device: torch.device, student_size: int) -> ViewCache:
    """The K views of every train row and the labeller's `taps` on each, through the feature cache (keyed by
    teacher+head, data, preprocessing, policy, K, view seed, top-k and the student size crop-pad-flip's pixels
    depend on); a damaged entry is moved aside and recomputed."""
    config = data.config
    count, seed, topk, mode = config.teacher_view_count, config.teacher_view_seed, config.teacher_view_topk, \
        config.augment
    taps = sorted(set(taps))
    split = data.train
    parts = {"kind": "teacher-views", "views_version": VIEWS_VERSION, **labeller.key, "dataset": data.name,
             "split_content": split_fingerprint(split), "preprocess": labeller.preprocess.as_dict(),
             "augment": mode, "views": count, "view_seed": seed, "topk": topk, "taps": taps,
             **({"student_size": student_size} if mode == "crop-pad-flip" else {})}
    rows = len(split)
    if topk is not None and LOGITS in taps and topk > data.num_classes:
        raise BenchError(f"data.teacher_view_topk: {topk} is more than the {data.num_classes} classes of "
                         f"{data.name!r}; use at most {data.num_classes} or null")

    def compute() -> dict[str, torch.Tensor]:
        return _compute_views(labeller, data, taps, device, student_size)

    def problem(tensors: dict[str, torch.Tensor]) -> str | None:
        if any(len(value) != count or value.shape[1] != rows for value in tensors.values()):
            return f"hold views for another view count or split size than {count} x {rows}"
        if not all(bool(torch.isfinite(value.float()).all()) for value in tensors.values()):
            return "hold non-finite values"
        return None

    tensors, event = cache.get_or_compute(parts, compute, problem)
    params = {name: tensors.pop(f"param.{name}") for name in PARAM_NAMES if f"param.{name}" in tensors}
    return ViewCache(tensors, params, count, event, count * rows, topk if LOGITS in taps else None,
                     {"classes": data.num_classes})


def _compute_views(labeller: Labeller, data: DatasetSplits, taps: Sequence[str], device: torch.device,
                   student_size: int) -> dict[str, torch.Tensor]:
    """Draw, render and label every view (K passes over the train split), as (K, N, ...) tensors."""
    config, split, preprocess = data.config, data.train, labeller.preprocess
    count, rows = config.teacher_view_count, len(data.train)
    batch_size = teacher_batch_size(device, preprocess.input_size)
    columns: dict[str, torch.Tensor] = {}
    rate = PassRate(f"teacher {labeller.model.name} views", count * rows)
    for view in range(count):
        for start in range(0, rows, batch_size):
            index = np.arange(start, min(start + batch_size, rows))
            params = params_from_uniforms(keyed_uniforms(config.teacher_view_seed, index, view, UNIFORMS),
                                          config.augment, rows, student_size)
            raw = torch.from_numpy(np.ascontiguousarray(split.images[index]))
            partner = (torch.from_numpy(np.ascontiguousarray(split.images[params["partner"].numpy()]))
                       if "partner" in params else None)
            images = render_views(raw.to(device), partner.to(device) if partner is not None else None, params,
                                  preprocess.input_size, preprocess.mean, preprocess.std, config.augment,
                                  preprocess.interpolation) if taps else None
            outputs = labeller(images, taps) if images is not None else {}
            if config.teacher_view_topk is not None and LOGITS in outputs:
                outputs = {**outputs, **compress_topk(outputs.pop(LOGITS), config.teacher_view_topk)}
            named = {**{name: value.cpu() for name, value in outputs.items()},
                     **{f"param.{name}": value for name, value in params.items()}}
            for name, value in named.items():
                if name not in columns:
                    columns[name] = torch.empty((count, rows, *value.shape[1:]), dtype=value.dtype)
                columns[name][view, start : start + len(value)] = value
            rate.advance(view * rows + start + len(index))
    return columns
