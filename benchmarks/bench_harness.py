"""The three performance ratios a user of `bench` cares about, each measured side by side in one run.

    python benchmarks/bench_harness.py [--students 3] [--epochs 3] [--image-size 128] [--repeats 5]

(a) A grid of S head students x E epochs with the feature cache (one teacher pass, then every student
    reads cached features) vs the naive loop that runs the teacher on every batch (train batches, and val
    and test for scoring). Target: the cache is at least 0.7 x S x E times faster.
(b) Harness overhead: `train_student` (AdamW + cosine, per-epoch val, loss-term logging, finiteness checks)
    vs a bare PyTorch loop doing the same optimisation and scoring on the same cached tensors.
    Target: at most 1.10x. Median of interleaved repeats.
(c) Teacher-pass cost as the number of students grows (1, 2, 4 students on a cold cache, as a grid runs
    them): the wall seconds their runs spend getting teacher outputs.
    Target: flat (the largest within 1.25x of the smallest).

Data: scikit-learn's digits (bundled) through the embedded effnet-lite0 teacher on CPU: nothing is
downloaded. Prints one line per ratio with PASS/FAIL against its target; exit code 0 either way (a
benchmark reports, it does not gate).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.core.names import SPLITS
from bench.core.taps import POOLED
from bench.data.images import to_tensor
from bench.data.splits import DataConfig, DatasetSplits
from bench.run.context import RunContext
from bench.run.parts import build_parts
from bench.run.train import TrainData, train_student
from bench.run.workbench import Workbench

TEACHER, DATASET = "effnet-lite0", "digits"
STUDENTS = ("projection", "bottleneck")  # head students on the pooled tap; more runs repeat them (other seeds)
HPARAMS = {"lr": 3e-3, "batch_size": 64, "weight_decay": 1e-4}


def workbench(cache_dir: Path, image_size: int) -> tuple[Workbench, DatasetSplits]:
    bench = Workbench(RunContext(cache_dir=cache_dir, device="cpu"))
    return bench, bench.data(DATASET, DataConfig(image_size=image_size))


def labels_of(data: DatasetSplits) -> dict[str, torch.Tensor]:
    return {split: torch.from_numpy(data.split(split).labels) for split in SPLITS}


def cached_grid(bench: Workbench, data: DatasetSplits, students: int, epochs: int) -> float:
    """Wall seconds: the teacher pass once (cold cache), then every student trains on cached features."""
    start = time.perf_counter()
    features = bench.teacher_outputs(TEACHER, data).features
    teacher = bench.teacher(TEACHER)
    for index in range(students):
        torch.manual_seed(index)
        parts = build_parts(STUDENTS[index % len(STUDENTS)], "scratch", HPARAMS, teacher, data)
        train_data = TrainData({s: features[s][POOLED] for s in SPLITS}, labels_of(data))
        train_student(parts.student, parts.method, train_data, HPARAMS, epochs, index, bench.device)
    return time.perf_counter() - start


def teacher_batches(bench: Workbench, data: DatasetSplits, split: str, order: torch.Tensor):  # noqa: ANN201
    """(pooled teacher features, labels) per batch, the teacher run on each batch as it comes."""
    teacher = bench.teacher(TEACHER)
    pre = teacher.preprocess.with_size(data.config.image_size)
    images, labels = data.split(split).images, torch.from_numpy(data.split(split).labels)
    for start in range(0, len(order), int(HPARAMS["batch_size"])):
        index = order[start : start + int(HPARAMS["batch_size"])]
        batch = to_tensor(images[index.numpy()], pre.input_size, pre.mean, pre.std, pre.interpolation)
        with torch.inference_mode():
            pooled = teacher.features(batch.contiguous(memory_format=torch.channels_last), [POOLED])[POOLED]
        yield pooled.clone(), labels[index]


def naive_grid(bench: Workbench, data: DatasetSplits, students: int, epochs: int) -> float:
    """Wall seconds: every student, every epoch runs the teacher on each train batch, and on val and test."""
    start = time.perf_counter()
    teacher = bench.teacher(TEACHER)
    for index in range(students):
        torch.manual_seed(index)
        parts = build_parts(STUDENTS[index % len(STUDENTS)], "scratch", HPARAMS, teacher, data)
        optimizer = torch.optim.AdamW(parts.student.parameters(), lr=HPARAMS["lr"],
                                      weight_decay=HPARAMS["weight_decay"])
        generator = torch.Generator().manual_seed(index)
        for _ in range(epochs):
            parts.student.train()
            for features, labels in teacher_batches(bench, data, "train",
                                                    torch.randperm(len(data.train), generator=generator)):
                loss = F.cross_entropy(parts.student(features)["logits"], labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            evaluate(parts.student, teacher_batches(bench, data, "val", torch.arange(len(data.val))))
        evaluate(parts.student, teacher_batches(bench, data, "test", torch.arange(len(data.test))))
    return time.perf_counter() - start


@torch.no_grad()
def evaluate(student: torch.nn.Module, batches) -> float:  # noqa: ANN001
    student.eval()
    hits = total = 0
    for features, labels in batches:
        hits += int((student(features)["logits"].argmax(1) == labels).sum())
        total += len(labels)
    return hits / total


def bare_loop(student: torch.nn.Module, features: dict[str, torch.Tensor], labels: dict[str, torch.Tensor],
              epochs: int, seed: int) -> float:
    """The same optimisation as train_student (AdamW, cosine, shuffled batches, val each epoch, test at the end)."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    batch_size = int(HPARAMS["batch_size"])
    optimizer = torch.optim.AdamW(student.parameters(), lr=HPARAMS["lr"], weight_decay=HPARAMS["weight_decay"])
    steps = epochs * -(-len(labels["train"]) // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        student.train()
        order = torch.randperm(len(labels["train"]), generator=generator)
        for begin in range(0, len(order), batch_size):
            index = order[begin : begin + batch_size]
            loss = F.cross_entropy(student(features["train"][index])["logits"], labels["train"][index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        evaluate(student, [(features["val"], labels["val"])])
    evaluate(student, [(features["test"], labels["test"])])
    return time.perf_counter() - start


def harness_overhead(bench: Workbench, data: DatasetSplits, epochs: int, repeats: int) -> tuple[float, float]:
    """Median wall seconds of train_student and of the bare loop, interleaved, on the same cached tensors."""
    features = {s: f[POOLED] for s, f in bench.teacher_outputs(TEACHER, data).features.items()}
    labels = labels_of(data)
    teacher = bench.teacher(TEACHER)
    harness, bare = [], []
    for repeat in range(repeats):
        torch.manual_seed(repeat)
        parts = build_parts("bottleneck", "scratch", HPARAMS, teacher, data)
        start = time.perf_counter()
        train_student(parts.student, parts.method, TrainData(features, labels), HPARAMS, epochs, repeat, bench.device)
        harness.append(time.perf_counter() - start)
        torch.manual_seed(repeat)
        bare.append(bare_loop(build_parts("bottleneck", "scratch", HPARAMS, teacher, data).student, features,
                              labels, epochs, repeat))
    return statistics.median(harness), statistics.median(bare)


def teacher_seconds(image_size: int, students: int, epochs: int) -> float:
    """Wall seconds spent getting teacher outputs by `students` runs of one grid on a cold cache (each run asks
    for them as run_spec does; only the first runs the teacher, the others read the cache)."""
    with tempfile.TemporaryDirectory() as cache:
        bench, data = workbench(Path(cache), image_size)
        bench.teacher(TEACHER)  # loading the weights is not the teacher pass
        total = 0.0
        for index in range(students):
            run_data = bench.data(DATASET, data.config)  # each run loads its data, as run_spec does
            start = time.perf_counter()
            bench.teacher_outputs(TEACHER, run_data)
            total += time.perf_counter() - start
            parts = build_parts(STUDENTS[index % len(STUDENTS)], "scratch", HPARAMS, bench.teacher(TEACHER), run_data)
            features = bench.teacher_outputs(TEACHER, run_data).features
            train_student(parts.student, parts.method, TrainData({s: features[s][POOLED] for s in SPLITS},
                                                                 labels_of(run_data)), HPARAMS, epochs, index,
                          bench.device)
        return total


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    s, e = args.students, args.epochs
    print(f"digits through {TEACHER} at {args.image_size} px on CPU ({torch.get_num_threads()} threads)")

    with tempfile.TemporaryDirectory() as cache:
        bench, data = workbench(Path(cache), args.image_size)
        bench.teacher(TEACHER)  # loading the weights is the same for both: not timed
        cached = cached_grid(bench, data, s, e)
        naive = naive_grid(bench, data, s, e)
        target = 0.7 * s * e
        print(f"(a) {s} head students x {e} epochs: cached {cached:.1f} s, teacher every batch {naive:.1f} s: "
              f"{naive / cached:.1f}x faster (target >= {target:.1f}x) {verdict(naive / cached >= target)}")

        harness, bare = harness_overhead(bench, data, 4 * e, args.repeats)
        print(f"(b) harness {harness:.3f} s vs bare PyTorch loop {bare:.3f} s (median of {args.repeats}): "
              f"{harness / bare:.2f}x (target <= 1.10x) {verdict(harness / bare <= 1.10)}")

    seconds = {n: teacher_seconds(args.image_size, n, 1) for n in (1, 2, 4)}
    spread = max(seconds.values()) / min(seconds.values())
    listed = ", ".join(f"{n} student(s): {t:.1f} s" for n, t in seconds.items())
    print(f"(c) teacher pass per grid on a cold cache: {listed}: max/min {spread:.2f} (target <= 1.25, flat) "
          f"{verdict(spread <= 1.25)}")


if __name__ == "__main__":
    main()
