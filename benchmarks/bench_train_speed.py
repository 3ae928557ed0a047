"""Student-training throughput (images/s) with and without the fast paths, on whatever device is present.

    PYTHONPATH=$PWD python benchmarks/bench_train_speed.py                 # auto device, < 3 min on a GPU
    PYTHONPATH=$PWD python benchmarks/bench_train_speed.py --json out.json # also write the figures

A conv student (bench's `resnet`, depth 20, width 32) reads synthetic uint8 images from a memory-mapped file (as
the decoded-image cache is) at --size px, resized per batch from --native px; a head student (`bottleneck`) reads
768-d teacher features with KD targets. Each row trains the real train_student for --epochs epochs and reports
the last epoch (the first warms up cudnn, workers and the compiler). Needs torch, numpy and this repo only
(no database, no Optuna). Figures are measured on the device named in the header, nothing else.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def _import_trainer() -> None:
    """bench.store's __init__ imports sqlalchemy; the trainer needs only bench.store.records (plain dataclasses)."""
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:
        module = types.ModuleType("bench.store")
        module.__path__ = [str(REPO / "bench" / "store")]
        sys.modules["bench.store"] = module


CLASSES, FEATURE_DIM, MEAN, STD = 100, 768, (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)


def _conv_options() -> list[tuple[str, object, bool]]:
    """(label, TrainOptions, read today's whole-split float tensor) for the conv student, each adding one path."""
    from bench.run.fast import TrainOptions

    return [
        ("today: whole split as float tensor", TrainOptions(channels_last="off", resident_features="off",
                                                            loader_workers=0), True),
        ("uint8 batches, fp32, no workers", TrainOptions(channels_last="off", loader_workers=0), False),
        ("+ loader workers (auto) + pinned", TrainOptions(channels_last="off"), False),
        ("+ channels_last", TrainOptions(channels_last="on"), False),
        ("+ bf16 autocast", TrainOptions(channels_last="on", precision="bf16"), False),
        ("+ torch.compile", TrainOptions(channels_last="on", precision="bf16", compile=True), False),
    ]


def _head_options() -> list[tuple[str, object]]:
    """(label, TrainOptions) for the head student."""
    from bench.run.fast import TrainOptions

    return [
        ("features on host, fp32", TrainOptions(resident_features="off")),
        ("+ device-resident features", TrainOptions()),
        ("+ bf16 autocast", TrainOptions(precision="bf16")),
        ("+ torch.compile", TrainOptions(precision="bf16", compile=True)),
    ]


def _memmap_images(folder: Path, n: int, native: int) -> np.memmap:
    """n random uint8 native x native RGB images in a memory-mapped file (like the decoded-image cache)."""
    images = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8, shape=(n, native, native, 3))
    generator = np.random.default_rng(0)
    for start in range(0, n, 1024):
        images[start : start + 1024] = generator.integers(0, 256, size=images[start : start + 1024].shape)
    images.flush()
    return np.load(folder / "images.npy", mmap_mode="r")


def _time_run(student_name: str, hparams: dict, context: object, data: object, method: str,
              epochs: int, device: torch.device, options: object, losses: bool = False) -> Any:
    """Train once; (images/s of the last epoch, its seconds), or with `losses` the last epoch's train loss."""
    from bench.core.registries import METHODS, STUDENTS
    from bench.methods.base import MethodContext
    from bench.run.train import train_student

    torch.manual_seed(0)
    student = STUDENTS.entry(student_name).obj(context, hparams)
    trained = METHODS.get(method)(MethodContext(CLASSES, FEATURE_DIM, student.embed_dim), hparams)
    records: list = []
    train_student(student, trained, data, hparams, epochs, 0, device, on_epoch=records.append,  # type: ignore
                  options=options)
    if losses:
        return records[-1].train_loss
    return len(data.labels["train"]) / records[-1].seconds, records[-1].seconds


def _checks(device: torch.device) -> None:
    """Same-results checks of the speed paths on this device (a tiny resnet, 2 epochs): printed, not timed."""
    from bench.run.fast import TrainOptions
    from bench.run.loader import ImageInputs
    from bench.run.train import TrainData
    from bench.students.base import StudentContext

    rng = np.random.default_rng(0)
    inputs = ImageInputs(rng.integers(0, 256, size=(512, 40, 40, 3), dtype=np.uint8), 32, MEAN, STD)
    labels = torch.from_numpy(rng.integers(0, CLASSES, 512))
    data = TrainData({s: inputs for s in ("train", "val", "test")}, {s: labels for s in ("train", "val", "test")})
    hparams = {"lr": 1e-3, "weight_decay": 0.0, "batch_size": 64, "depth": 8, "width": 16}
    context = StudentContext(CLASSES, FEATURE_DIM, 32)
    plain = TrainOptions(channels_last="off", loader_workers=0, resident_features="off")
    base = _time_run("resnet", hparams, context, data, "scratch", 2, device, plain, losses=True)
    print("checks (train loss after 2 epochs; speed paths must match the plain loop to float noise):")
    for label, options in (("plain", plain), ("loader_workers=2", replace(plain, loader_workers=2)),
                           ("channels_last", replace(plain, channels_last="on")),
                           ("bf16 (changes results a little)", replace(plain, precision="bf16")),
                           ("augment crop-flip (changes results)", replace(plain, augment="crop-flip"))):
        loss = _time_run("resnet", hparams, context, data, "scratch", 2, device, options, losses=True)
        print(f"  {label:<40} loss {loss:.6f}  diff {abs(loss - base):.2e}")
    cpu, here = inputs.prepare(inputs.raw(np.arange(64))), inputs.prepare(inputs.raw(np.arange(64)).to(device))
    print(f"  resize+normalise on {device.type} vs CPU: max diff {(cpu - here.cpu()).abs().max().item():.2e}")


