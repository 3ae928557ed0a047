"""Tables that fit the terminal: `bench runs` shortens only its widest column, a wide `bench sql` result falls
back to one record per block with a hint, and nothing is ever printed as one-letter columns."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from bench.cli import common


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - (stdout buffer, stderr buffer, set width)
    buffers = {"out": io.StringIO(), "err": io.StringIO()}

    def at(width: int) -> None:
        monkeypatch.setattr(common, "out", Console(file=buffers["out"], width=width, force_terminal=False))
        monkeypatch.setattr(common, "err", Console(file=buffers["err"], width=width, force_terminal=False))

    return buffers, at


COLUMNS = ["id", "student", "setting", "seed", "status", "test_acc"]
ROWS = [(1, "bottleneck", "effnet-lite0 fashion-mnist lr=0.001 hidden=512 dropout=0.1 budget=steps", 0, "done", 0.8525),
        (2, "resnet", "effnet-lite0 fashion-mnist lr=0.003 depth=8 width=16", 1, "failed", None)]


def test_runs_at_80_columns_keep_every_short_column_whole_and_shorten_the_setting(screen) -> None:  # noqa: ANN001
    buffers, at = screen
    at(80)
    common.print_rows(COLUMNS, ROWS, csv=False, as_json=False, fit=True)
    text = buffers["out"].getvalue()
    lines = [line for line in text.splitlines() if line.strip()]
    assert all(len(line) <= 80 for line in lines)
    for word in ("bottleneck", "failed", "0.8525", "seed", "status", "id"):
        assert word in text
    assert "…" in text and "dropout=0.1 budget=steps" not in text  # only the setting was shortened


def test_a_result_wider_than_the_terminal_is_printed_as_records_with_a_hint(screen) -> None:  # noqa: ANN001
    buffers, at = screen
    at(80)
    columns = [f"column_{i}" for i in range(12)]
    rows = [tuple(f"value-{r}-{i}" for i in range(12)) for r in range(2)]
    common.print_rows(columns, rows, csv=False, as_json=False)
    text = buffers["out"].getvalue()
    assert "-[ RECORD 1 ]" in text and "-[ RECORD 2 ]" in text
    assert "column_11  value-1-11" in text  # every value whole, next to its column's name
    assert "12 columns do not fit 80 characters" in buffers["err"].getvalue()
    at(400)  # the same result on a wide terminal is a table
    buffers["out"].truncate(0)
    buffers["out"].seek(0)
    common.print_rows(columns, rows, csv=False, as_json=False)
    assert "RECORD" not in buffers["out"].getvalue() and "value-1-11" in buffers["out"].getvalue()
