"""`bench sql` is read-only: writes are refused and change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.core.errors import BenchError
from bench.store.results import Store
from bench.store.sql import read_only_query
from tests.support.records import record


@pytest.fixture
def filled(db_url: str) -> str:
    store = Store(db_url)
    store.save_run(record("a", test_acc=0.5))
    store.save_run(record("b", test_acc=0.7))
    return db_url


def test_select_returns_columns_and_rows(filled: str) -> None:
    columns, rows = read_only_query(filled, "SELECT spec_key, test_acc FROM runs ORDER BY spec_key")
    assert columns == ["spec_key", "test_acc"] and rows == [("a", 0.5), ("b", 0.7)]


@pytest.mark.parametrize(
    "statement",
    ["DELETE FROM runs", "UPDATE runs SET test_acc = 1.0", "DROP TABLE runs",
     "INSERT INTO run_epochs (run_id, epoch, train_loss, loss_terms, seconds) VALUES (1, 9, 0, '{}', 0)",
     "CREATE TABLE evil (x int)"],
)
def test_writes_are_refused_and_change_nothing(filled: str, statement: str) -> None:
    before = read_only_query(filled, "SELECT * FROM runs ORDER BY id")
    with pytest.raises(BenchError, match="read-only"):
        read_only_query(filled, statement)
    assert read_only_query(filled, "SELECT * FROM runs ORDER BY id") == before
    assert read_only_query(filled, "SELECT count(*) FROM run_epochs")[1] == [(4,)]


def test_missing_database_and_bad_sql(tmp_path: Path, filled: str) -> None:
    with pytest.raises(BenchError, match="database not found"):
        read_only_query(f"sqlite:///{tmp_path / 'none.db'}", "SELECT 1")
    assert not (tmp_path / "none.db").exists()
    with pytest.raises(BenchError, match="SQL error: no such column: nope"):
        read_only_query(filled, "SELECT nope FROM runs")
