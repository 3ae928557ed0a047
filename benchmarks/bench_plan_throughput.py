"""Measure the throughputs `bench plan` uses for a GPU: teacher inference and student training images/s.

Random-init timm models (no weights, no network) and the registry's own students, bf16 autocast on CUDA
(fp32 on CPU), a few warm-up steps then a timed window. Prints one CSV row per model; the figures in
bench/plan/throughput.py's measured rows came from this script.

    python benchmarks/bench_plan_throughput.py [--seconds 3] [--batch 256]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn

TEACHERS = (  # (timm model, input size): the architectures behind bench's teachers
    ("vit_small_patch16_224", 224), ("vit_base_patch16_224", 224), ("beit_base_patch16_224", 224),
    ("vit_base_patch16_clip_224", 224), ("vit_base_patch16_384", 384), ("efficientnet_lite0", 224),
    ("efficientnet_lite0", 64),
)
STUDENTS = (  # (bench student, image size, head input shape or None): the paper grids' students
    ("resnet", 64, None), ("densenet", 64, None), ("cbam-resnet", 64, None), ("resnet", 28, None),
    ("vit", 32, None), ("projection", 0, (768,)), ("bottleneck", 0, (768,)), ("mha", 0, (196, 768)),
)


def timed(step: Callable[[], None], seconds: float, device: torch.device) -> float:
    """Steps per second of `step` over about `seconds` after three warm-up steps."""
    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or count < 2:
        step()
        count += 1
        if device.type == "cuda" and count % 5 == 0:
            torch.cuda.synchronize()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def autocast(device: torch.device):  # noqa: ANN201 - a context manager
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def teacher_rate(name: str, size: int, batch: int, seconds: float, device: torch.device) -> float:
    """Inference images/s of a random-init timm model."""
    import timm

    model = timm.create_model(name, pretrained=False, img_size=size) if "vit" in name else (
        timm.create_model(name, pretrained=False))
    model = model.to(device).eval()
    images = torch.randn(batch, 3, size, size, device=device)

    @torch.no_grad()
    def step() -> None:
        with autocast(device):
            model(images)

    return batch * timed(step, seconds, device)


def student_rate(name: str, size: int, shape: tuple[int, ...] | None, batch: int, seconds: float,
                 device: torch.device) -> float:
    """Training images/s (forward, cross-entropy, backward, AdamW step) of a bench student."""
    from bench.core.registries import STUDENTS as REGISTRY
    from bench.students.base import StudentContext

    entry = REGISTRY.entry(name)
    hparams = dict(entry.obj.defaults)
    if name == "vit":
        hparams.update(shrink=0.4, depth=12, heads=6, mlp_ratio=4.0)
    context = StudentContext(100, 768, size or 32, input_shape=shape, teacher_params=21_665_664)
    model: nn.Module = entry.obj(context, hparams).to(device)
    inputs = torch.randn(batch, *(shape or (3, size, size)), device=device)
    labels = torch.randint(0, 100, (batch,), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        with autocast(device):
            logits = model(inputs)["logits"]
            loss = nn.functional.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return batch * timed(step, seconds, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--only", choices=("teachers", "students"), default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    label = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"# device: {label}; torch {torch.__version__}; batch {args.batch}")
    print("kind,model,image_size,images_per_s")
    if args.only != "students":
        for name, size in TEACHERS:
            rate = teacher_rate(name, size, args.batch, args.seconds, device)
            print(f"teacher_infer,{name},{size},{rate:.0f}", flush=True)
    if args.only != "teachers":
        for name, size, shape in STUDENTS:
            rate = student_rate(name, size, shape, args.batch, args.seconds, device)
            print(f"student_train,{name},{size or 'head'},{rate:.0f}", flush=True)


if __name__ == "__main__":
    main()
