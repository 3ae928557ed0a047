"""The bad-input corpus: every case is exit 2, one `error:` line naming the field, and no database change.

tests/config/bad_inputs/grids/*.yaml run as `bench run FILE`, tests/config/bad_inputs/studies/*.yaml as
`bench study FILE`;
each file's first line `# expect: a; b` names words the message must contain. cases.yaml lists bad command lines.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from bench.cli.app import app
from tests.support.cli_harness import assert_one_line_error, dump, make_filled_db
from tests.support.paths import REPO

CORPUS = Path(__file__).resolve().parent / "bad_inputs"


def _expected(path: Path) -> list[str]:
    first = path.read_bytes().split(b"\n", 1)[0].decode("ascii")
    match = re.fullmatch(r"# expect: (.+)", first)
    assert match, f"{path} must start with '# expect: word; word'"
    return [word.strip() for word in match.group(1).split(";")]


def _cases() -> list[Any]:
    cases = [pytest.param(["run", str(path)], _expected(path), True, id=f"grid-{path.stem}")
             for path in sorted((CORPUS / "grids").glob("*.yaml"))]
    cases += [pytest.param(["study", str(path)], _expected(path), True, id=f"study-{path.stem}")
              for path in sorted((CORPUS / "studies").glob("*.yaml"))]
    for case in yaml.safe_load((CORPUS / "cases.yaml").read_text()):
        cases.append(pytest.param(case["args"], case["expect"], case.get("db", True), id=f"cli-{case['name']}"))
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def filled_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results database with runs, epochs and an Optuna study with trials (copied per case)."""
    return make_filled_db(tmp_path_factory.mktemp("filled") / "results.db")


_dump = dump


def _prepare(tmp_path: Path, args: list[str], with_db: bool) -> tuple[list[str], Path]:
    (tmp_path / "existing.txt").write_text("a file where a directory is expected\n")
    (tmp_path / "broken-link.yaml").symlink_to(tmp_path / "missing-target.yaml")
    argv = [arg.format(corpus=CORPUS, tmp=tmp_path) for arg in args]
    db = tmp_path / "results.db"
    return (argv + ["--db", f"sqlite:///{db}"] if with_db else argv), db


_assert_one_line_error = assert_one_line_error


@pytest.mark.parametrize(("args", "expected", "with_db"), CASES)
def test_bad_input_is_one_line_and_creates_no_database(tmp_path: Path, args: list[str], expected: list[str],
                                                      with_db: bool) -> None:
    argv, db = _prepare(tmp_path, args, with_db)
    result = CliRunner().invoke(app, argv)
    _assert_one_line_error(result.exit_code, result.stderr, expected)
    assert not db.exists()


@pytest.mark.parametrize(("args", "expected", "with_db"), CASES)
def test_bad_input_leaves_an_existing_database_unchanged(tmp_path: Path, filled_db: Path, args: list[str],
                                                         expected: list[str], with_db: bool) -> None:
    argv, db = _prepare(tmp_path, args, with_db)
    shutil.copy(filled_db, db)
    before = _dump(db)
    result = CliRunner().invoke(app, argv)
    _assert_one_line_error(result.exit_code, result.stderr, expected)
    assert _dump(db) == before


def test_corpus_is_large_and_covers_every_command() -> None:
    assert len(CASES) >= 45
    assert {case.values[0][0] for case in CASES} >= {"run", "study", "report", "list"}


@pytest.mark.parametrize("case_id", ["grid-lr-not-a-number", "study-search-range-below-valid",
                                     "cli-study-trials-zero"])
def test_bad_input_through_python_m_bench(tmp_path: Path, case_id: str) -> None:
    """The same contract from a real process (the console entry point, not the in-process runner)."""
    args, expected, with_db = next(case.values for case in CASES if case.id == case_id)
    argv, db = _prepare(tmp_path, args, with_db)
    result = subprocess.run([sys.executable, "-m", "bench", *argv], cwd=REPO, capture_output=True, text=True,
                            timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    _assert_one_line_error(result.returncode, result.stderr, expected)
    assert not db.exists()
