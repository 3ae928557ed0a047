"""Reports from a real tiny grid: tables equal SQL aggregates, gains equal scipy, plots, HTML in Chromium."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from bench.cli.app import app
from tests.support.paths import REPO
from tests.support.report_fixtures import TUNE_STUDY, build_database

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FORMATS = "md,html,csv,tex"


def bench(*args: str, cwd: Path | None = None) -> Result:
    """The CLI in-process (a subprocess per call costs seconds of imports); cwd is unused."""
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="session")
def report_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("report")
    return build_database(root), root / "results.db"


@pytest.fixture(scope="session")
def report_dir(report_db: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report written by a fresh interpreter that must not import torch while doing it."""
    out = tmp_path_factory.mktemp("out")
    code = ("import sys, pathlib; from bench.report.write import parse_formats, write_report; "
            f"write_report({report_db[0]!r}, pathlib.Path({str(out)!r}), None, parse_formats({FORMATS!r})); "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", "the report imported torch"
    return out


def sql(path: Path, query: str, *params: object) -> list[sqlite3.Row]:
    """Rows that read by column name (row["test_acc"]) and still unpack in SELECT order."""
    connection = sqlite3.connect(path)
    connection.row_factory = sqlite3.Row
    try:
        return connection.execute(query, params).fetchall()
    finally:
        connection.close()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def md_row(report: str, student: str, method: str, section: str) -> str:
    """The Markdown row of (student, method) in the matrix of the given section heading."""
    block = report.split(section, 1)[1].split("\n### ", 1)[0]
    rows = [line for line in block.splitlines() if line.startswith(f"| {student} |") and f"| {method} |" in line]
    assert len(rows) == 1, block
    return rows[0]


@pytest.mark.slow
def test_matrix_cells_equal_sql_aggregates(report_db: tuple[str, Path], report_dir: Path) -> None:
    from scipy.stats import t as t_dist

    _, path = report_db
    report = (report_dir / "report.md").read_text()
    summary = {(r["student"], r["method"], int(r["epochs"])): r for r in read_csv(report_dir / "summary.csv")}
    groups = sql(path, "SELECT student, method, epochs, group_concat(test_acc), avg(test_acc), avg(pct_of_teacher), "
                       "avg(size_mb), avg(inference_size_mb) FROM runs WHERE status = 'done' "
                       "AND method != 'teacher-probe' GROUP BY student, method, epochs")
    assert len(groups) == 4
    best: dict[int, float] = {}
    for student, method, epochs, values, mean, pct, size, inference in groups:
        accs = [float(v) for v in values.split(",")]
        std = statistics.stdev(accs)
        row = summary[(student, method, epochs)]
        assert float(row["score_mean"]) == pytest.approx(mean, rel=1e-9)
        assert float(row["score_std"]) == pytest.approx(std, rel=1e-9)
        assert int(row["seeds"]) == 2 and float(row["pct_of_teacher"]) == pytest.approx(pct, rel=1e-9)
        line = md_row(report, student, method, f"### digits, {epochs}-epoch budget")
        assert f"{mean * 100:.1f} ± {std * 100:.1f}" in line and f"{pct:.0f}% of T" in line
        half = t_dist.ppf(0.975, len(accs) - 1) * std / math.sqrt(len(accs))  # 95% CI of the mean, t over seeds
        assert float(row["ci_low"]) == pytest.approx(mean - half, rel=1e-9)
        assert f"[{(mean - half) * 100:.1f}, {(mean + half) * 100:.1f}]" in line
        assert f"| {size:.3f} | {inference:.3f} | {method} |" in line
        assert inference > 10 * size if student == "projection" else inference == pytest.approx(size)
        best[epochs] = max(best.get(epochs, 0.0), mean)
    for student, method, epochs, _, mean, _, _, _ in groups:
        line = md_row(report, student, method, f"### digits, {epochs}-epoch budget")
        assert ("**" in line) == (mean == best[epochs])
    assert "95% CI, t over seeds" in report
    (probe,) = sql(path, "SELECT test_acc FROM runs WHERE method = 'teacher-probe'")
    assert f"effnet-lite0 {probe['test_acc'] * 100:.1f}%" in report


@pytest.mark.slow
def test_gains_over_scratch_equal_scipy_on_raw_rows(report_db: tuple[str, Path], report_dir: Path) -> None:
    from scipy.stats import ttest_rel

    _, path = report_db
    gains = {(r["student"], int(r["epochs"])): r for r in read_csv(report_dir / "baseline.csv")}
    assert len(gains) == 2 and {r["method"] for r in gains.values()} == {"kd"}
    report = (report_dir / "report.md").read_text()
    for student, epochs in gains:
        rows = sql(path, "SELECT k.test_acc AS kd, s.test_acc AS scratch FROM runs k JOIN runs s "
                         "ON s.student = k.student AND s.epochs = k.epochs AND s.seed = k.seed "
                         "AND s.teacher = k.teacher WHERE k.method = 'kd' AND s.method = 'scratch' "
                         "AND k.status = 'done' AND s.status = 'done' AND k.student = ? AND k.epochs = ? "
                         "ORDER BY k.seed", student, epochs)
        kd, scratch = [r["kd"] for r in rows], [r["scratch"] for r in rows]
        expected = ttest_rel(kd, scratch)
        row = gains[(student, epochs)]
        assert int(row["n"]) == 2
        assert float(row["gain"]) == pytest.approx(statistics.mean(kd) - statistics.mean(scratch), abs=1e-12)
        if math.isnan(expected.pvalue):
            assert row["p"] in ("", "nan")
        else:
            assert float(row["t"]) == pytest.approx(expected.statistic, rel=1e-9)
            assert float(row["p"]) == pytest.approx(expected.pvalue, rel=1e-9)
            shown = "p<0.001" if expected.pvalue < 0.001 else f"p={expected.pvalue:.3f}"
            assert f"| {student} | effnet-lite0 | {epochs} | kd | 2 |" in report and shown in report


@pytest.mark.slow
def test_unfinished_runs_are_shown_not_dropped(report_db: tuple[str, Path], report_dir: Path) -> None:
    report = (report_dir / "report.md").read_text()
    problems = report.split("## Runs that did not finish", 1)[1].split("\n## ", 1)[0]
    for student, status in (("resnet", "failed"), ("projection", "pruned"), ("bottleneck", "failed")):
        assert f"| {student} | kd |" in problems and f"| {status} | RuntimeError: {status} on purpose |" in problems
    assert "second line" not in problems
    assert "1 failed" in md_row(report, "resnet", "kd", "### digits, 2-epoch budget")
    assert "1 pruned" in md_row(report, "projection", "kd", "### digits, 2-epoch budget")
    assert "| n/a (n=0, 1 failed) |" in md_row(report, "bottleneck", "kd", "### digits, 2-epoch budget")
    html = (report_dir / "report.html").read_text()
    assert html.count('<tr class="problem">') == 3
    result = bench("runs", "--db", report_db[0], "--where", "status != 'done'", "--json", cwd=report_dir)
    assert result.exit_code == 0, result.stderr
    assert sorted(r["status"] for r in json.loads(result.stdout)) == ["failed", "failed", "pruned"]


@pytest.mark.slow
def test_plots_are_written_and_non_empty(report_db: tuple[str, Path], report_dir: Path) -> None:
    import optuna

    stems = ["acc_vs_size_digits", "acc_vs_latency_digits", "epoch_time_digits", "learning_curves_digits",
             f"study_history_{TUNE_STUDY}",
             f"study_importance_{TUNE_STUDY}", f"study_parallel_{TUNE_STUDY}", f"study_pareto_{TUNE_STUDY}"]
    for stem in stems:
        png, svg = report_dir / f"{stem}.png", report_dir / f"{stem}.svg"
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 8_000, stem
        assert "<svg" in svg.read_text()[:2000] and svg.stat().st_size > 8_000, stem
    assert not (report_dir / "study_importance_report-grid.png").exists()
    assert not (report_dir / "study_history_report-grid.png").exists()  # a grid's trial order is no optimisation
    report = (report_dir / "report.md").read_text()
    assert "parameter importances skipped: 0 completed trial(s) with sampled parameters" in report
    assert "Pareto front skipped: single-objective study" in report
    assert "Directions: maximize, minimize; trials: 8 complete." in report
    trials = [t.values for t in optuna.load_study(study_name=TUNE_STUDY, storage=report_db[0]).trials]
    front = [a for a in trials if not any(b[0] >= a[0] and b[1] <= a[1] and b != a for b in trials)]
    assert len(front) >= 2 and f"{len(front)} of 8 completed trials are Pareto-optimal" in report


@pytest.mark.slow
def test_provenance_csv_and_latex(report_db: tuple[str, Path], report_dir: Path) -> None:
    _, path = report_db
    report = (report_dir / "report.md").read_text()
    ((hits, misses, done),) = sql(path, "SELECT sum(cache_hits), sum(cache_misses), count(*) FROM runs "
                                        "WHERE status = 'done'")
    assert f"- feature cache: {hits} hits, {misses} misses over {done} runs" in report
    ((commit,),) = sql(path, "SELECT DISTINCT git_commit FROM runs WHERE git_commit IS NOT NULL")
    ((seconds,),) = sql(path, "SELECT max(teacher_pass_s) FROM runs")
    assert f"- git commit: {commit}" in report and f"on digits: {seconds:.1f} s" in report
    assert "- grids / studies: report-grid" in report and "- runs: 9 done, 2 failed, 1 pruned" in report
    assert f"- grid files: report-grid: {(path.parent / 'grid.yaml').resolve()}" in report
    assert len(read_csv(report_dir / "runs.csv")) == 12
    tex = (report_dir / "tables.tex").read_text()
    assert tex.count(r"\begin{tabular}{llllll}") == 1 and r"\textbf{" in tex
    body = tex.split(r"\midrule", 1)[1].split(r"\bottomrule", 1)[0].strip().splitlines()
    assert len(body) == 5 and all(line.count(" & ") == 5 and line.endswith(r"\\") for line in body)
    assert r"$\pm$" in tex and "±" not in tex


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail("chromium is not installed; `make setup` installs it with apt (Debian package chromium)")
        pytest.skip("chromium is not installed (make browser)")
    return found


def screenshot(html: Path, png: Path) -> None:
    with tempfile.TemporaryDirectory() as profile:
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1400,1000"]
        subprocess.run([chromium(), *flags, html.resolve().as_uri()], capture_output=True, timeout=120, check=True)


@pytest.mark.slow
def test_html_is_self_contained_and_renders_in_chromium(report_dir: Path, tmp_path: Path) -> None:
    from PIL import Image, ImageStat

    html = (report_dir / "report.html").read_text()
    for forbidden in ("http://", "https://", "<script", "<link", 'src="/', "src='", "url("):
        assert forbidden not in html, forbidden
    assert html.count('src="data:image/png;base64,') == 8  # issue 14 added accuracy vs latency
    assert '<table class="matrix">' in html and "<td>resnet</td>" in html
    shot = tmp_path / "shot.png"
    screenshot(report_dir / "report.html", shot)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1400, 1000)
    assert max(ImageStat.Stat(image).stddev) > 20  # not blank
    colours = image.getcolors(maxcolors=1_000_000)
    counts = {colour: count for count, colour in colours}
    assert counts.get((238, 241, 245), 0) > 2_000  # table header background
    assert counts.get((230, 244, 230), 0) > 500  # the highlighted best cell


