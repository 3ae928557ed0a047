"""Warnings next to the matrix cells they concern: a teacher reference below the best scratch student,
a loss term that dominates CE at the end of training, a ceiling (every seed at 100% or identical), and known
pretraining overlap between a teacher's training data and the dataset's test split."""

from __future__ import annotations

import pandas as pd

from bench.core.names import BASELINE_METHOD, REFERENCE_METHODS
from bench.report.loss_balance import DOMINANCE, ce_ratios
from bench.report.tables import REPLICATE_KEYS, ROW_IDENTITY, Matrix, with_score, with_setting
from bench.teachers.overlap import overlaps

SAME_SCORE = 1e-9  # seed scores closer than this are one value


def _last_epochs(epochs: pd.DataFrame) -> dict[int, tuple[dict, float]]:
    """run id -> (loss terms, train loss) of its last stored epoch."""
    if epochs.empty or "loss_terms" not in epochs:
        return {}
    last = epochs.sort_values(["run_id", "epoch"]).groupby("run_id").tail(1)
    return {int(r.run_id): (r.loss_terms if isinstance(r.loss_terms, dict) else {}, r.train_loss)
            for r in last.itertuples()}


def ceiling_note(scores: list[float]) -> str:
    """'ceiling: ...' when every seed scores 100%, 'identical: ...' when every seed scores the same; else ''."""
    if scores and min(scores) >= 1.0 - SAME_SCORE:
        return (f"ceiling: every seed (n={len(scores)}) scores 100%: this setting cannot show a difference between "
                "methods")
    if len(scores) >= 2 and max(scores) - min(scores) <= SAME_SCORE:
        return (f"identical: all {len(scores)} seeds score exactly {scores[0] * 100:.2f}%: the zero spread is by "
                "construction (too small a test split or a saturated task), not a measured precision")
    return ""


def dominance_note(method: str, runs: pd.DataFrame, last: dict[int, tuple[dict, float]]) -> str:
    """'<term> dominates CE ...' when a weighted term averages over DOMINANCE x the weighted CE at the last epoch."""
    ratios: dict[str, list[float]] = {}
    for run in runs.itertuples():
        terms, train_loss = last.get(int(run.id), ({}, None))
        hparams = run.hparams if isinstance(run.hparams, dict) else {}
        for term, ratio in ce_ratios(method, hparams, terms, train_loss).items():
            ratios.setdefault(term, []).append(ratio)
    worst = {term: sum(values) / len(values) for term, values in ratios.items()}
    over = {term: ratio for term, ratio in worst.items() if ratio > DOMINANCE}
    if not over:
        return ""
    said = ", ".join(f"{term} {ratio:.0f}x" if ratio != float("inf") else f"{term} (CE weighs 0)"
                     for term, ratio in sorted(over.items()))
    return (f"loss balance: at the last epoch the weighted {said} the weighted CE (mean over {len(runs)} runs, "
            f"weights as {method} applies them; flagged above {DOMINANCE:.0f}x): the labels barely train this "
            "student")


def _cell_runs(done: pd.DataFrame, matrix: Matrix, index: int, teacher: str) -> pd.DataFrame:
    identity = dict(zip(ROW_IDENTITY, matrix.row_ids[index], strict=True))
    mask = (done["dataset"] == matrix.dataset) & (done["epochs"] == matrix.epochs) & (done["teacher"] == teacher)
    for column, value in identity.items():
        mask &= done[column] == value
    return done[mask]


def _teacher_notes(matrix: Matrix, done: pd.DataFrame) -> None:
    """Teacher-column warnings: reference below the best scratch student, known pretraining overlap."""
    for teacher in matrix.teachers:
        scratch = [(cell.mean, matrix.rows[index][0]) for (index, t), cell in matrix.cells.items()
                   if t == teacher and matrix.rows[index][4] == BASELINE_METHOD and cell.seeds > 0]
        reference = matrix.references.get(teacher)
        if scratch and reference is not None and pd.notna(reference) and reference < max(scratch)[0]:
            best, student = max(scratch)
            kind = matrix.reference_kinds.get(teacher, "linear-probe")
            matrix.warn(f"weak teacher: {teacher}'s reference ({kind}) scores {reference * 100:.1f}%, below the "
                        f"best scratch student ({student}, {best * 100:.1f}%): % of T above 100 and a distillation "
                        "gain or loss here is measured against a teacher worse than no teacher", teacher=teacher)
        configs = done.loc[(done["dataset"] == matrix.dataset) & (done["teacher"] == teacher), "data_config"]
        found = {o.text(): o for config in configs for o in overlaps(teacher, matrix.dataset, config)}
        for text in sorted(found):
            matrix.warn(f"pretraining overlap: {text}: these cells are not a held-out result", teacher=teacher)


def annotate(matrices: list[Matrix], runs: pd.DataFrame, epochs: pd.DataFrame) -> None:
    """Attach every warning to its matrix (cells and teacher columns), in a stable order."""
    done = runs[(runs["status"] == "done") & ~runs["method"].isin(REFERENCE_METHODS)]
    if done.empty:
        return
    done = with_setting(with_score(done))
    last = _last_epochs(epochs)
    for matrix in matrices:
        for (index, teacher) in sorted(matrix.cells, key=lambda key: (key[1], key[0])):
            cell_runs = _cell_runs(done, matrix, index, teacher)
            scores = list(cell_runs.dropna(subset=["score"]).groupby(REPLICATE_KEYS)["score"].mean())
            for note in (ceiling_note(scores), dominance_note(matrix.rows[index][4], cell_runs, last)):
                if note:
                    matrix.warn(note, cell=(index, teacher))
        _teacher_notes(matrix, done)
