"""How close each phase of a sweep comes to this device's limits: a roofline table, all measured in one run.

1. The device's peaks: dense matmul FLOP/s (fp32; on CUDA bf16 too) and memory bandwidth (a large tensor copy,
   bytes read + written per second).
2. Each phase of a sweep at the demo's setting (studies/demo.yaml: effnet-lite0 at 64 px, a bottleneck head on its
   1280-d pooled features, a depth-8 width-16 ResNet at 28 px, batch 32) and at a paper-like one (the teacher at
   224 px, heads at batch 256, a depth-20 ResNet at 32 px, batch 128): the teacher pass, head-student training,
   standalone training, evaluation. Per phase: FLOPs per image from torch's FlopCounterMode (forward + backward
   for training; elementwise work, optimizer steps and Python are not counted, so these fractions are upper
   bounds of useful work), achieved FLOP/s as a fraction of the measured fp32 peak, images/s, CPU seconds per
   1000 images.
3. Side by side in the same process: every phase at torch's default threads (today's path) and at bench's default
   (bench/core/threads.py: the CPUs this process may use, less other load), wall and CPU time (the better of two
   alternating windows each; % peak is of the fp32 peak measured at bench's threads); and bundling
   (issue 28 item 1, not in the harness yet) as a torch.func prototype: 12 bottleneck heads stepped as one
   vmapped stack against 12 separate steps, the same arithmetic.

Random-init models (the teacher's architecture without its weights; no network), random images; a phase runs
`--seconds` after one warm-up step (at least two steps). On a shared machine the load is printed with the table:
compare figures only within one run.

    PYTHONPATH=$PWD python benchmarks/bench_roofline.py [--seconds 2] [--device cpu|cuda] [--settings demo paper]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.core.registries import STUDENTS
from bench.core.threads import resolve_threads
from bench.students.base import StudentContext

CLASSES = 10
SETTINGS = {  # teacher size/batch, head batch, ResNet depth/width/size/batch, eval batch
    "demo": {"teacher_size": 64, "teacher_batch": 128, "head_batch": 32, "depth": 8, "width": 16, "size": 28,
             "batch": 32, "eval_batch": 256},
    "paper": {"teacher_size": 224, "teacher_batch": 32, "head_batch": 256, "depth": 20, "width": 16, "size": 32,
              "batch": 128, "eval_batch": 256},
}


@dataclass(frozen=True)
class Timing:
    """One phase at one thread count: images/s, CPU seconds per 1000 images, FLOPs per image."""

    images_per_s: float
    cpu_per_1000: float
    flops_per_image: float


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_for(step: Callable[[], object], images: int, seconds: float, device: torch.device) -> tuple[float, float]:
    """(images/s, CPU s per 1000 images) of `step` after one warm-up, over >= 2 steps and `seconds`."""
    step()
    sync(device)
    steps, wall, cpu = 0, time.perf_counter(), time.process_time()
    while steps < 2 or time.perf_counter() - wall < seconds:
        step()
        steps += 1
    sync(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return steps * images / wall, 1000.0 * cpu / (steps * images)


def flops_of(step: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float) -> float:
    """FLOP/s of square matmuls large enough to be compute bound."""
    n = 1024 if device.type == "cpu" else 8192
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    per_second, _ = run_for(lambda: a @ b, 1, seconds, device)
    return per_second * 2 * n ** 3


def bandwidth(device: torch.device, seconds: float) -> float:
    """Bytes/s of copying a tensor far larger than the caches (read + write)."""
    count = (32 if device.type == "cpu" else 256) * 2 ** 20
    source, target = torch.empty(count, device=device), torch.empty(count, device=device)
    per_second, _ = run_for(lambda: target.copy_(source), 1, seconds, device)
    return per_second * 2 * 4 * count


def teacher_model() -> nn.Module:
    """effnet-lite0's architecture, random weights (timm; nothing downloaded), up to its pooled features."""
    import timm

    return timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0)


def student(name: str, setting: dict, teacher_dim: int = 1280) -> nn.Module:
    context = StudentContext(num_classes=CLASSES, teacher_dim=teacher_dim, image_size=setting["size"])
    return STUDENTS.get(name)(context, {"depth": setting["depth"], "width": setting["width"]})


def train_step(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> Callable[[], object]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs)["logits"], labels).backward()
        optimizer.step()

    return step