@pytest.mark.slow
def test_bench_runs_and_show(report_db: tuple[str, Path], tmp_path: Path) -> None:
    url, path = report_db
    result = bench("runs", "--db", url, "--json", cwd=tmp_path)
    listed = json.loads(result.stdout)
    assert [r["id"] for r in listed] == [r["id"] for r in sql(path, "SELECT id FROM runs ORDER BY id")]
    assert len(listed) == 12
    result = bench("runs", "--db", url, "--where", "method = 'kd' AND epochs = 2", "--csv", cwd=tmp_path)
    assert len(result.stdout.strip().splitlines()) == 1 + 7  # 4 done, 2 failed, 1 pruned
    ((run_id, key, acc),) = sql(path, "SELECT id, spec_key, test_acc FROM runs WHERE student = 'resnet' "
                                      "AND method = 'kd' AND seed = 1")
    epochs = sql(path, "SELECT epoch, val_acc, seconds, loss_terms FROM run_epochs WHERE run_id = ? ORDER BY epoch",
                 run_id)
    for ref in (str(run_id), key[:10]):
        shown = json.loads(bench("show", ref, "--db", url, "--json", cwd=tmp_path).stdout)
        assert shown["spec_key"] == key and shown["test_acc"] == pytest.approx(acc)
        assert [e["epoch"] for e in shown["epoch_rows"]] == [e["epoch"] + 1 for e in epochs] == [1, 2]  # from 1
        for row, (_, val_acc, seconds, terms) in zip(shown["epoch_rows"], epochs, strict=True):
            assert row["val_acc"] == pytest.approx(val_acc) and row["seconds"] == pytest.approx(seconds)
            assert {k: row[f"loss_{k}"] for k in json.loads(terms)} == pytest.approx(json.loads(terms))
    table = bench("show", str(run_id), "--db", url, cwd=tmp_path)
    assert table.exit_code == 0 and "epochs (2)" in table.stdout and "loss_kd" in table.stdout
    missing = bench("show", "fff0fff0", "--db", url, cwd=tmp_path)  # a well-formed key prefix that matches no run
    assert missing.exit_code == 2 and "no run with id or spec key prefix 'fff0fff0'" in missing.stderr
    malformed = bench("show", "zzzz", "--db", url, cwd=tmp_path)
    assert malformed.exit_code == 2 and "expected a run id" in malformed.stderr


@pytest.mark.slow
def test_report_filters_formats_and_user_errors(report_db: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = report_db
    out = tmp_path / "filtered"
    result = bench("report", "--db", url, "--out", str(out), "--where", "student = 'resnet'", "--format", "csv",
                   cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    assert {r["student"] for r in read_csv(out / "summary.csv")} == {"resnet"}
    assert len(read_csv(out / "runs.csv")) == 5  # 4 done, 1 failed
    assert not (out / "report.md").exists() and not (out / "report.html").exists()
    cases = {("--where", "dataset = 'nope'"): "no runs to report: no rows matched by --where",
             ("--where", "no_such_column = 1"): "--where 'no_such_column = 1': no such column: no_such_column",
             ("--where", "1 = 1; DROP TABLE runs"): "one condition only",
             ("--format", "md,pdf"): "--format 'md,pdf': choose from md, html, csv, tex"}
    for args, message in cases.items():
        result = bench("report", "--db", url, "--out", str(tmp_path / "x"), *args, cwd=tmp_path)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.stderr
