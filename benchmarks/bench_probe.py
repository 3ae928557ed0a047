"""Cost and accuracy of the teacher probe against the teacher pass that feeds it, old fit vs new (with OOF).

    PYTHONPATH=$PWD python benchmarks/bench_probe.py                      # digits, effnet-lite0 (offline)
    PYTHONPATH=$PWD python benchmarks/bench_probe.py --dataset fashion-mnist --data-root /path/to/data \
        --image-size 96 --train-limit 3000 --val-limit 600 --test-limit 2000   # the demo's data

The old fit is today's former probe, kept here verbatim: three torch L-BFGS fits from zero (L2 1e-4, 1e-3,
1e-2), train logits in-sample. The new one is
bench.teacher_outputs.probe.fit_linear_probe (L2 path, out-of-fold train logits).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.core.names import SPLITS
from bench.core.registries import TEACHERS
from bench.data.splits import DataConfig, load_dataset
from bench.run.workbench import resolve_device
from bench.teacher_outputs.features import run_teacher
from bench.teacher_outputs.probe import accuracy, fit_linear_probe


def legacy_probe(features: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], num_classes: int,
                 weight_decays: tuple[float, ...] = (1e-4, 1e-3, 1e-2), max_iter: int = 200):
    """The probe before out-of-fold targets: (weight_decay, logits per split)."""
    mean, std = features["train"].mean(dim=0), features["train"].std(dim=0) + 1e-6
    standardised = {split: (x - mean) / std for split, x in features.items()}
    best = None
    for weight_decay in weight_decays:
        linear = torch.nn.Linear(standardised["train"].shape[1], num_classes)
        torch.nn.init.zeros_(linear.weight)
        torch.nn.init.zeros_(linear.bias)
        optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure(linear=linear, optimizer=optimizer, weight_decay=weight_decay) -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(linear(standardised["train"]), labels["train"])
            loss = loss + weight_decay * linear.weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            val_acc = accuracy(linear(standardised["val"]), labels["val"])
        if best is None or val_acc > best[0]:
            best = (val_acc, weight_decay, linear)
    _, weight_decay, linear = best
    with torch.no_grad():
        return weight_decay, {split: linear(x) for split, x in standardised.items()}


def teacher_pass(args: argparse.Namespace) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int, float]:
    """Pooled features of every split (timed: the teacher pass), labels and the class count."""
    config = DataConfig(image_size=args.image_size, train_limit=args.train_limit, val_limit=args.val_limit,
                        test_limit=args.test_limit)
    data = load_dataset(args.dataset, config, args.data_root)
    teacher = TEACHERS.get(args.teacher)(None)
    preprocess = teacher.preprocess.with_size(args.image_size)
    device = resolve_device(args.device)
    start = time.perf_counter()
    features = {split: run_teacher(teacher, data.split(split), preprocess, ["pooled"], device)["pooled"]
                for split in SPLITS}
    seconds = time.perf_counter() - start
    labels = {split: torch.from_numpy(data.split(split).labels) for split in SPLITS}
    return features, labels, data.num_classes, seconds


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="effnet-lite0")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--val-limit", type=int, default=None)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    features, labels, classes, teacher_s = teacher_pass(args)
    sizes = ", ".join(f"{split} {len(labels[split])}" for split in SPLITS)
    print(f"{args.teacher} on {args.dataset} ({sizes}; dim {features['train'].shape[1]}, {classes} classes, "
          f"torch threads {torch.get_num_threads()})")
    print(f"teacher pass:                {teacher_s:7.2f} s")
    (old_wd, old), old_s = timed(legacy_probe, features, labels, classes)
    new, new_s = timed(fit_linear_probe, features, labels, classes)
    in_sample, path_s = timed(fit_linear_probe, features, labels, classes, targets="in-sample")
    print(f"old probe (3 torch L-BFGS):  {old_s:7.2f} s   ratio to teacher pass {old_s / teacher_s:.3f}")
    print(f"new probe ({new.kd_targets}):    {new_s:7.2f} s   ratio to teacher pass {new_s / teacher_s:.3f}")
    print(f"new probe without the folds: {path_s:7.2f} s")
    print(f"chosen L2:      old {old_wd:.3g}   new {new.weight_decay:.3g}")
    print(f"val accuracy:   old {accuracy(old['val'], labels['val']):.4f}   new {new.val_acc:.4f}")
    print(f"test accuracy:  old {accuracy(old['test'], labels['test']):.4f}   new {new.test_acc:.4f}")
    print(f"train accuracy of the KD targets: old in-sample {accuracy(old['train'], labels['train']):.4f}   "
          f"new in-sample {accuracy(in_sample.logits['train'], labels['train']):.4f}   "
          f"new out-of-fold {accuracy(new.logits['train'], labels['train']):.4f}")


if __name__ == "__main__":
    main()
