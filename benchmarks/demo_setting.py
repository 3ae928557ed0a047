"""Find the demo's setting: a fine-tuned teacher clearly above a standalone student, and KD significantly above scratch.

    PYTHONPATH=$PWD python benchmarks/demo_setting.py --labels 1000 --transfer 5000 --seeds 0 1 2

Per L (labeled train images): the teacher (effnet-lite0 by default) fine-tuned on L labels
(bench.teacher_outputs.finetune,
cached), a `resnet` student trained from scratch on the same L labels, and the same student trained with `kd` from
the fine-tuned teacher on the L labels plus a transfer set of U unlabeled train images (teacher logits only; their
labels are -1 and every CE term ignores them: labeled_cross_entropy). Prints mean, std, paired-t p of KD vs
scratch, train accuracy over the last epochs (to see it plateau) and wall time per phase. `bench run --grid
studies/demo.yaml` runs the chosen setting through the bench itself.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from bench.core.names import SPLITS, UNLABELED
from bench.core.registries import TEACHERS
from bench.data.images import channel_stats, to_tensor
from bench.data.splits import DataConfig, DatasetSplits, load_dataset
from bench.run.parts import build_parts
from bench.run.train import TrainData, TrainResult, train_student
from bench.teacher_outputs.cache import FeatureCache
from bench.teacher_outputs.finetune import FinetuneConfig, FinetuneResult, finetune_teacher, labeled_rows
from bench.teachers.base import Teacher


def student_inputs(data: DatasetSplits) -> dict[str, torch.Tensor]:
    """Standalone students read images at the dataset's own size, normalised by train statistics (as run_spec)."""
    size = data.config.student_image_size or data.native_size
    mean, std = channel_stats(data.train.images)
    return {split: to_tensor(data.split(split).images, size, mean, std) for split in SPLITS}


def train_one(method: str, teacher: Teacher, data: DatasetSplits, inputs: dict[str, torch.Tensor], rows: np.ndarray,
              teacher_logits: torch.Tensor | None, hparams: dict, epochs: int, seed: int) -> TrainResult:
    """One resnet student: scratch on the labeled rows, or masked KD on every train row (labels -1 outside)."""
    torch.manual_seed(seed)
    parts = build_parts("resnet", method, hparams, teacher, data)
    labels = {split: torch.from_numpy(data.split(split).labels) for split in SPLITS}
    if method == "scratch":
        train_inputs, train_labels, targets = inputs["train"][rows], labels["train"][rows], {}
    else:
        train_labels = torch.full_like(labels["train"], UNLABELED)
        train_labels[rows] = labels["train"][rows]
        train_inputs, targets = inputs["train"], {"logits": teacher_logits}
    train_data = TrainData({"train": train_inputs, "val": inputs["val"], "test": inputs["test"]},
                           {"train": train_labels, "val": labels["val"], "test": labels["test"]}, targets)
    return train_student(parts.student, parts.method, train_data, hparams, epochs, seed, torch.device("cpu"))


def paired_p(a: list[float], b: list[float]) -> float:
    from scipy.stats import ttest_rel

    return float(ttest_rel(a, b).pvalue) if len(a) >= 2 else float("nan")


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * std:.2f}"


def curve(result: TrainResult) -> str:
    """Train accuracy (on the labeled rows) over the last three epochs."""
    return " ".join(f"{100 * min(1.0, (record.train_acc or 0.0)):.1f}" for record in result.epochs[-3:])


