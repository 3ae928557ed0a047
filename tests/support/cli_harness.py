"""The bad-input harness the CLI tests share: a filled results database, a dump of every table, the error contract."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def make_filled_db(path: Path) -> Path:
    """A results database with runs, epochs and an Optuna study with trials (copy it per case)."""
    from bench.store.results import Store
    from tests.support.report_fixtures import add_tune_study, unfinished

    url = f"sqlite:///{path}"
    store = Store(url)
    store.save_run(unfinished("kept-failed", "resnet", "kd", 2, 2, "failed"))
    store.save_run(unfinished("kept-pruned", "projection", "kd", 2, 2, "pruned"))
    store.engine.dispose()
    add_tune_study(url)
    return path


def dump(path: Path) -> list[str]:
    """Every table's schema and rows (Optuna's included), in a stable order."""
    connection = sqlite3.connect(path)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


def assert_one_line_error(code: int, stderr: str, expected: list[str]) -> None:
    """Exit 2, one `error:` line, no traceback, and every expected word in it."""
    assert code == 2, stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1 and stderr.endswith("\n"), stderr
    assert "Traceback" not in stderr
    for word in expected:
        assert word in stderr, f"{word!r} not in {stderr!r}"
