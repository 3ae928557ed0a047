"""Can stacking standalone CNN students speed up a seed bundle here? (issue 28 item 1, standalone students)

K copies of the demo's student (`resnet`, depth 8, width 16) are stacked the way a grouped convolution allows: every
Conv2d becomes one conv with K times the channels and K times the groups, every BatchNorm2d one over K times the
channels (its statistics are per channel, so each copy keeps its own), the classifier one grouped 1x1 conv. Member i
sees its own batch in channels [i*C, (i+1)*C) of the input. The stacked model is built from the K separate ones'
weights, so it computes the same function: the script checks that first (largest logit difference), then times a
training step (forward, cross-entropy, backward, AdamW) of the K separate models against the stacked one, CPU and
wall time, and prints the achieved GFLOP/s of the separate step (MACs from FlopCounterMode).

The stack only removes per-kernel overhead; the arithmetic stays K times one model's. Where one model's step is
arithmetic-bound (this CPU at 28 px) stacking cannot approach the issue's 0.6x goal; where a step is launch-bound (a
GPU with small images) it can. Measured figures: docs/concepts/threads-and-cost.md.

    PYTHONPATH=$PWD python benchmarks/bench_standalone_stack.py [--k 3] [--size 28] [--channels 1] [--steps 20]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from torch import nn

from bench.students.resnet import ResNet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_roofline import flops_of  # noqa: E402 - FlopCounterMode's total of one call


class GroupedLinear(nn.Module):
    """K linear layers side by side on [B, K*in] -> [B, K*out], as one grouped 1x1 conv."""

    def __init__(self, linears: list[nn.Linear]) -> None:
        super().__init__()
        k, first = len(linears), linears[0]
        self.conv = nn.Conv1d(first.in_features * k, first.out_features * k, 1, groups=k)
        with torch.no_grad():
            self.conv.weight.copy_(torch.cat([lin.weight for lin in linears])[:, :, None])
            self.conv.bias.copy_(torch.cat([lin.bias for lin in linears]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x[:, :, None])[:, :, 0]


def stack(models: list[nn.Module]) -> nn.Module:
    """One module computing the K models side by side along channels (their weights copied in)."""
    stacked = copy.deepcopy(models[0])
    k = len(models)
    named = [dict(m.named_modules()) for m in models]
    for name, module in list(stacked.named_modules()):
        parts = [n[name] for n in named]
        if isinstance(module, nn.Conv2d):
            new: nn.Module = nn.Conv2d(module.in_channels * k, module.out_channels * k, module.kernel_size,
                                       module.stride, module.padding, groups=module.groups * k,
                                       bias=module.bias is not None)
            with torch.no_grad():
                new.weight.copy_(torch.cat([p.weight for p in parts]))
        elif isinstance(module, nn.BatchNorm2d):
            new = nn.BatchNorm2d(module.num_features * k)
            with torch.no_grad():
                new.weight.copy_(torch.cat([p.weight for p in parts]))
                new.bias.copy_(torch.cat([p.bias for p in parts]))
        elif isinstance(module, nn.Linear):
            new = GroupedLinear(parts)
        else:
            continue
        parent_name, _, attr = name.rpartition(".")
        setattr(stacked.get_submodule(parent_name) if parent_name else stacked, attr, new)
    return stacked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    k, batch, classes = args.k, args.batch, 10
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        models.append(ResNet(8, 16, classes, args.channels))
    stacked = stack(models)
    images = [torch.randn(batch, args.channels, args.size, args.size) for _ in range(k)]
    labels = [torch.randint(0, classes, (batch,)) for _ in range(k)]
    joined, joined_labels = torch.cat(images, 1), torch.stack(labels, 1)
    with torch.no_grad():
        for m in (*models, stacked):
            m.eval()
        apart = torch.stack([m(x)["logits"] for m, x in zip(models, images, strict=True)], 1)
        together = stacked(joined)["logits"].view(batch, k, classes)
        for m in (*models, stacked):
            m.train()
    print(f"{k} x resnet(8, 16) at {args.size} px, batch {batch}, {args.threads} thread(s): stacked logits differ "
          f"from separate by at most {float((apart - together).abs().max()):.2e}")

    optimizers = [torch.optim.AdamW(m.parameters(), 1e-3) for m in models]
    stacked_optimizer = torch.optim.AdamW(stacked.parameters(), 1e-3)

    def separate() -> None:
        for model, optimizer, x, y in zip(models, optimizers, images, labels, strict=True):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x)["logits"], y).backward()
            optimizer.step()

    def together_step() -> None:
        stacked_optimizer.zero_grad()
        logits = stacked(joined)["logits"].view(batch * k, classes)
        # the sum of the K members' mean losses: each member's gradient is what it gets alone
        (nn.functional.cross_entropy(logits, joined_labels.reshape(-1), reduction="sum") / batch).backward()
        stacked_optimizer.step()

    step_flops = flops_of(lambda: nn.functional.cross_entropy(models[0](images[0])["logits"], labels[0]).backward()) * k
    for step in (separate, together_step):
        step()
        step()
    timings: dict[str, tuple[float, float]] = {}
    for _ in range(2):  # two alternating rounds; the faster round of each is kept
        for name, step in (("separate", separate), ("stacked", together_step)):
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                step()
            wall, cpu = (time.perf_counter() - wall) / args.steps, (time.process_time() - cpu) / args.steps
            timings[name] = min(timings.get(name, (wall, cpu)), (wall, cpu))
    for name, (wall, cpu) in timings.items():
        print(f"{name:>9}: {wall * 1e3:7.1f} ms wall, {cpu * 1e3:7.1f} ms CPU per step of {k} models "
              f"({step_flops / wall / 1e9:.1f} GFLOP/s)")
    print(f"stacked / separate: {timings['stacked'][0] / timings['separate'][0]:.2f}x wall, "
          f"{timings['stacked'][1] / timings['separate'][1]:.2f}x CPU (the issue's goal: <= 0.6x)")


if __name__ == "__main__":
    main()
