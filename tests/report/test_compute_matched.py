"""Issue 29: the demo's scratch and kd arms compute-matched with `data.budget: steps`, and the gain table saying
which pair is matched and which is not (real runs on digits with the embedded teacher)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bench.config.grid import load_grid
from bench.data.batches import steps_per_epoch
from bench.report.build import build_report
from bench.report.markdown import render
from bench.run.context import RunContext
from bench.sweep.grid import run_grid
from tests.support.rows import query

REPO = Path(__file__).resolve().parents[2]
LABELS, BATCH, EPOCHS = 40, 16, 2


def _demo_on_digits(path: Path, name: str, methods: list[str], budget: str) -> Path:
    """studies/demo.yaml's arms, student and hparams at a size a test can run: digits, a probe teacher."""
    grid = yaml.safe_load((REPO / "studies" / "demo.yaml").read_text())
    assert {"scratch", "kd"} <= set(grid["method"]) and grid["data"]["labeled_limit"]
    grid.update(name=name, student="resnet", method=methods, dataset="digits", seeds=[0, 1], epochs=EPOCHS)
    grid["data"] = {"image_size": 32, "train_limit": 200, "val_limit": 40, "test_limit": 100,
                    "labeled_limit": LABELS, "budget": budget}
    kd_only = set() if "kd" in methods else {"alpha", "temperature"}  # a scratch-only grid refuses kd's knobs
    grid["hparams"] = {**{k: v for k, v in grid["hparams"].items() if k not in kd_only}, "batch_size": BATCH}
    path.write_text(yaml.safe_dump(grid))
    return path


@pytest.mark.usefixtures("one_thread")
def test_demo_arms_can_be_compute_matched_and_the_report_says_which_pair_is_not(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'results.db'}"
    context = RunContext(cache_dir=tmp_path / "cache", device="cpu")
    run_grid(load_grid(_demo_on_digits(tmp_path / "demo.yaml", "demo", ["scratch", "kd"], "epochs")), db, context)
    run_grid(load_grid(_demo_on_digits(tmp_path / "matched.yaml", "demo-matched", ["scratch"], "steps")), db, context)
    rows = query(db, "SELECT study, method, seed, train_steps, images_seen, split_sizes FROM runs "
                     "WHERE method IN ('scratch', 'kd') AND status = 'done'")
    assert len(rows) == 6
    train_rows = int(yaml.safe_load(str(rows[0]["split_sizes"]))["train"])
    full = EPOCHS * steps_per_epoch(train_rows, BATCH)
    by_arm = {(r["study"], r["method"]): (r["train_steps"], r["images_seen"]) for r in rows}
    assert by_arm[("demo", "scratch")] == (EPOCHS * steps_per_epoch(LABELS, BATCH), EPOCHS * LABELS)  # its labels
    assert by_arm[("demo", "kd")] == (full, EPOCHS * train_rows)  # kd passes over every train row
    assert by_arm[("demo-matched", "scratch")] == by_arm[("demo", "kd")]  # budget steps: the same steps and images
    assert full > 2 * EPOCHS * steps_per_epoch(LABELS, BATCH)

    data = build_report(db, tmp_path / "report")
    kd = data.gains[data.gains["method"] == "kd"].sort_values("baseline_steps")
    assert list(kd["compute"]) == [f"NOT matched: {full} vs {EPOCHS * steps_per_epoch(LABELS, BATCH)} steps",
                                   f"matched ({full} steps)"]
    assert list(kd["n"]) == [2, 2]  # each scratch arm pairs with kd seed by seed
    text = render(data)
    assert "NOT matched" in text and f"matched ({full} steps)" in text and f"{full} steps" in text
