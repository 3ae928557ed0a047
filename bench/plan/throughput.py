"""Throughputs for `bench plan`: a small cited table for named GPUs, and timed batches on this machine.

Every table row says where it comes from. "measured" rows were timed with benchmarks/bench_plan_throughput.py
on an NVIDIA H200 (torch 2.11, bf16 autocast, batch 256, random-init weights, inputs already on the GPU: an
upper bound for student training, which also loads batches and evaluates val). "published" rows are timm's own
benchmark CSVs. Every other GPU figure is an estimate scaled from those and says so.

A rate timed here is kept per machine and per architecture, input and batch (the timing cache), so a second
`bench plan` times nothing it already knows; `--measure` times again.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

H200_SOURCE = "measured on an H200 as benchmarks/bench_plan_throughput.py does (bf16, batch 256)"
TIMM_4090 = "published: timm results/benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv (AMP, batch 1024)"
TRAIN_RATIO = 1 / 3  # estimate: a training step (forward + backward) costs about three forward passes

TEACHER_ARCH: dict[str, tuple[str, int]] = {  # bench teacher -> (timm architecture, native input size)
    "dino-vits16": ("vit_small_patch16_224", 224), "dino-vitb16": ("vit_base_patch16_224", 224),
    "beit-base": ("beit_base_patch16_224", 224), "beitv2-base": ("beit_base_patch16_224", 224),
    "clip-vitb16": ("vit_base_patch16_clip_224", 224), "clip-vitb32": ("vit_base_patch32_clip_224", 224),
    "siglip-base": ("vit_base_patch16_siglip_224", 224), "blip-base": ("vit_base_patch16_384", 384),
    "effnet-lite0": ("efficientnet_lite0", 224),
}
TEACHER_INFER: dict[tuple[str, str, int], tuple[float, str]] = {  # (gpu, arch, size) -> (images/s, source)
    ("h200", "vit_small_patch16_224", 224): (19205, H200_SOURCE),
    ("h200", "vit_base_patch16_224", 224): (8914, H200_SOURCE),
    ("h200", "beit_base_patch16_224", 224): (7378, H200_SOURCE),
    ("h200", "vit_base_patch16_clip_224", 224): (8875, H200_SOURCE),
    ("h200", "vit_base_patch16_384", 384): (2946, H200_SOURCE),
    ("h200", "efficientnet_lite0", 224): (14276, H200_SOURCE),
    ("h200", "efficientnet_lite0", 64): (47870, H200_SOURCE),
    ("rtx4090", "vit_small_patch16_224", 224): (7693, TIMM_4090),
    ("rtx4090", "vit_base_patch16_224", 224): (2787, TIMM_4090),
    ("rtx4090", "beit_base_patch16_224", 224): (2644, TIMM_4090),
    ("rtx4090", "vit_base_patch16_clip_224", 224): (2784, TIMM_4090),
    ("rtx4090", "vit_base_patch32_clip_224", 224): (10128, TIMM_4090),
    ("rtx4090", "vit_base_patch16_siglip_224", 224): (2439, TIMM_4090),
    ("rtx4090", "efficientnet_lite0", 224): (10377, TIMM_4090),
}
STUDENT_TRAIN: dict[tuple[str, int], float] = {  # (student, image size; 0 = head on a 768-d tap), H200 images/s
    ("resnet", 64): 17164, ("densenet", 64): 17303, ("cbam-resnet", 64): 14096, ("resnet", 28): 53801,
    ("vit", 32): 10113, ("projection", 0): 118153, ("bottleneck", 0): 157981, ("mha", 0): 51342,
    ("cbam", 0): 51342,  # estimate: cbam (a head on a feature map) was not timed; taken as mha's
}
# A GPU runs small batches far below its peak: each optimizer step and each run pay a fixed cost (kernel launches,
# Python, the val pass, the inference-cost measurement, the artifact). Measured on the H200 with the demo grid
# (benchmarks/gpu_check.sh, DEMO=1, 2026-11-26: 111 s for 13 cells where the compute-only rates predict 8 s);
# the same floors are assumed on the other GPUs (an estimate: launch-bound, not compute-bound).
FLOOR_SOURCE = "floors measured on an H200 running the demo grid (benchmarks/gpu_check.sh DEMO=1)"
STEP_FLOOR_S = {"standalone": 6.5e-3, "head": 2.0e-3}  # seconds per optimizer step at batch 32 (resnet d8; MLP)
RUN_FLOOR_S = 1.5  # seconds per run beyond its epochs: set-up, test pass, cost measurement, artifact, row
FINETUNE_FLOOR_S = 2.1e-3  # seconds per labeled-or-val image per fine-tune epoch (effnet-lite0 at 64 px)

GPU_SCALE: dict[str, tuple[float, str]] = {  # a GPU's speed relative to the measured H200 rows
    "h200": (1.0, H200_SOURCE),
    "h100": (0.9, "estimate: the H200's figures x 0.9 (same Hopper chip, slower memory)"),
    "a100": (0.4, "estimate: the H200's figures x 0.4 (dense bf16 peak 312 vs 790 TFLOP/s)"),
    "rtx4090": (2787 / 8914, "estimate: the H200's figures x 0.31 (timm's published ViT-B/16 4090 rate / H200)"),
}


@dataclass(frozen=True)
class Rate:
    """Images per second and where the figure comes from ('estimate' in it when it was not measured)."""

    images_per_s: float
    source: str


def gpu_names() -> list[str]:
    return sorted(GPU_SCALE)


def _scaled(rate: float, from_size: int, to_size: int) -> float:
    """Images/s scale with the pixel count (token count for a ViT): an estimate away from the row's size."""
    return rate * (from_size / max(to_size, 1)) ** 2