def run_setting(labels_count: int) -> None:
    """Teacher fine-tune, then scratch and KD students per seed, for one L."""
    start = time.perf_counter()
    config = DataConfig(image_size=ARGS.image_size, train_limit=labels_count + ARGS.transfer, val_limit=ARGS.val,
                        test_limit=ARGS.test)
    data = load_dataset("fashion-mnist", config)
    rows = labeled_rows(data.train.labels, labels_count, 0)
    load_s = time.perf_counter() - start
    teacher = TEACHERS.get(ARGS.teacher)()
    ft_config = FinetuneConfig(unfreeze=ARGS.unfreeze, lrs=tuple(ARGS.ft_lrs), max_epochs=ARGS.ft_epochs,
                               batch_size=ARGS.ft_batch, labeled_limit=labels_count)
    start = time.perf_counter()
    tuned: FinetuneResult = finetune_teacher(teacher, data, ft_config, FeatureCache(ARGS.cache),
                                             torch.device("cpu"))
    ft_s = time.perf_counter() - start
    transfer = np.setdiff1d(np.arange(len(data.train)), rows)
    transfer_acc = float((tuned.logits["train"][transfer].argmax(-1).numpy() == data.train.labels[transfer]).mean())
    print(f"\n## L={labels_count} labels, U={len(transfer)} transfer images, {data.sizes()}  (load {load_s:.0f}s)")
    print(f"teacher fine-tuned: test {100 * tuned.test_acc:.2f}  val {100 * tuned.val_acc:.2f}  "
          f"transfer-set acc {100 * transfer_acc:.2f}  lr {tuned.lr:g}  best epoch {tuned.epochs}/{ARGS.ft_epochs}  "
          f"train acc {100 * tuned.train_acc:.1f}  {tuned.epoch_seconds:.1f}s/epoch  "
          f"{'cached, ran ' if tuned.hit else ''}{tuned.seconds:.0f}s (this call {ft_s:.0f}s)", flush=True)
    inputs = student_inputs(data)
    hparams = {"lr": ARGS.lr, "batch_size": ARGS.batch, "weight_decay": 5e-4, "alpha": ARGS.alpha,
               "temperature": ARGS.temperature, "depth": 8, "width": ARGS.width}
    results: dict[str, list[TrainResult]] = {"scratch": [], "kd": []}
    seconds: dict[str, float] = {"scratch": 0.0, "kd": 0.0}
    for seed in ARGS.seeds:
        for method, epochs in (("scratch", ARGS.scratch_epochs), ("kd", ARGS.kd_epochs)):
            start = time.perf_counter()
            result = train_one(method, teacher, data, inputs, rows, tuned.logits["train"], hparams, epochs, seed)
            results[method].append(result)
            seconds[method] += time.perf_counter() - start
            print(f"  seed {seed} {method}: test {100 * results[method][-1].test_acc:.2f}", flush=True)
    print("| model | epochs | test acc % (mean ± std) | train acc, last 3 epochs | wall s (all seeds) |")
    print("|---|---|---|---|---|")
    print(f"| teacher fine-tuned on L | {tuned.epochs} | {100 * tuned.test_acc:.2f} | {100 * tuned.train_acc:.1f} "
          f"| {tuned.seconds:.0f} |")
    for method, epochs in (("scratch", ARGS.scratch_epochs), ("kd", ARGS.kd_epochs)):
        accs = [r.test_acc for r in results[method]]
        print(f"| resnet {method} | {epochs} | {mean_std(accs)} | {curve(results[method][0])} "
              f"| {seconds[method]:.0f} |")
    kd, scratch = [r.test_acc for r in results["kd"]], [r.test_acc for r in results["scratch"]]
    gain = 100 * statistics.mean(k - s for k, s in zip(kd, scratch, strict=True))
    print(f"KD - scratch: {gain:+.2f} points, paired t p = {paired_p(kd, scratch):.4f} over {len(kd)} seeds")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[1000])
    parser.add_argument("--transfer", type=int, default=5000, help="unlabeled train images (U)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teacher", default="effnet-lite0")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--unfreeze", default="all", type=lambda v: v if v == "all" else int(v))
    parser.add_argument("--ft-lrs", type=float, nargs="+", default=[1e-3])
    parser.add_argument("--ft-epochs", type=int, default=6)
    parser.add_argument("--ft-batch", type=int, default=64)
    parser.add_argument("--scratch-epochs", type=int, default=30)
    parser.add_argument("--kd-epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--alpha", type=float, default=0.7)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--val", type=int, default=1000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default=None, help="feature cache root (default: BENCH_CACHE)")
    return parser.parse_args()


if __name__ == "__main__":
    ARGS = parse()
    torch.set_num_threads(ARGS.threads)
    for count in ARGS.labels:
        run_setting(count)
