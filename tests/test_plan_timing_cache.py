"""`bench plan` keeps the rates it timed on this machine: a second plan times nothing it already knows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from bench.cli.app import app
from bench.plan import throughput


class Counted(nn.Module):
    """A tiny student that counts its forward passes."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.linear = nn.Linear(width, 3)
        self.calls = 0

    def forward(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        return {"logits": self.linear(inputs)}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(throughput, "TIMINGS", throughput.Timings())
    return tmp_path / "cache"


def test_a_rate_is_timed_once_per_architecture_input_and_batch(cache_dir: Path) -> None:
    first = Counted()
    rate = throughput.measure_student(first, (4,), 8, seconds=0.05)
    assert first.calls >= 3 and rate > 0  # a warm-up and at least two timed steps
    again = Counted()  # another module of the same architecture: the stored rate
    assert throughput.measure_student(again, (4,), 8, seconds=0.05) == rate and again.calls == 0
    wider = Counted(width=6)
    throughput.measure_student(wider, (6,), 8, seconds=0.05)
    other_batch = Counted()
    throughput.measure_student(other_batch, (4,), 16, seconds=0.05)
    assert wider.calls >= 3 and other_batch.calls >= 3
    assert (throughput.TIMINGS.timed, throughput.TIMINGS.cached) == (3, 1)
    throughput.TIMINGS.refresh = True  # --measure
    fresh = Counted()
    throughput.measure_student(fresh, (4,), 8, seconds=0.05)
    assert fresh.calls >= 3


def test_a_damaged_timing_cache_is_timed_again_and_rewritten(cache_dir: Path) -> None:
    throughput.measure_student(Counted(), (4,), 8, seconds=0.05)
    throughput.timing_path().write_text("{not json")
    student = Counted()
    throughput.measure_student(student, (4,), 8, seconds=0.05)
    assert student.calls >= 3
    reused = Counted()
    throughput.measure_student(reused, (4,), 8, seconds=0.05)
    assert reused.calls == 0


def test_the_second_plan_times_nothing_and_says_so(tmp_path: Path) -> None:
    grid = {"teacher": "effnet-lite0", "student": ["projection", "resnet"], "method": "kd", "dataset": "digits",
            "data": {"image_size": 32, "train_limit": 60, "val_limit": 20, "test_limit": 20}}
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(grid))
    args = ["plan", str(tmp_path / "g.yaml"), "--db", f"sqlite:///{tmp_path / 'r.db'}"]
    counts = []
    for extra in ([], [], ["--measure"]):
        result = CliRunner().invoke(app, [*args, *extra])
        assert result.exit_code == 0, result.output
        match = re.search(r"timings: (\d+) timed now, (\d+) reused from this machine's timing cache", result.stdout)
        assert match, result.stdout
        counts.append((int(match[1]), int(match[2])))
        assert "student projection (head), 1 stacked:" in result.stdout
    # the teacher, the two students, and the projection cell's stacked step: a lone bundleable cell trains as a
    # bundle of 1 under --bundle auto (bench run's default), so the plan times that step too
    assert counts == [(4, 0), (0, 4), (4, 0)]


def bottlenecks(count: int, hidden: int = 16) -> list[nn.Module]:
    from bench.core.registries import STUDENTS
    from bench.students.base import StudentContext

    context = StudentContext(3, 8, 0, input_shape=(8,))
    return [STUDENTS.get("bottleneck")(context, {"hidden_dim": hidden, "bottleneck_dim": 4}) for _ in range(count)]


def test_a_stacked_step_is_timed_once_per_bundle_size_and_counts_every_cells_images(cache_dir: Path) -> None:
    three = throughput.measure_bundle(bottlenecks(3), (8,), 8, seconds=0.05)
    two = throughput.measure_bundle(bottlenecks(2), (8,), 8, seconds=0.05)
    alone = throughput.measure_student(bottlenecks(1)[0], (8,), 8, seconds=0.05)
    assert (throughput.TIMINGS.timed, throughput.TIMINGS.cached) == (3, 0)  # three sizes, three timings
    assert throughput.measure_bundle(bottlenecks(3), (8,), 8, seconds=0.05) == three
    assert throughput.TIMINGS.cached == 1
    # every cell's images count: a stacked step of 3 tiny heads (per-step overhead, little arithmetic) moves far
    # more images per second than one head's step, so a rate per cell would come out below the single rate
    assert three > 1.5 * alone and two > 1.2 * alone


def test_bundle_sizes_chunk_each_bundle_key_and_skip_done_and_lone_cells() -> None:
    from bench.core.spec import ExperimentSpec
    from bench.plan.cost import bundle_sizes
    from bench.plan.dry_run import Plan

    def cell(seed: int, **hparams: object) -> ExperimentSpec:
        return ExperimentSpec.create(teacher="t", student="bottleneck", method="kd", dataset="digits",
                                     hparams={"lr": 1e-3, **hparams}, data={}, epochs=2, seed=seed)

    wide = [cell(seed, hidden_dim=64) for seed in range(20)]  # one key, 20 cells: bundles of 16 and 4
    narrow = [cell(seed) for seed in range(3)]  # another key: one bundle of 2 once a cell is done
    lone = ExperimentSpec.create(teacher="t", student="resnet8", method="kd", dataset="digits", hparams={},
                                 data={}, epochs=2, seed=0)
    plan = Plan("grid", "g", [], [*wide, *narrow, lone], done={narrow[0].key})
    sizes = bundle_sizes(plan)
    assert sorted(sizes[spec.key] for spec in wide) == [4] * 4 + [16] * 16
    assert [sizes.get(spec.key) for spec in narrow] == [None, 2, 2]
    assert lone.key not in sizes
    assert bundle_sizes(Plan("study", "s", [], [*wide, *narrow])) == {}  # a study's trials never bundle
