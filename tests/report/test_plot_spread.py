"""Learning curves show the spread over seeds; the epoch-time legend covers no bar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.report import plots


def _runs_and_epochs(seeds: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = pd.DataFrame([dict(id=i, dataset="d", teacher="t", student="s", method="kd", epochs=3, seed=i,
                              study="g", hparams={"lr": 1e-3}, data_config={}) for i in range(seeds)])
    epochs = pd.DataFrame([dict(run_id=i, epoch=e, train_loss=1.0, val_acc=0.3 + 0.1 * e + 0.05 * i,
                                loss_terms={"ce": 1.0 - 0.1 * e}, seconds=1.0, train_acc=0.5)
                           for i in range(seeds) for e in range(3)])
    return runs, epochs


def captured(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures plots.save writes (laid out as saved, before they are closed)."""
    figures: list[Any] = []
    original = plots.save

    def keep(figure, *args, **kwargs):  # noqa: ANN001, ANN202
        figure.tight_layout()
        figure.canvas.draw()
        figures.append((figure, [(a, a.get_window_extent()) for a in figure.axes],
                        [a.get_legend().get_window_extent() for a in figure.axes if a.get_legend()]))
        return original(figure, *args, **kwargs)

    monkeypatch.setattr(plots, "save", keep)
    return figures


def test_learning_curves_band_spans_the_seeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs, epochs = _runs_and_epochs(3)
    means = plots._curve_means(runs, epochs, "d").set_index("epoch")
    assert list(means["val_acc"]) == pytest.approx([0.35, 0.45, 0.55])  # mean of +0, +0.05, +0.1
    assert list(means["val_min"]) == pytest.approx([0.3, 0.4, 0.5])
    assert list(means["val_max"]) == pytest.approx([0.4, 0.5, 0.6]) and list(means["seeds"]) == [3, 3, 3]
    figures = captured(monkeypatch)
    plot = plots.learning_curves(runs, epochs, "d", tmp_path)
    assert plot is not None and "shaded band" in plot.caption and "up to 3 seeds" in plot.caption
    accuracy_axis = figures[0][1][0][0]
    bands = [c for c in accuracy_axis.collections if c.get_paths()]
    assert len(bands) == 1
    ys = bands[0].get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(30) and ys.max() == pytest.approx(60)  # percent: min of seed 0, max of seed 2


def test_one_seed_draws_no_band(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = captured(monkeypatch)
    plots.learning_curves(*_runs_and_epochs(1), "d", tmp_path)
    assert not [c for c in figures[0][1][0][0].collections if c.get_paths()]


def test_the_epoch_time_legend_covers_no_panel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = pd.DataFrame([dict(dataset="d", student=s, method=m, teacher=t, epoch_seconds=10.0 + i)
                            for i, (s, m, t) in enumerate((s, m, t) for s in ("a", "b") for m in ("kd", "fitnets")
                                                          for t in ("dino", "clip", "effnet"))])
    figures = captured(monkeypatch)
    assert plots.epoch_time(summary, "d", tmp_path) is not None
    _, panels, legends = figures[0]
    assert len(legends) == 1 and len(panels) == 2
    for _, box in panels:
        assert not legends[0].overlaps(box), "the legend covers a panel"
