"""Seeded epoch batches of row indices, shared by student training and the teacher fine-tune (data.budget)."""

from __future__ import annotations

import torch


def epoch_batches(rows: int, epoch_rows: int | None, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch's batches of row indices: a seeded permutation of `rows`; with `epoch_rows` (budget steps) as many
    permutations back to back as fill a pass over `epoch_rows`, so every method of a setting takes the same steps."""
    order = torch.randperm(rows, generator=generator)
    target = rows if epoch_rows is None else epoch_rows
    while len(order) < target:
        order = torch.cat([order, torch.randperm(rows, generator=generator)])
    order = order[:target]
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    return [index for index in batches if len(index) >= 2]  # batch norm needs two samples


def steps_per_epoch(rows: int, batch_size: int) -> int:
    """Optimizer steps of one pass over `rows` (a last batch of one sample is dropped: batch norm needs two)."""
    return rows // batch_size + (1 if rows % batch_size >= 2 else 0)


def images_per_epoch(rows: int, batch_size: int) -> int:
    """Images one epoch forwards: `rows`, less a last batch of one that is dropped."""
    return rows - (1 if rows % batch_size == 1 else 0)
