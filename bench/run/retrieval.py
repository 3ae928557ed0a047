"""Image-text runs (COCO captions): students learn the teacher's joint space; scored by retrieval recall.

Head students read their teacher tap, standalone students read images (bench/run/run_spec.py); a
joint-space method maps the student embedding into the space of the teacher's `image_embed`, where
test images are ranked against the teacher's `encode_text` of every test caption (and the reverse).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F

from bench.core.errors import BenchError
from bench.core.names import JOINT_SPACE_REFERENCE
from bench.core.registries import TEACHERS
from bench.core.spec import ExperimentSpec
from bench.core.taps import IMAGE_EMBED, POOLED, TEXT_EMBED
from bench.data.splits import DatasetSplits, Split
from bench.methods.joint import JointSpaceMethod
from bench.run.loader import ImageInputs, eval_batches
from bench.run.metrics import flatten_captions, retrieval_recalls
from bench.run.parts import RunParts
from bench.run.task import Inputs
from bench.run.train import TrainData, TrainResult, state_size_mb
from bench.run.workbench import Workbench
from bench.teacher_outputs.features import TeacherOutputs
from bench.teachers.base import Teacher

JOINT_TAPS = (IMAGE_EMBED, POOLED)  # the reference reads image_embed; pooled is what every run fetches
TEXT_BATCH = 256


def require_image_text(teacher: str, dataset: str) -> None:
    """Image-text datasets need a teacher with a joint space (its card's modality is image-text)."""
    if not TEACHERS.entry(teacher).card.image_text:
        raise BenchError(f"dataset {dataset!r} needs an image-text teacher (CLIP, BLIP); {teacher!r} is not one")


@torch.inference_mode()
def encode_texts(teacher: Teacher, texts: Sequence[str], device: torch.device) -> torch.Tensor:
    """The teacher's L2-normalised text embeddings, in batches."""
    teacher.to(device)
    chunks = [teacher.encode_text(list(texts[i : i + TEXT_BATCH])).float().cpu()
              for i in range(0, len(texts), TEXT_BATCH)]
    return F.normalize(torch.cat(chunks), dim=-1)


def caption_embeddings(bench: Workbench, teacher: Teacher, data: DatasetSplits, split: str) -> torch.Tensor:
    """Text embeddings of every caption of a split (flattened), through the feature cache."""
    texts, _ = flatten_captions(data.split(split).captions or ())
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    parts = {"kind": "text-embeddings", "teacher": teacher.name, "weights": teacher.fingerprint,
             "dataset": data.name, "split": split, "captions": digest, "count": len(texts)}
    tensors, _ = bench.cache.get_or_compute(parts, lambda: {TEXT_EMBED: encode_texts(teacher, texts, bench.device)})
    return tensors[TEXT_EMBED]


def per_image_text(text_embed: torch.Tensor, split: Split) -> torch.Tensor:
    """Normalised mean of each image's caption embeddings (one text target per image)."""
    _, owners = flatten_captions(split.captions or ())
    sums = torch.zeros(len(split), text_embed.shape[1]).index_add_(0, owners, text_embed)
    return F.normalize(sums, dim=-1)


def split_recalls(images: torch.Tensor, texts: torch.Tensor, split: Split) -> dict[str, float]:
    """Recall@1/5/10 both ways (and their mean) of image embeddings against the split's caption embeddings."""
    _, owners = flatten_captions(split.captions or ())
    return retrieval_recalls(F.normalize(images.float(), dim=-1), texts, owners)


@torch.inference_mode()
def joint_embeddings(student: torch.nn.Module, method: JointSpaceMethod, inputs: torch.Tensor | ImageInputs,
                     device: torch.device, batch_size: int = 512) -> torch.Tensor:
    """The trained student's embeddings of `inputs` (streamed) in the teacher's joint space, in eval mode, on the
    CPU."""
    student.eval()
    method.eval()
    return torch.cat([method.joint_embedding(student(batch)).float().cpu()
                      for batch in eval_batches(inputs, device, batch_size)])


@dataclass(frozen=True)
class RetrievalTask:
    """A retrieval run's task part: the teacher's own recalls in its joint space are its reference."""

    bench: Workbench
    data: DatasetSplits
    teacher: Teacher
    outputs: TeacherOutputs
    texts: dict[str, torch.Tensor]  # val and test: the teacher's embedding of every caption
    teacher_val: dict[str, float]
    teacher_test: dict[str, float]
    reference: str = JOINT_SPACE_REFERENCE

    @classmethod
    def prepare(cls, bench: Workbench, spec: ExperimentSpec, data: DatasetSplits, teacher: Teacher) -> RetrievalTask:
        """The teacher's image and caption embeddings (cached) and its own val and test recalls."""
        require_image_text(spec.teacher, spec.dataset)
        outputs = bench.teacher_outputs(spec.teacher, data, JOINT_TAPS)
        texts = {split: caption_embeddings(bench, teacher, data, split) for split in ("val", "test")}
        recalls = {split: split_recalls(outputs.features[split][IMAGE_EMBED], texts[split], data.split(split))
                   for split in ("val", "test")}
        return cls(bench, data, teacher, outputs, texts, recalls["val"], recalls["test"])

    def reference_fields(self) -> dict[str, Any]:
        """The reference cell: the teacher's recalls in its joint space; no student, the teacher's size."""
        return {"val_acc": self.teacher_val["mean_recall"], **self.teacher_test, "pct_of_teacher": 100.0,
                "params": 0, "method_params": 0, "size_mb": 0.0, "inference_params": self.teacher.num_params(),
                "inference_size_mb": state_size_mb(self.teacher)}

    def train_data(self, parts: RunParts, outputs: TeacherOutputs, inputs: Inputs, evaluate_test: bool) -> TrainData:
        """Train inputs only (val and test are scored by recall); the labels are the batch's image indices."""
        targets = {IMAGE_EMBED: outputs.features["train"][IMAGE_EMBED]}
        if parts.method.needs_text:
            train_text = caption_embeddings(self.bench, self.teacher, self.data, "train")
            targets[TEXT_EMBED] = per_image_text(train_text, self.data.train)
        train = inputs["train"]
        return TrainData({"train": train}, {"train": torch.arange(len(train))}, targets, class_labels=False)

    def val_score(self, parts: RunParts, inputs: Inputs) -> Callable[[], float] | None:
        return lambda: self.recalls(parts, inputs, "val")["mean_recall"]

    def recalls(self, parts: RunParts, inputs: Inputs, split: str) -> dict[str, float]:
        """The trained student's recalls on val or test, in the teacher's joint space."""
        method = cast(JointSpaceMethod, parts.method)  # run_spec lets only joint-space methods (by card) in here
        images = joint_embeddings(parts.student, method, inputs[split], self.bench.device)
        return split_recalls(images, self.texts[split], self.data.split(split))

    def result_fields(self, parts: RunParts, inputs: Inputs, result: TrainResult,
                      evaluate_test: bool) -> dict[str, Any]:
        """Val mean recall, and (unless a search trial) the test recalls and their share of the teacher's."""
        epochs = result.epochs
        val = epochs[-1].val_acc if epochs else self.recalls(parts, inputs, "val")["mean_recall"]
        if not evaluate_test:
            return {"val_acc": val}
        test = self.recalls(parts, inputs, "test")
        reference = self.teacher_test["mean_recall"]
        return {"val_acc": val, **test,
                "pct_of_teacher": 100.0 * test["mean_recall"] / reference if reference > 0 else None}
