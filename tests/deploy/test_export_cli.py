"""`bench export --best --where`: the best done student run of a read-only query; user SQL never writes."""

from __future__ import annotations

import pytest

from bench.artifacts.export import best_run
from bench.core.errors import BenchError
from bench.core.names import PROBE_METHOD
from bench.store.results import Store
from tests.support.records import record
from tests.support.rows import only


@pytest.fixture
def filled(db_url: str) -> str:
    store = Store(db_url)
    store.save_run(record("a", test_acc=0.70, dataset="digits"))
    store.save_run(record("b", test_acc=0.80, dataset="digits"))
    store.save_run(record("c", test_acc=0.95, dataset="cifar10"))
    store.save_run(record("p", test_acc=0.99, dataset="digits", method=PROBE_METHOD, student="probe"))
    store.save_run(record("f", status="failed", test_acc=None, dataset="digits"))
    return db_url


def test_best_is_the_highest_test_accuracy_among_done_student_runs_of_the_query(filled: str) -> None:
    ids = {row: only(filled, f"SELECT id FROM runs WHERE spec_key = '{row}'") for row in "abc"}
    assert best_run(filled, "dataset = 'digits'") == str(ids["b"])  # not the probe cell, not another dataset
    assert best_run(filled, "1 = 1") == str(ids["c"])


def test_a_where_that_writes_is_refused_and_changes_nothing(filled: str) -> None:
    before = only(filled, "SELECT count(*) FROM runs")
    for where in ("1 = 1; DELETE FROM runs", "1 = 1) OR (1 = 1); DROP TABLE runs; --"):
        with pytest.raises(BenchError):
            best_run(filled, where)
    assert only(filled, "SELECT count(*) FROM runs") == before


def test_no_matching_run_is_a_one_line_user_error(filled: str) -> None:
    with pytest.raises(BenchError, match="no done student run matches"):
        best_run(filled, "dataset = 'nothing'")