def phases(setting: dict, device: torch.device) -> dict[str, tuple[Callable[[], object], int]]:
    """Each phase's step and the images it handles."""
    teacher = teacher_model().to(device).eval()
    pixels = torch.rand(setting["teacher_batch"], 3, setting["teacher_size"], setting["teacher_size"], device=device)
    head = student("bottleneck", setting).to(device)
    features = torch.randn(setting["head_batch"], 1280, device=device)
    head_labels = torch.randint(0, CLASSES, (setting["head_batch"],), device=device)
    resnet = student("resnet", setting).to(device)
    images = torch.rand(setting["batch"], 3, setting["size"], setting["size"], device=device)
    labels = torch.randint(0, CLASSES, (setting["batch"],), device=device)
    evaluated = student("resnet", setting).to(device).eval()
    test = torch.rand(setting["eval_batch"], 3, setting["size"], setting["size"], device=device)

    def teacher_pass() -> None:
        with torch.inference_mode():
            teacher(pixels)

    def evaluation() -> None:
        with torch.inference_mode():
            evaluated(test)

    return {"teacher pass": (teacher_pass, len(pixels)),
            "head training": (train_step(head, features, head_labels), len(features)),
            "standalone training": (train_step(resnet, images, labels), len(images)),
            "evaluation": (evaluation, len(test))}


def bundle_speedup(setting: dict, device: torch.device, seconds: float, models: int = 12) -> tuple[float, float]:
    """(separate images/s, bundled images/s) of `models` bottleneck heads' SGD steps on one batch each."""
    from torch.func import functional_call, grad, stack_module_state, vmap

    heads = [student("bottleneck", setting).to(device) for _ in range(models)]
    batch = setting["head_batch"]
    features = torch.randn(models, batch, 1280, device=device)
    labels = torch.randint(0, CLASSES, (models, batch), device=device)

    def separate() -> None:
        for index, head in enumerate(heads):
            head.zero_grad(set_to_none=True)
            F.cross_entropy(head(features[index])["logits"], labels[index]).backward()
            with torch.no_grad():
                for parameter in head.parameters():
                    parameter -= 1e-3 * parameter.grad

    params, buffers = stack_module_state(heads)
    base = heads[0]

    def loss(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(base, (p, b), (x,))["logits"], y)

    per_model_grad = vmap(grad(loss), randomness="different")

    def bundled() -> None:
        grads = per_model_grad(params, buffers, features, labels)
        with torch.no_grad():
            for name, value in params.items():
                value -= 1e-3 * grads[name]

    return (run_for(separate, models * batch, seconds, device)[0],
            run_for(bundled, models * batch, seconds, device)[0])


def measure(setting_name: str, device: torch.device, seconds: float, peak: float,
            thread_counts: dict[str, int]) -> None:
    setting = SETTINGS[setting_name]
    print(f"\n{setting_name} setting: {setting}")
    columns = " ".join(f"{label + ' img/s':>16s} {'% peak':>7s} {'CPU s/1k':>9s}" for label in thread_counts)
    print(f"{'phase':20s} {'MFLOP/img':>10s} {columns}  bench vs torch threads (wall, CPU)")
    for name, (step, images) in phases(setting, device).items():
        flops = flops_of(step) / images
        runs: dict[str, list[tuple[float, float]]] = {label: [] for label in thread_counts}
        for label in [*thread_counts, *reversed(thread_counts)]:  # A B B A: a load burst hits both alike
            torch.set_num_threads(thread_counts[label])
            runs[label].append(run_for(step, images, seconds / 2, device))
        results = {label: Timing(max(r[0] for r in pair), min(r[1] for r in pair), flops)
                   for label, pair in runs.items()}
        cells = " ".join(f"{r.images_per_s:16.1f} {100 * r.images_per_s * flops / peak:6.2f}% {r.cpu_per_1000:9.3f}"
                         for r in results.values())
        today, ours = results.values() if len(results) == 2 else (results[next(iter(results))],) * 2
        print(f"{name:20s} {flops / 1e6:10.2f} {cells}  {ours.images_per_s / today.images_per_s:5.2f}x "
              f"{today.cpu_per_1000 / ours.cpu_per_1000:5.2f}x")
    torch.set_num_threads(thread_counts["bench"])
    separate, bundled = bundle_speedup(setting, device, seconds)
    print(f"bundling prototype: 12 bottleneck heads, batch {setting['head_batch']}: separate {separate:.0f} img/s, "
          f"one vmapped stack {bundled:.0f} img/s: {bundled / separate:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per phase and thread count")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    device = torch.device(args.device)
    thread_counts = {"torch": torch.get_num_threads(), "bench": resolve_threads(None)}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), torch "
          f"{torch.__version__}; threads: torch default {thread_counts['torch']}, bench default "
          f"{thread_counts['bench']}; load {load:.2f} on {os.cpu_count()} CPUs")
    torch.set_num_threads(thread_counts["bench"])
    peak = matmul_peak(device, torch.float32, args.seconds)
    print(f"peak: fp32 matmul {peak / 1e9:.1f} GFLOP/s, memory copy {bandwidth(device, args.seconds) / 1e9:.1f} GB/s"
          + (f", bf16 matmul {matmul_peak(device, torch.bfloat16, args.seconds) / 1e12:.1f} TFLOP/s"
             if device.type == "cuda" else "") + f" (at {thread_counts['bench']} threads)")
    for name in args.settings:
        measure(name, device, args.seconds, peak, thread_counts)


if __name__ == "__main__":
    main()