def teacher_rate(gpu: str, teacher: str, size: int) -> Rate | None:
    """A teacher's inference images/s on a named GPU at `size` px, or None when the table has no row for it."""
    arch = TEACHER_ARCH.get(teacher)
    if arch is None:
        return None
    rows = {(g, s): value for (g, a, s), value in TEACHER_INFER.items() if a == arch[0]}
    for row_gpu in (gpu, "h200"):
        sizes = sorted((s for g, s in rows if g == row_gpu), key=lambda s: abs(s - size))
        if sizes:
            rate, source = rows[(row_gpu, sizes[0])]
            scale, scale_source = GPU_SCALE[gpu] if row_gpu != gpu else (1.0, "")
            exact = sizes[0] == size and row_gpu == gpu
            via = f"{source}; {scale_source}" if scale_source else source
            note = source if exact else f"estimate from {arch[0]} at {sizes[0]} px ({via})"
            return Rate(_scaled(rate * scale, sizes[0], size), note)
    return None


def student_rate(gpu: str, student: str, head: bool, size: int) -> Rate | None:
    """A student's training images/s on a named GPU, scaled from the H200 rows (an estimate off those rows)."""
    scale, scale_source = GPU_SCALE[gpu]
    if head:
        rate = STUDENT_TRAIN.get((student, 0))
        return None if rate is None else Rate(rate * scale, f"{H200_SOURCE}" if gpu == "h200" else scale_source)
    sizes = sorted((s for name, s in STUDENT_TRAIN if name == student and s), key=lambda s: abs(s - size))
    if not sizes:
        return None
    exact = sizes[0] == size and gpu == "h200"
    note = H200_SOURCE if exact else f"estimate from {student} at {sizes[0]} px on the H200 ({scale_source})"
    return Rate(_scaled(STUDENT_TRAIN[(student, sizes[0])] * scale, sizes[0], size), note)


@dataclass
class Timings:
    """What this process's plan timed now and what it took from the timing cache (the CLI says which)."""

    refresh: bool = False  # `bench plan --measure`: time again, ignore the cache
    timed: int = 0
    cached: int = 0
    cached_at: set[str] = field(default_factory=set)


TIMINGS = Timings()
TIMING_FILE = "plan-throughput.json"


def timing_path() -> Path:
    """The timing cache under the cache root (read when called: `$BENCH_CACHE` may change)."""
    from bench.core import dirs

    return Path(os.environ.get("BENCH_CACHE") or dirs.DEFAULT_CACHE_DIR) / TIMING_FILE


def machine_key() -> str:
    """This machine as a timing depends on it: CPU model and count, torch version and threads, the GPU if any."""
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")),
               platform.processor() or platform.machine())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no gpu"
    return f"{cpu} x{os.cpu_count()}; torch {torch.__version__} threads {torch.get_num_threads()}; {gpu}"


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def fingerprint(kind: str, module: Any, shape: tuple[int, ...], batch: int) -> str:
    """What was timed: the module's class and parameter shapes, the input shape and batch (not its weights)."""
    digest = hashlib.sha256(f"{kind}|{type(module).__name__}|{shape}|{batch}".encode())
    for parameter in module.parameters():
        digest.update(str(tuple(parameter.shape)).encode())
    return digest.hexdigest()[:32]


