"""Bundled vs separate training of 12 bottleneck heads (issue 28 item 1), side by side in one process.

The demo's setting without the fine-tune (studies/demo.yaml: fashion-mnist, effnet-lite0 at 64 px, train_limit 4000,
val 1000, test 2000, 15 epochs, batch 32, kd with T 4, weight decay 5e-4) and its cached teacher features: 3 seeds x
lr {3e-3, 1e-3} x alpha {0.7, 0.9}. `off` trains each cell alone (train_student, as `--bundle off`), `auto` trains
the 12 as one bundle (train_bundle, as `--bundle auto`); both through run_spec's own prepare step. Prints wall and
CPU time of the training (val scoring each epoch and the final test scoring included; the teacher pass and the
inference-cost timing that a sweep also does are not), one cell's share, and the largest val/test accuracy
difference between the two. Then the floor of the bundle on this device: the FLOPs counted in one stacked step
(forward and backward, FlopCounterMode) at the measured fp32 matmul peak, plus the stacked fused AdamW step as
measured, times the steps: no bundled training of these cells can take less (the matmuls' own memory traffic and
every elementwise op are left out), so its ratio to one cell's separate training bounds what bundling can reach.

    PYTHONPATH=$PWD python benchmarks/bench_bundle.py [--threads 1] [--epochs 15] [--order off auto]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from itertools import product

import torch
import torch.nn.functional as F
from bench_roofline import flops_of, matmul_peak

from bench.core.spec import ExperimentSpec
from bench.run.context import RunContext
from bench.run.run_spec import prepare_run
from bench.run.stacked import StackedAdamW, StackedHeads
from bench.run.train import TrainResult, train_student
from bench.run.train_bundle import BundleCell, train_bundle
from bench.run.workbench import Workbench

DATA = {"image_size": 64, "train_limit": 4000, "val_limit": 1000, "test_limit": 2000}
HPARAMS = {"batch_size": 32, "weight_decay": 0.0005, "temperature": 4.0}


def specs(epochs: int) -> list[ExperimentSpec]:
    return [ExperimentSpec.create(teacher="effnet-lite0", student="bottleneck", method="kd", dataset="fashion-mnist",
                                  hparams={**HPARAMS, "lr": lr, "alpha": alpha}, data=DATA, epochs=epochs, seed=seed)
            for seed, lr, alpha in product((0, 1, 2), (3e-3, 1e-3), (0.7, 0.9))]


def separate(bench: Workbench, cells: list[ExperimentSpec]) -> list[TrainResult]:
    results = []
    for spec in cells:
        run = prepare_run(spec, bench, "bench-bundle")
        results.append(train_student(run.parts.student, run.parts.method, run.train_data, spec.hparams_dict,
                                     spec.epochs, spec.seed, bench.device, val_score=run.val_score(),
                                     options=run.options))
    return results


def bundled(bench: Workbench, cells: list[ExperimentSpec]) -> list[TrainResult]:
    runs = [prepare_run(spec, bench, "bench-bundle") for spec in cells]
    results = train_bundle([BundleCell(run.parts.student, run.parts.method, run.train_data, run.spec.hparams_dict,
                                       run.spec.epochs, run.spec.seed, val_score=run.val_score(), options=run.options)
                            for run in runs], bench.device)
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results  # type: ignore[return-value]


def floor(bench: Workbench, cells: list[ExperimentSpec]) -> tuple[float, float, float, float]:
    """(floor seconds, matmul peak FLOP/s, FLOPs a stacked step, fused AdamW seconds a step) of training `cells` as
    one bundle on this device (see the module's docstring)."""
    runs = [prepare_run(spec, bench, "bench-bundle") for spec in cells]
    features = runs[0].train_data.inputs["train"]
    batch, rows = int(HPARAMS["batch_size"]), len(runs[0].train_data.labels["train"])
    generators = [torch.Generator().manual_seed(i) for i in range(len(runs))]
    model = StackedHeads([run.parts.student for run in runs], generators)
    model.train()
    inputs = features[:batch].expand(len(runs), -1, -1).contiguous()
    labels = runs[0].train_data.labels["train"][:batch].expand(len(runs), -1)

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs)["logits"].flatten(0, 1), labels.flatten()).backward()

    flops = flops_of(forward_backward)
    optimizer = StackedAdamW(model, [float(HPARAMS["weight_decay"])] * len(runs))
    lrs = [float(spec.hparams_dict["lr"]) for spec in cells]
    adamw = []
    for _ in range(40):
        forward_backward()
        start = time.perf_counter()
        optimizer.step(lrs)
        adamw.append(time.perf_counter() - start)
    peak = matmul_peak(torch.device("cpu"), torch.float32, 2.0)
    steps = cells[0].epochs * math.ceil(rows / batch)
    return steps * (flops / peak + statistics.median(adamw)), peak, flops, statistics.median(adamw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--order", nargs="+", default=["off", "auto"], choices=["off", "auto"])
    args = parser.parse_args()
    bench = Workbench(RunContext(device="cpu", threads=args.threads))
    cells = specs(args.epochs)
    prepare_run(cells[0], bench, "bench-bundle")  # teacher features and probe logits: computed or read once
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs; {len(cells)} cells x {args.epochs} epochs")
    results: dict[str, list[TrainResult]] = {}
    for mode in args.order:
        wall, cpu = time.perf_counter(), time.process_time()
        results[mode] = (separate if mode == "off" else bundled)(bench, cells)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        train = sum(result.epoch_seconds * args.epochs for result in results[mode])
        print(f"--bundle {mode:4}: {wall:7.1f} s wall ({wall / len(cells):5.2f} s a cell), {cpu:7.1f} s CPU, "
              f"training loop {train:7.1f} s; load {os.getloadavg()[0]:.2f}")
    if len(results) == 2:
        off, auto = results["off"], results["auto"]
        val = max(abs(a.val_acc - b.val_acc) for a, b in zip(off, auto, strict=True))
        test = max(abs((a.test_acc or 0) - (b.test_acc or 0)) for a, b in zip(off, auto, strict=True))
        loss = max(abs(x.train_loss - y.train_loss) for a, b in zip(off, auto, strict=True)
                   for x, y in zip(a.epochs, b.epochs, strict=True))
        print(f"largest difference auto vs off: val_acc {val:.4f}, test_acc {test:.4f}, epoch train loss {loss:.2e}; "
              f"test_acc off {min(r.test_acc or 0 for r in off):.4f}..{max(r.test_acc or 0 for r in off):.4f}")
    if "off" in results:
        one_cell = statistics.mean(result.epoch_seconds * args.epochs for result in results["off"])
        seconds, peak, flops, adamw = floor(bench, cells)
        print(f"floor of one bundle of the {len(cells)} cells here: {seconds:.1f} s ({flops / 1e6:.0f} MFLOP a step at "
              f"the measured matmul peak {peak / 1e9:.0f} GFLOP/s, plus {1e3 * adamw:.2f} ms of fused AdamW a step), "
              f"= {seconds / one_cell:.1f}x one cell's separate training loop ({one_cell:.2f} s)")


if __name__ == "__main__":
    main()
