"""`bench teachers` keeps what each architecture gives in a cached inventory: the second call builds nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli.app import app
from bench.core.registries import TEACHERS
from bench.teachers import inventory_cache
from bench.teachers.inventory import inventory

NAMES = ["effnet-lite0", "dino-vits16"]


@pytest.fixture
def builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every architecture build (a card's `describe` call) is counted; the cache lives under tmp_path."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BENCH_WEIGHTS", str(tmp_path / "weights"))
    calls: list[str] = []
    originals = {name: TEACHERS.entry(name).card.describe for name in NAMES}
    for name, describe in originals.items():
        def counted(path, name=name, describe=describe):  # noqa: ANN001, ANN202
            calls.append(name)
            return describe(path)
        object.__setattr__(TEACHERS.entry(name).card, "describe", counted)  # cards are frozen
    yield calls
    for name, describe in originals.items():
        object.__setattr__(TEACHERS.entry(name).card, "describe", describe)


def test_the_second_inventory_builds_nothing_and_says_the_same(builds: list[str]) -> None:
    first = [info.as_dict() for info in inventory(NAMES)]
    assert builds == NAMES
    second = [info.as_dict() for info in inventory(NAMES)]
    assert builds == NAMES, "the cached inventory was not used"
    assert second == first and first[0]["params"] == 4_652_008 and first[1]["embed_dim"] == 384
    assert first[1]["preprocess"]["mean"] == [0.485, 0.456, 0.406]


def test_a_damaged_or_stale_inventory_is_rebuilt(builds: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    inventory(NAMES)
    path = inventory_cache.cache_path()
    path.write_text('{"key": "x", "teachers": [')  # a torn write
    assert [info.params for info in inventory(NAMES)][0] == 4_652_008
    assert len(builds) == 4 and json.loads(path.read_text())["teachers"]  # rebuilt and rewritten whole
    assert list(path.parent.glob(f"{path.name}.corrupt-*")), "the damaged file is moved aside"
    inventory(NAMES)
    assert len(builds) == 4
    monkeypatch.setattr(inventory_cache, "version_key", lambda: "timm=another")  # an upgraded library
    inventory(NAMES)
    assert len(builds) == 6


def test_teachers_fetch_help_is_the_fetch_commands_own() -> None:
    result = CliRunner().invoke(app, ["teachers", "fetch", "-h"])
    assert result.exit_code == 0
    assert "teachers fetch [OPTIONS] [names]" in result.output and "--all-paper" in result.output
    assert "--json" not in result.output and "--weights" not in result.output  # the parent's options
    result = CliRunner().invoke(app, ["teachers", "fetch", "--bogus"])
    assert result.exit_code == 2 and "--bogus" in result.output
