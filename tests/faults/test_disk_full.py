"""A disk that fills during a feature-cache write, an artifact write or a checkpoint write.

A cache write that fails only costs the entry: the computed outputs are used, the miss is said once, nothing half
written is left to be trusted later. An artifact or checkpoint write that fails fails its cell at once with the
reason in one line (no traceback), leaves no partial file, and a re-run after space is freed completes the cell
with the numbers a run on a roomy disk gives. A real full tmpfs where mounting is allowed (root); the cache write
also with an injected ENOSPC, which runs anywhere.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bench.cli.app import app
from bench.data.splits import DataConfig, load_dataset
from bench.store.sql import read_only_query
from bench.teacher_outputs.cache import FeatureCache
from bench.teacher_outputs.features import cached_teacher_outputs
from tests.faults.conftest import fill
from tests.test_cache import CountingTeacher

CPU = torch.device("cpu")
GRID = """
name: diskfull
teacher: effnet-lite0
student: bottleneck
method: kd
dataset: digits
seeds: [0]
epochs: 2
data: {image_size: 32, train_limit: 40, val_limit: 20, test_limit: 20}
hparams: {batch_size: 16}
"""


def _written(root: Path) -> list[str]:
    return sorted(path.name for path in root.rglob("*") if path.is_file() and path.name != "filler")


@pytest.mark.parametrize("how", ["tmpfs", "injected"])
def test_a_full_disk_during_a_cache_write_recomputes_and_says_so(tmp_path: Path, tmpfs, monkeypatch, caplog,  # noqa: ANN001
                                                                  how: str) -> None:
    import safetensors.torch

    data = load_dataset("digits", DataConfig(train_limit=30, val_limit=20, test_limit=20, image_size=16))
    teacher = CountingTeacher()
    truth, _ = cached_teacher_outputs(teacher, data, "val", ("pooled",), FeatureCache(tmp_path / "roomy"), CPU)
    if how == "tmpfs":
        root = tmpfs("64k")
        filler = fill(root, 0)
    else:
        root, real_save = tmp_path / "full", safetensors.torch.save_file

        def disk_full(tensors, filename, metadata=None) -> None:  # noqa: ANN001 - safetensors' signature
            Path(filename).write_bytes(b"\x08\0\0\0\0\0\0\0{")  # half a header, then the disk is full
            raise Exception("Error while serializing: I/O error: No space left on device (os error 28)")  # noqa: TRY002

        monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    caplog.set_level(logging.WARNING, logger="bench")
    cache = FeatureCache(root)
    for attempt in range(2):  # each lookup computes: nothing half-written was kept to be trusted
        seen = teacher.images_seen
        got, event = cached_teacher_outputs(teacher, data, "val", ("pooled",), cache, CPU)
        assert not event.hit and teacher.images_seen == seen + 20, attempt
        assert torch.equal(got["pooled"], truth["pooled"])
        assert _written(root) == [], _written(root)
    said = [r.getMessage() for r in caplog.records if "could not be written" in r.getMessage()]
    assert len(said) == 1 and "No space left on device" in said[0] and cache.unwritten == 2, said
    if how == "tmpfs":
        filler.unlink()
    else:
        monkeypatch.setattr(safetensors.torch, "save_file", real_save)
    got, event = cached_teacher_outputs(teacher, data, "val", ("pooled",), FeatureCache(root), CPU)
    assert not event.hit and torch.equal(got["pooled"], truth["pooled"])
    seen = teacher.images_seen
    got, event = cached_teacher_outputs(teacher, data, "val", ("pooled",), FeatureCache(root), CPU)
    assert event.hit and teacher.images_seen == seen and torch.equal(got["pooled"], truth["pooled"])


def _run(grid: Path, url: str, tmp_path: Path, *paths: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["run", str(grid), "--db", url, "--device", "cpu",
                                      "--cache-dir", str(tmp_path / "cache"), *paths])
    return result.exit_code, result.output


def _rows(url: str) -> dict[str, tuple]:
    _, rows = read_only_query(url, "SELECT spec_key, method, status, error, test_acc, val_acc FROM runs")
    return {row[0]: row[1:] for row in rows}


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("what", ["--artifacts", "--run-dir"])
def test_a_full_disk_during_an_artifact_or_checkpoint_write_fails_the_cell_then_a_rerun_completes(
        tmp_path: Path, tmpfs, what: str) -> None:  # noqa: ANN001
    grid = tmp_path / "diskfull.yaml"
    grid.write_text(GRID)
    roomy = ["--artifacts", str(tmp_path / "artifacts"), "--run-dir", str(tmp_path / "runs")]
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    code, output = _run(grid, reference, tmp_path, *roomy)
    assert code == 0, output
    expected = _rows(reference)
    assert {row[1] for row in expected.values()} == {"done"}
    point = tmpfs("16m")  # room for the kept students once the filler goes
    filler = fill(point, 0)
    paths = {"--artifacts": str(tmp_path / "artifacts2"), "--run-dir": str(tmp_path / "runs2"), what: str(point)}
    url = f"sqlite:///{tmp_path / 'results.db'}"
    _, output = _run(grid, url, tmp_path, *[part for pair in paths.items() for part in pair])
    assert "No space left on device" in " ".join(output.split()) and "Traceback" not in output, output
    failed = {key: row for key, row in _rows(url).items() if row[1] != "done"}
    assert "kd" in [row[0] for row in failed.values()], _rows(url)  # the student's cell at least
    for row in failed.values():
        assert row[1] == "failed" and "No space left on device" in row[2], row
    assert _written(point) == []  # no partial artifact or checkpoint
    filler.unlink()
    code, output = _run(grid, url, tmp_path, *[part for pair in paths.items() for part in pair])
    assert code == 0, output
    again = _rows(url)
    assert {key: (row[1], row[3], row[4]) for key, row in again.items()} == {
        key: (row[1], row[3], row[4]) for key, row in expected.items()}
    if what == "--artifacts":
        assert len(_written(point)) == 2  # the kept probe and student, now that there is room
