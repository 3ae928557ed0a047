"""CLI: user errors are one line on stderr, exit code 2, no traceback, database unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.store.results import Store
from tests.support.paths import REPO
from tests.support.records import record


def bench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def digest(path: Path) -> str:
    """Hash of the database's logical content (every table's rows), WAL included."""
    import sqlite3

    connection = sqlite3.connect(path)
    try:
        dump = "\n".join(connection.iterdump())
    finally:
        connection.close()
    return hashlib.sha256(dump.encode()).hexdigest()


def no_data_env(home: Path) -> dict[str, str]:
    """This environment without $BENCH_DATA, with an empty home (PYTHONPATH is kept)."""
    env = {k: v for k, v in os.environ.items() if k != "BENCH_DATA"}
    return {**env, "HOME": str(home)}


@pytest.fixture
def filled_db(tmp_path: Path) -> tuple[str, Path]:
    path = tmp_path / "r.db"
    Store(f"sqlite:///{path}").save_run(record("a", test_acc=0.5))
    return f"sqlite:///{path}", path


BAD_GRIDS = {
    "unknown_student": ("teacher: effnet-lite0\nstudent: resent\nmethod: kd\ndataset: digits\n",
                        "unknown student 'resent'; did you mean: resnet?"),
    "bad_yaml": ("teacher: [effnet-lite0\n", "invalid YAML"),
    "unknown_field": ("teacher: effnet-lite0\nstudents: resnet\n", "field 'students': unknown field"),
    "missing_data": ("teacher: effnet-lite0\nstudent: resnet\nmethod: kd\ndataset: fashion-mnist\n",
                     "fashion-mnist not found"),
}


@pytest.mark.parametrize("case", sorted(BAD_GRIDS))
def test_bad_grid_exits_2_with_one_line(tmp_path: Path, filled_db: tuple[str, Path], case: str) -> None:
    text, message = BAD_GRIDS[case]
    grid = tmp_path / "bad.yaml"
    grid.write_text(text)
    url, path = filled_db
    before = digest(path)
    (tmp_path / "nodata").mkdir()  # an empty data root: it exists (a missing one is refused first), holds nothing
    args = ["run", "--grid", str(grid), "--db", url, "--cache-dir", str(tmp_path / "c"),
            "--data-root", str(tmp_path / "nodata")]
    if case == "missing_data":  # make sure no system copy or $BENCH_DATA is found either
        code = ("import sys, pathlib, bench.datasets.fashion_mnist as d; "
                "d.SYSTEM_FASHION_MNIST = pathlib.Path('/nonexistent');"
                "from bench.cli.app import main; main(sys.argv[1:])")
        result = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True,
                                text=True, timeout=300, env=no_data_env(tmp_path))
    else:
        result = bench(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert digest(path) == before
    assert not (tmp_path / "c").exists()


def test_missing_grid_file_and_bad_db_url(tmp_path: Path) -> None:
    result = bench("run", "--grid", "nope.yaml", "--db", f"sqlite:///{tmp_path}/x.db", cwd=tmp_path)
    assert result.returncode == 2 and "grid file not found: nope.yaml" in result.stderr
    result = bench("run", "--db", "not a url", cwd=tmp_path)
    assert result.returncode == 2 and "is not a database URL" in result.stderr
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "results.db").exists()


def test_sql_outputs_and_refuses_writes(tmp_path: Path, filled_db: tuple[str, Path]) -> None:
    url, path = filled_db
    result = bench("sql", "SELECT spec_key, test_acc FROM runs", "--db", url, "--json", cwd=tmp_path)
    assert result.returncode == 0 and json.loads(result.stdout) == [{"spec_key": "a", "test_acc": 0.5}]
    result = bench("sql", "SELECT spec_key, test_acc FROM runs", "--db", url, "--csv", cwd=tmp_path)
    assert result.stdout.splitlines() == ["spec_key,test_acc", "a,0.5"]
    result = bench("sql", "SELECT spec_key FROM runs", "--db", url, "--csv", "--json", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == "error: --csv and --json are exclusive; pick one"
    before = digest(path)
    result = bench("sql", "DELETE FROM runs", "--db", url, cwd=tmp_path)
    assert result.returncode == 2 and "read-only" in result.stderr and "Traceback" not in result.stderr
    assert digest(path) == before


def test_list_prints_registries_and_rejects_unknown(tmp_path: Path) -> None:
    result = bench("list", "students", cwd=tmp_path)
    assert result.returncode == 0
    for name in ("projection", "bottleneck", "resnet", "standalone", "head"):
        assert name in result.stdout
    assert "effnet-lite0" not in result.stdout
    assert "also any of: timm:<model_name>" in result.stdout  # the prefix resolver is listed, as for teachers
    result = bench("list", "studnets", cwd=tmp_path)
    assert result.returncode == 2 and "did you mean: students?" in result.stderr


def test_report_on_empty_database_says_so(tmp_path: Path) -> None:
    result = bench("report", "--db", f"sqlite:///{tmp_path}/empty.db", "--out", str(tmp_path / "r"),
                   cwd=tmp_path)
    assert result.returncode == 2 and "no runs to report" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_does_not_import_torch() -> None:
    code = "import sys; from bench.cli.app import app; import bench.report; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_version_short_help_and_defaults_in_help(tmp_path: Path) -> None:
    from importlib.metadata import version

    result = bench("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"distill-bench {version('distill-bench')}"
    result = bench("run", "-h", cwd=tmp_path)
    assert result.returncode == 0 and "[default: studies/demo.yaml]" in result.stdout  # markup no longer eats it
    assert "[default: auto]" in result.stdout and "--grid <path>" in result.stdout


def test_grid_file_as_argument_or_option_but_not_two(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("teacher: effnet-lite0\nstudent: projection\nmethod: scratch\ndataset: digits\n")
    result = bench("run", "a.yaml", "--grid", "b.yaml", "--db", f"sqlite:///{tmp_path}/x.db", cwd=tmp_path)
    assert result.returncode == 2 and "two grid files given" in result.stderr
    result = bench("run", "b.yaml", "--db", f"sqlite:///{tmp_path}/x.db", cwd=tmp_path)
    assert result.returncode == 2 and "grid file not found: b.yaml" in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_runs_fits_80_and_120_columns_and_takes_columns(tmp_path: Path, filled_db: tuple[str, Path]) -> None:
    url, _ = filled_db
    Store(url).save_run(record("b", test_acc=0.123456789, seed=1))
    for width in (80, 120):
        result = subprocess.run([sys.executable, "-m", "bench", "runs", "--db", url], cwd=tmp_path, text=True,
                                capture_output=True, timeout=300, env={**os.environ, "COLUMNS": str(width)})
        lines = result.stdout.splitlines()
        assert result.returncode == 0 and max(len(line) for line in lines) <= width, result.stdout
        assert "…" not in result.stdout and "0.1235" in result.stdout and "0.123456789" not in result.stdout
        assert ("teacher" in lines[1]) == (width >= 120)  # the narrow table leaves the teacher out
    result = bench("runs", "--db", url, "--columns", "id,seed,test_acc", cwd=tmp_path)
    assert result.stdout.split()[:3] == ["id", "seed", "test_acc"] and "student" not in result.stdout
    result = bench("runs", "--db", url, "--columns", "id,nope", "--csv", cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "'nope'" in result.stderr
    result = bench("runs", "--db", url, "--columns", "id,test_acc", "--csv", cwd=tmp_path)
    assert result.stdout.splitlines() == ["id,test_acc", "1,0.5", "2,0.123456789"]  # CSV keeps stored values


def test_list_is_served_without_torch_once_cached_and_a_unit_edit_invalidates_it(tmp_path: Path) -> None:
    from bench.cli.listing import fingerprint

    env = {**os.environ, "BENCH_CACHE": str(tmp_path / "cache")}
    code = ("import sys; from bench.cli.app import main\ntry:\n    main(['list'])\nexcept SystemExit:\n    pass\n"
            "print('torch imported' if 'torch' in sys.modules else 'no torch')")
    runs = [subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env=env) for _ in range(2)]
    assert runs[0].stdout.strip().endswith("torch imported")  # the first listing imports the units
    assert runs[1].stdout.strip().endswith("no torch")  # the second reads the cached listing
    assert runs[0].stdout.replace("torch imported", "") == runs[1].stdout.replace("no torch", "")
    assert "projection" in runs[1].stdout and "effnet-lite0" in runs[1].stdout

    (tmp_path / "units").mkdir()
    unit = tmp_path / "units" / "a.py"
    unit.write_text("x = 1\n")
    before = fingerprint(tmp_path, ("units",))
    unit.write_text("x = 22\n")  # another size: a new key, whatever the clock's resolution
    assert fingerprint(tmp_path, ("units",)) != before
