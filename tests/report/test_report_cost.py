"""The report's inference cost: a speed-up table for every student and teacher, accuracy vs latency with its
Pareto front, both size panels, and legends in a panel of their own (never over a point)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.core.names import HEAD, PROBE_METHOD, PROBE_STUDENT
from bench.report import plots
from bench.report.build import build_report
from bench.report.write import write_report
from bench.store.results import Store
from tests.support.records import record

COST = {"teacher_latency_ms": 20.0, "teacher_throughput_ips": 150.0, "teacher_macs": 3e8}


def _db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = Store(url)
    for seed in (0, 1):
        store.save_run(record(f"s{seed}", seed=seed, test_acc=0.80 + seed / 100, latency_ms=0.5 + seed / 10,
                              throughput_ips=2000.0, macs=1e7, speedup=20.0 / (0.5 + seed / 10), size_mb=0.3,
                              inference_size_mb=0.3, **COST))
        store.save_run(record(f"h{seed}", seed=seed, student="projection", student_kind=HEAD, test_acc=0.9,
                              latency_ms=21.0, throughput_ips=140.0, macs=3.1e8, speedup=20.0 / 21.0, size_mb=0.1,
                              inference_size_mb=13.5, backbone_latency_ms=19.5, latency_spread=0.05 + seed / 2,
                              cost_load=0.2, **COST))
    store.save_run(record("old", seed=2, student="vit", test_acc=0.5, size_mb=1.0, inference_size_mb=1.0))
    store.save_run(record("p", student=PROBE_STUDENT, method=PROBE_METHOD, student_kind=HEAD, test_acc=0.95,
                          epochs=0, latency_ms=20.0, throughput_ips=150.0, macs=3e8, speedup=1.0,
                          inference_size_mb=13.4, **COST))
    return url


def test_the_cost_table_shows_every_student_and_the_teacher_with_speed_ups_from_the_rows(tmp_path: Path) -> None:
    url = _db(tmp_path)
    write_report(url, tmp_path / "out", formats=("md",))
    text = (tmp_path / "out" / "report.md").read_text()
    section = text[text.index("inference cost and speed-up"):]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    header, rows = lines[0], {line.split(" | ")[0][2:]: line for line in lines[1:]}
    assert "speed-up" in header and "latency ms" in header and "MMACs" in header and "images/s" in header
    assert set(rows) == {"t", "resnet", "projection", "vit"}  # the teacher (reference cell) and every student
    assert "| 20 |" in rows["t"] and rows["t"].endswith("| 1 |")
    assert rows["resnet"].endswith(f"| {(20.0 / 0.5 + 20.0 / 0.6) / 2:.3g} |")  # the mean of its seeds' speed-ups
    assert "| 13.500 |" in rows["projection"]  # a head student's inference MB carries its backbone
    assert "| 21* | 19.5 |" in rows["projection"]  # seed 1's runs spread 55%: noisy; the teacher pass it includes
    assert rows["projection"].endswith(f"| {20.0 / 21.0:.3g}* |")  # a speed-up on a noisy latency is noisy too
    assert "| 0.55 |  |" in rows["resnet"] and "*" not in rows["resnet"]  # standalone: no teacher pass, no noise
    assert rows["vit"].endswith("|  |")  # a row stored before issue 14: blank, never zero or made up


def test_accuracy_vs_latency_is_drawn_with_the_teacher_and_legends_never_cover_the_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}
    original = plots.save

    def capture(figure, out_dir, stem, title, caption):  # noqa: ANN001, ANN202
        figure.canvas.draw()
        data_axes = [axis for axis in figure.axes if axis.axison]
        legends = [axis.get_legend() for axis in figure.axes if axis.get_legend() is not None]
        seen[stem] = (len(data_axes), [legend.get_window_extent().overlaps(axis.get_window_extent())
                                       for legend in legends for axis in data_axes], caption)
        return original(figure, out_dir, stem, title, caption)

    monkeypatch.setattr(plots, "save", capture)
    data = build_report(_db(tmp_path), tmp_path / "out")
    stems = {plot.png.stem for plot in data.plots["digits"]}
    assert {"acc_vs_latency_digits", "acc_vs_size_digits"} <= stems
    assert (tmp_path / "out" / "acc_vs_latency_digits.png").stat().st_size > 0
    axes, overlaps, caption = seen["acc_vs_latency_digits"]
    assert axes == 1 and overlaps and not any(overlaps) and "Pareto front of the students (2 points)" in caption
    axes, overlaps, caption = seen["acc_vs_size_digits"]
    assert axes == 2 and not any(overlaps) and "what inference needs" in caption


def test_the_summary_keeps_only_finite_cost_values(tmp_path: Path) -> None:
    summary = build_report(_db(tmp_path), tmp_path / "out").summary.set_index("student")
    assert summary.loc["resnet", "latency_ms"] == pytest.approx(0.55)
    assert math.isnan(summary.loc["vit", "latency_ms"])


def test_a_latency_measured_on_a_loaded_machine_or_with_a_wide_spread_is_marked_noisy() -> None:
    from bench.report.cost import is_noisy

    assert not is_noisy(0.1, 0.5) and not is_noisy(None, None) and not is_noisy(float("nan"), float("nan"))
    assert is_noisy(0.3, 0.1) and is_noisy(0.1, 1.5)  # a wide spread, or every CPU already busy (113x vs 10x)