def _report(title: str, rows: list[tuple[str, float, float]]) -> None:
    print(f"\n{title}")
    base = rows[0][1] if rows else 1.0
    for label, rate, seconds in rows:
        print(f"  {label:<48} {rate:>10,.0f} img/s  {rate / base:>5.2f}x  (epoch {seconds:.2f} s)")


def _conv_rows(args: argparse.Namespace, device: torch.device, folder: Path, deadline: float) -> list[tuple]:
    """Throughput of the conv student under each option set."""
    from bench.data.images import to_tensor
    from bench.run.loader import ImageInputs
    from bench.run.train import TrainData
    from bench.students.base import StudentContext

    images = _memmap_images(folder, args.images, args.native)
    labels = torch.from_numpy(np.random.default_rng(1).integers(0, CLASSES, args.images))
    lazy = ImageInputs(images, args.size, MEAN, STD)
    small = ImageInputs(images[:64], args.size, MEAN, STD)
    data = TrainData({"train": lazy, "val": small, "test": small}, {"train": labels, "val": labels[:64],
                                                                   "test": labels[:64]})
    hparams = {"lr": 1e-3, "weight_decay": 0.0, "batch_size": args.batch_size, "depth": 20, "width": 32}
    context = StudentContext(CLASSES, FEATURE_DIM, args.size)
    rows = []
    for label, options, whole in _conv_options():
        if time.monotonic() > deadline or (options.compile and args.no_compile):
            print(f"  (skipped: {label}: {'time budget spent' if time.monotonic() > deadline else '--no-compile'})")
            continue
        run_data = replace(data, inputs={**data.inputs, "train": to_tensor(images, args.size, MEAN, STD)}) \
            if whole else data
        rows.append((label, *_time_run("resnet", hparams, context, run_data, "scratch", args.epochs, device,
                                       options)))
        print(f"  done: {label}", flush=True)
    return rows


def _head_rows(args: argparse.Namespace, device: torch.device, deadline: float) -> list[tuple]:
    """Throughput of the head student under each option set."""
    from bench.run.train import TrainData
    from bench.students.base import StudentContext

    generator = torch.Generator().manual_seed(0)
    n = args.features
    features = torch.randn(n, FEATURE_DIM, generator=generator)
    labels = torch.randint(0, CLASSES, (n,), generator=generator)
    data = TrainData({"train": features, "val": features[:256], "test": features[:256]},
                     {"train": labels, "val": labels[:256], "test": labels[:256]},
                     {"logits": torch.randn(n, CLASSES, generator=generator)})
    hparams = {"lr": 1e-3, "weight_decay": 0.0, "batch_size": args.batch_size, "alpha": 0.5, "temperature": 4.0}
    context = StudentContext(CLASSES, FEATURE_DIM, 224)
    rows = []
    for label, options in _head_options():
        if time.monotonic() > deadline or (options.compile and args.no_compile):
            print(f"  (skipped: {label})")
            continue
        rows.append((label, *_time_run("bottleneck", hparams, context, data, "kd", args.epochs, device, options)))
        print(f"  done: {label}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    gpu = torch.cuda.is_available()
    parser.add_argument("--images", type=int, default=8192 if gpu else 256, help="conv student: train images")
    parser.add_argument("--native", type=int, default=128 if gpu else 40, help="stored image size (px)")
    parser.add_argument("--size", type=int, default=112 if gpu else 32, help="student input size (px)")
    parser.add_argument("--features", type=int, default=200_000 if gpu else 4096, help="head student: rows")
    parser.add_argument("--batch-size", type=int, default=256 if gpu else 64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--budget", type=float, default=150.0, help="seconds; later rows are skipped past it")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-checks", action="store_true", help="skip the same-results checks before timing")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    _import_trainer()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; conv: resnet-20 w32 at {args.size}px from {args.native}px, "
          f"{args.images} images, batch {args.batch_size}; head: bottleneck on {args.features} x {FEATURE_DIM}")
    if not args.no_checks:
        _checks(device)
    deadline = time.monotonic() + args.budget  # the timed rows' budget (the checks take seconds on a GPU)
    with tempfile.TemporaryDirectory() as folder:
        conv = _conv_rows(args, device, Path(folder), deadline - args.budget * 0.3)
    head = _head_rows(args, device, deadline)
    _report("conv student (resnet-20), images/s:", conv)
    _report("head student (bottleneck on features), images/s:", head)
    if args.json:
        args.json.write_text(json.dumps({"device": name, "conv": conv, "head": head}, indent=1))


if __name__ == "__main__":
    main()