def _read_timings(path: Path) -> dict[str, Any]:
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing or damaged: time again and rewrite it whole
        return {}
    return stored if isinstance(stored, dict) else {}


def _cached_rate(kind: str, module: Any, shape: tuple[int, ...], batch: int, measure: Any) -> float:
    """The rate timed earlier on this machine for the same architecture, input and batch; else timed and kept."""
    path, machine, key = timing_path(), machine_key(), fingerprint(kind, module, shape, batch)
    stored = _read_timings(path)
    hit = stored.get(machine, {}).get(key) if isinstance(stored.get(machine), dict) else None
    if not TIMINGS.refresh and isinstance(hit, dict) and isinstance(hit.get("rate"), int | float) and hit["rate"] > 0:
        TIMINGS.cached += 1
        TIMINGS.cached_at.add(str(hit.get("at", "?")))
        return float(hit["rate"])
    rate = measure()
    TIMINGS.timed += 1
    mine = stored.get(machine) if isinstance(stored.get(machine), dict) else {}
    stored[machine] = {**mine, key: {"rate": rate, "at": time.strftime("%Y-%m-%d", time.gmtime())}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(stored, file)
        os.replace(temporary, path)  # atomic: a concurrent plan reads the old file or the new one
    except OSError:  # an unwritable cache only costs the next plan its timing
        pass
    return rate


def _rate_of(step: Any, batch: int, seconds: float) -> float:
    """Images/s of `step()`'s fastest step (other processes only slow a step down) within about `seconds`,
    after one warm-up step; at least 2 and at most 20 timed steps."""
    step()
    fastest, count, start = float("inf"), 0, time.perf_counter()
    while count < 20 and (count < 2 or time.perf_counter() - start < seconds):
        begin = time.perf_counter()
        step()
        fastest = min(fastest, time.perf_counter() - begin)
        count += 1
    return batch / fastest


def measure_teacher(teacher: Any, size: int, batch: int = 64, seconds: float = 1.5) -> float:
    """Inference images/s of a loaded teacher on this machine (a few batches of blank images)."""
    import torch

    from bench.core.taps import POOLED

    device = next((p.device for p in teacher.parameters()), torch.device("cpu"))
    images = torch.zeros(batch, 3, size, size, device=device)

    @torch.no_grad()
    def step() -> None:
        teacher.features(images, [POOLED])

    return _cached_rate("teacher", teacher, (3, size, size), batch, lambda: _rate_of(step, batch, seconds))


def measure_student(student: Any, shape: tuple[int, ...], batch: int, seconds: float = 1.0) -> float:
    """Training images/s (forward, cross-entropy, backward, AdamW) of a built student on this machine."""
    import torch
    from torch import nn

    inputs = torch.randn(batch, *shape)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)

    def step() -> None:
        logits = student(inputs)["logits"]
        loss = nn.functional.cross_entropy(logits, torch.zeros(batch, dtype=torch.long))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    student.train()
    return _cached_rate("student", student, shape, batch, lambda: _rate_of(step, batch, seconds))


def measure_bundle(students: list[Any], shape: tuple[int, ...], batch: int, seconds: float = 1.0) -> float:
    """Training images/s of head students stepped as one stacked model, as `--bundle auto` trains them
    (bench/run/stacked.py: one batched forward, cross-entropy, backward and the stacked fused AdamW), counting every
    cell's images: a cell's share of the bundle's time is its own images / this rate."""
    import torch
    from torch import nn

    from bench.run.stacked import StackedAdamW, StackedHeads

    count = len(students)
    model = StackedHeads(students, [torch.Generator().manual_seed(i) for i in range(count)])
    optimizer = StackedAdamW(model, [0.0] * count)
    inputs = torch.randn(count, batch, *shape)
    labels = torch.zeros(count * batch, dtype=torch.long)

    def step() -> None:
        loss = nn.functional.cross_entropy(model(inputs)["logits"].flatten(0, 1), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step([1e-4] * count)

    model.train()
    return _cached_rate(f"bundle of {count}", students[0], shape, batch,
                        lambda: _rate_of(step, count * batch, seconds))
