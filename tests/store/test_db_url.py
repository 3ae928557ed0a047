"""Bad --db URLs, unreachable servers and corrupt SQLite files are one line and exit 2, found in seconds."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli.app import app
from bench.core.errors import BenchError
from bench.store.results import Store
from bench.store.session import check_connection, check_url, get_engine
from tests.support.paths import REPO
from tests.support.records import record

runner = CliRunner()
GRID = str(REPO / "studies" / "demo.yaml")


def _one_line_error(args: list[str], expect: str) -> str:
    result = runner.invoke(app, args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], result.stderr
    return lines[0]


@pytest.mark.parametrize("command", [["run", GRID], ["worker", "--study", "x"], ["runs"], ["show", "1"],
                                     ["report"], ["sql", "SELECT 1"]])
def test_unknown_scheme_names_the_supported_ones(command: list[str]) -> None:
    _one_line_error([*command, "--db", "mysql://x/y"], "unsupported database scheme 'mysql'; supported: sqlite, "
                    "postgresql")


def test_unknown_scheme_through_python_m_bench() -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "runs", "--db", "mysql://x/y"], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "supported: sqlite" in result.stderr


def test_missing_driver_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("psycopg") else real(name, *a))
    with pytest.raises(BenchError, match=r"psycopg driver is not installed; pip install 'distill-bench\[postgres\]'"):
        check_url("postgresql://u@h/db")
    with pytest.raises(BenchError, match="pip install psycopg2-binary"):
        check_url("postgresql+psycopg2://u@h/db")
    with pytest.raises(BenchError, match="driver 'postgresql\\+asyncpg' is not supported"):
        check_url("postgresql+asyncpg://u@h/db")


def test_refused_connection_is_one_line_at_once(unused_port: int) -> None:
    start = time.monotonic()
    line = _one_line_error(["runs", "--db", f"postgresql://u:secret@127.0.0.1:{unused_port}/db"], "cannot connect")
    assert "secret" not in line and time.monotonic() - start < 10


def test_silent_server_times_out_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host that accepts TCP but never answers: the connect timeout ends it, not a 20 s hang and a traceback."""
    monkeypatch.setattr("bench.store.session.CONNECT_TIMEOUT_S", 2)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        start = time.monotonic()
        with pytest.raises(BenchError, match="cannot connect"):
            check_connection(f"postgresql://u@127.0.0.1:{silent.getsockname()[1]}/db")
        assert time.monotonic() - start < 8


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_reachable_server_passes(postgres_url: str) -> None:
    assert check_connection(postgres_url) == postgres_url


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def _broken_pages(path: Path) -> None:
    """A valid database whose pages after the first are overwritten."""
    Store(f"sqlite:///{path}").save_run(record())
    get_engine(f"sqlite:///{path}").dispose()
    data = bytearray(path.read_bytes())
    data[4096:] = os.urandom(len(data) - 4096)
    path.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@pytest.mark.parametrize("spoil", [_garbage, _broken_pages])
@pytest.mark.parametrize("command", [["run", GRID], ["runs"], ["sql", "SELECT 1"], ["report"]])
def test_corrupt_sqlite_file_is_one_line(tmp_path: Path, spoil, command: list[str]) -> None:  # noqa: ANN001
    path = tmp_path / "results.db"
    spoil(path)
    line = _one_line_error([*command, "--db", f"sqlite:///{path}"], f"{path} is not a readable SQLite database: ")
    assert line.endswith("; move it away or pass another --db")


@pytest.mark.parametrize(("name", "written"), [("a#b.db", "a#b.db"), ("q%3Fx.db", "q?x.db"),
                                               ("sp%20ace%25.db", "sp ace%.db")])
def test_store_opens_exactly_the_named_file(tmp_path: Path, name: str, written: str) -> None:
    """The read-write store and the read-only readers agree on the file, and no other file appears."""
    url = f"sqlite:///{tmp_path}/{name}"
    Store(url).save_run(record())
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm", "-lock"))) == [written]
    listed = runner.invoke(app, ["runs", "--db", url, "--csv"])
    assert listed.exit_code == 0 and len(listed.stdout.strip().splitlines()) == 2, listed.output
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm", "-lock"))) == [written]


def test_unescaped_question_mark_is_refused(tmp_path: Path) -> None:
    """`?` starts URL options: a path with a bare `?` would silently open the part before it."""
    with pytest.raises(BenchError, match="write a '\\?' in a SQLite file name as %3F"):
        Store(f"sqlite:///{tmp_path}/q?x.db")
    assert list(tmp_path.iterdir()) == []
    assert check_url(f"sqlite:///{tmp_path}/r.db?timeout=5")  # real options still work
