"""Issue 29: the report's warnings (weak teacher, a loss term dominating CE, a ceiling, pretraining overlap, a
probe reference) appear next to the cells they concern in tiny report databases, and only there."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bench.core.names import PROBE_METHOD, PROBE_REFERENCE, PROBE_STUDENT
from bench.report.build import build_report
from bench.report.html import render as render_html
from bench.report.latex import render as render_latex
from bench.report.loss_balance import term_weights
from bench.report.markdown import render
from bench.store.records import EpochRecord
from bench.store.results import Store
from bench.teachers.overlap import overlaps
from tests.support.records import record

DATA = {"image_size": 32}


def _run(key: str, method: str, seed: int, test_acc: float, teacher: str = "t", dataset: str = "digits",
         last_terms: dict[str, float] | None = None, hparams: dict | None = None, **extra: object):
    """A done run of resnet on `dataset`; its last epoch has `last_terms` (a balanced kd run by default)."""
    hparams = hparams if hparams is not None else ({"lr": 0.1, "alpha": 0.9} if method == "kd" else {"lr": 0.1})
    terms = last_terms or ({"ce": 1.0, "kd": 1.0} if method == "kd" else {"ce": 1.0})
    first = EpochRecord(0, 50.0, {name: 50.0 for name in terms}, 0.5, 1.0)
    return record(key, study="s", teacher=teacher, dataset=dataset, method=method, seed=seed, test_acc=test_acc,
                  hparams=hparams, data_config=extra.pop("data_config", DATA),
                  epoch_records=(first, EpochRecord(1, 1.0, terms, 0.8, 1.0)), **extra)


def _reference(teacher: str, score: float, dataset: str = "digits", kind: str = PROBE_REFERENCE):
    return record(f"ref-{teacher}-{dataset}", study="s", teacher=teacher, dataset=dataset, method=PROBE_METHOD,
                  student=PROBE_STUDENT, student_kind="", seed=0, epochs=0, hparams={}, data_config=DATA,
                  test_acc=score, teacher_reference=kind, epoch_records=())


def _report(tmp_path: Path, records: list) -> str:
    db = f"sqlite:///{tmp_path / 'results.db'}"
    store = Store(db)
    for run in records:
        store.save_run(run)
    data = build_report(db, tmp_path / "report")
    return render(data), data


def _table_rows(text: str, method: str) -> list[str]:
    """The matrix rows of resnet with this method (the gain table's rows start otherwise)."""
    return [line for line in text.splitlines()
            if line.startswith("| resnet | standalone |") and f"| {method} |" in line]


@pytest.mark.parametrize(("reference", "warned"), [(0.86, True), (0.995, False)])
def test_a_teacher_below_the_best_scratch_student_is_flagged_on_its_column(tmp_path: Path, reference: float,
                                                                            warned: bool) -> None:
    text, data = _report(tmp_path, [_reference("t", reference), _run("s0", "scratch", 0, 0.97),
                                    _run("s1", "scratch", 1, 0.99), _run("k0", "kd", 0, 0.95),
                                    _run("k1", "kd", 1, 0.96)])
    matrix = data.matrices[0]
    assert ("weak teacher" in text) is warned
    if warned:
        assert "t's reference (linear-probe) scores 86.0%, below the best scratch student (resnet, 98.0%)" in text
        assert "| t ⚠1 |" in text and matrix.teacher_marks == {"t": [1]}  # the column header carries the mark
        assert "Warnings: ⚠1 weak teacher" in text
    else:
        assert not matrix.notes and "⚠" not in text


@pytest.mark.parametrize(("scores", "expected"), [([1.0, 1.0, 1.0], "ceiling: every seed (n=3) scores 100%"),
                                                  ([14 / 15, 14 / 15], "identical: all 2 seeds score exactly 93.33%"),
                                                  ([0.93, 0.95], None)])
def test_a_ceiling_or_identical_seeds_are_flagged_on_the_cell(tmp_path: Path, scores: list[float],
                                                              expected: str | None) -> None:
    runs = [_run(f"s{seed}", "scratch", seed, score) for seed, score in enumerate(scores)]
    runs += [_run("k0", "kd", 0, 0.90), _run("k1", "kd", 1, 0.80)]
    text, data = _report(tmp_path, [_reference("t", 0.999), *runs])
    (scratch_row,), (kd_row,) = _table_rows(text, "scratch"), _table_rows(text, "kd")
    assert "⚠" not in kd_row  # the other cell of the same column is not marked
    if expected is None:
        assert "⚠" not in text and not data.matrices[0].notes
    else:
        assert scratch_row.rstrip(" |").endswith("⚠1") and f"Warnings: ⚠1 {expected}" in text


@pytest.mark.parametrize(("method", "hparams", "terms", "flag"), [
    ("kd", {"alpha": 0.9}, {"ce": 0.1, "kd": 2.0}, "kd 180x"),  # 0.9 * 2.0 vs 0.1 * 0.1
    ("kd", {"alpha": 0.9}, {"ce": 1.0, "kd": 1.0}, None),  # 9x: under the line
    ("feature", {"beta": 100.0}, {"ce": 0.5, "feat": 0.2}, "feat 40x"),
    ("feature", {"beta": 1.0}, {"ce": 0.5, "feat": 0.2}, None),  # the same terms at beta 1: 0.4x
    ("combined", {"combine": "kd:1,feature:2", "ce_weight": 1.0, "alpha": 0.9, "beta": 100.0},
     {"ce": 1.0, "kd": 1.0, "feat": 0.1}, "feat 20x"),  # kd weighs 1 in combined (not alpha); feat 2 * 100 * 0.1
])
def test_a_loss_term_dominating_ce_at_the_last_epoch_is_flagged(tmp_path: Path, method: str, hparams: dict,
                                                                terms: dict, flag: str | None) -> None:
    runs = [_run(f"m{seed}", method, seed, 0.9 + seed / 100, last_terms=terms, hparams={"lr": 0.1, **hparams})
            for seed in (0, 1)]
    text, _ = _report(tmp_path, [_reference("t", 0.999), *runs])  # every first epoch is balanced: 50 vs 50
    (row,) = _table_rows(text, method)
    if flag is None:
        assert "loss balance" not in text and "⚠" not in row
    else:
        assert f"the weighted {flag} the weighted CE (mean over 2 runs" in text and row.rstrip(" |").endswith("⚠1")


def test_known_pretraining_overlap_is_flagged_and_unknown_pairs_are_not(tmp_path: Path) -> None:
    runs = [_run(f"{teacher}-{seed}", "kd", seed, 0.5 + seed / 10, teacher=teacher, dataset="tiny-imagenet")
            for teacher in ("beit-base", "dinov2-vits14") for seed in (0, 1)]
    text, data = _report(tmp_path, runs)
    assert data.matrices[0].teacher_marks == {"beit-base": [1]}
    assert "| beit-base ⚠1 | dinov2-vits14 |" in text
    assert "⚠1 pretraining overlap: beit-base saw ImageNet-22k and ImageNet-1k images" in text
    assert "timm beit_base_patch16_224.in22k_ft_in22k_in1k" in text  # with its source
    assert "dinov2-vits14 saw" not in text
    assert "!1" in render_latex(data) and 'class="warn"' in render_html(data)


def test_blip_on_coco_overlaps_unless_the_karpathy_split_is_required() -> None:
    assert [o.teacher for o in overlaps("blip-base", "coco-captions", {"image_size": 224})] == ["blip-base"]
    assert overlaps("blip-base", "coco-captions", {"coco_split": "karpathy"}) == []
    assert overlaps("clip-vitb16", "coco-captions", {}) == [] and overlaps("beit-base", "digits", {}) == []


@pytest.mark.parametrize(("kind", "said"), [(PROBE_REFERENCE, True), ("fine-tuned", False)])
def test_the_caption_says_when_the_reference_is_a_linear_probe(tmp_path: Path, kind: str, said: bool) -> None:
    text, data = _report(tmp_path, [_reference("t", 0.999, kind=kind), _run("k0", "kd", 0, 0.9)])
    sentence = "The teacher reference of t is a linear probe on its frozen features, not a teacher trained on this task"
    assert (sentence in text) is said and (sentence in render_latex(data)) is said


@pytest.mark.usefixtures("one_thread")
def test_the_report_weighs_real_runs_terms_as_the_methods_do(tmp_path: Path) -> None:
    """The weights the report applies reproduce every stored epoch's total loss of real tiny runs."""
    from bench.config.grid import load_grid
    from bench.run.context import RunContext
    from bench.sweep.grid import run_grid
    from tests.support.rows import query

    grid = {"name": "balance", "teacher": "effnet-lite0", "student": "projection", "dataset": "digits",
            "method": ["kd", "feature", "rkd", "combined"], "seeds": [0], "epochs": 2,
            "data": {"image_size": 32, "train_limit": 80, "val_limit": 20, "test_limit": 20},
            "hparams": {"batch_size": 40, "alpha": 0.7, "beta": 30.0, "combine": "kd:0.5,feature:2"}}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    db = f"sqlite:///{tmp_path / 'results.db'}"
    summary = run_grid(load_grid(tmp_path / "grid.yaml"), db, RunContext(cache_dir=tmp_path / "cache", device="cpu"))
    assert summary.failed == 0
    rows = query(db, "SELECT r.method, r.hparams, e.train_loss, e.loss_terms FROM run_epochs e "
                     "JOIN runs r ON r.id = e.run_id WHERE r.method != 'teacher-probe'")
    assert {row["method"] for row in rows} == {"kd", "feature", "rkd", "combined"}
    for row in rows:
        hparams, terms = yaml.safe_load(str(row["hparams"])), yaml.safe_load(str(row["loss_terms"]))
        weights = term_weights(row["method"], hparams, terms, row["train_loss"])
        assert weights is not None and len(terms) >= 2, row
        total = sum(weights[name] * value for name, value in terms.items())
        assert total == pytest.approx(row["train_loss"], rel=1e-4), (row["method"], weights, terms)
