"""Issue 29: `data.budget` / `data.finetune_budget` steps: an epoch takes the steps of a pass over the whole train
split, whatever rows the method (or the fine-tune) trains on; the epoch budget stays what it was."""

from __future__ import annotations

import torch

from bench.data.batches import epoch_batches, images_per_epoch, steps_per_epoch
from bench.data.splits import DataConfig
from bench.teacher_outputs.finetune import FinetuneConfig, finetune_config


def test_epoch_budget_is_one_permutation_as_before() -> None:
    batches = epoch_batches(40, None, 16, torch.Generator().manual_seed(3))
    expected = torch.randperm(40, generator=torch.Generator().manual_seed(3))
    assert [len(b) for b in batches] == [16, 16, 8] and torch.equal(torch.cat(batches), expected)


def test_steps_budget_cycles_the_own_rows_for_the_steps_of_the_whole_split() -> None:
    batches = epoch_batches(40, 200, 16, torch.Generator().manual_seed(0))
    assert len(batches) == steps_per_epoch(200, 16) == 13
    seen = torch.cat(batches)
    assert len(seen) == images_per_epoch(200, 16) == 200 and set(seen.tolist()) == set(range(40))
    assert torch.bincount(seen, minlength=40).tolist() == [5] * 40  # five whole permutations
    assert steps_per_epoch(33, 16) == 2 and images_per_epoch(33, 16) == 32  # a last batch of one is dropped


def test_finetune_budget_steps_changes_its_key_and_epochs_keeps_the_old_one() -> None:
    assert "epoch_rows" not in FinetuneConfig().key()  # cached fine-tunes of before still hit
    epochs = finetune_config(DataConfig(teacher_reference="finetune", labeled_limit=300), 4000)
    steps = finetune_config(DataConfig(teacher_reference="finetune", labeled_limit=300, finetune_budget="steps"),
                            4000)
    assert epochs.epoch_rows is None and steps.epoch_rows == 4000 and steps.key() != epochs.key()
