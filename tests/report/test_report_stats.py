"""Issue 29: the gain table's statistics: no verdict from an undefined t, Holm across one report's verdicts."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.report.stats import GAIN_HEADER, baseline_gains, gain_caption, gain_cells, holm, paired_test, verdict

TEST_IMAGES = 1000  # scores are k / 1000 as a real test split gives them
VERDICT, P, P_HOLM = (GAIN_HEADER.index(name) for name in ("verdict", "p", "p (Holm)"))


def _runs(rows: list[dict]) -> pd.DataFrame:
    base = dict(dataset="d", teacher="t", student="s", student_kind="head", epochs=2, status="done",
                pct_of_teacher=None, size_mb=1.0)
    return pd.DataFrame([{**base, **row} for row in rows])


def _pairs(method: str, method_hits: list[int], scratch_hits: list[int], student: str = "s") -> list[dict]:
    rows = [dict(method=method, seed=s, test_acc=k / TEST_IMAGES, student=student) for s, k in enumerate(method_hits)]
    return rows + [dict(method="scratch", seed=s, test_acc=k / TEST_IMAGES, student=student)
                   for s, k in enumerate(scratch_hits)]


def test_identical_nonzero_differences_give_no_verdict_but_the_exact_difference() -> None:
    # every seed exactly one test image behind: scipy's t is -inf and p 0 ("hurts, p<0.001") without the fix
    method, scratch = [835, 841, 829], [836, 842, 830]
    assert all(math.isnan(v) for v in paired_test([k / TEST_IMAGES for k in method],
                                                  [k / TEST_IMAGES for k in scratch]))
    gains = baseline_gains(_runs(_pairs("kd", method, scratch)))
    row = gains.iloc[0]
    assert bool(row["constant"]) and math.isnan(row["p"]) and math.isnan(row["p_holm"])
    cells = gain_cells(row)
    assert cells[VERDICT] == "untested: every seed differs by exactly -0.10 points (no variance)"
    assert [cells[P], cells[P_HOLM]] == ["n/a", "n/a"]


def test_differences_that_vary_are_tested_as_before() -> None:
    method, scratch = [845, 850, 839], [836, 842, 833]
    gains = baseline_gains(_runs(_pairs("kd", method, scratch)))
    row = gains.iloc[0]
    from scipy.stats import ttest_rel

    expected = ttest_rel([k / TEST_IMAGES for k in method], [k / TEST_IMAGES for k in scratch]).pvalue
    assert not row["constant"] and row["p"] == pytest.approx(expected) and row["p_holm"] == pytest.approx(expected)


def test_holm_matches_the_step_down_by_hand() -> None:
    # m = 4 finite p-values: sorted 0.01, 0.02, 0.03, 0.04 -> 0.04, 0.06, 0.06 (monotone), 0.06; nan stays nan
    adjusted = holm([0.03, 0.01, float("nan"), 0.04, 0.02])
    assert adjusted[1] == pytest.approx(0.04) and adjusted[4] == pytest.approx(0.06)
    assert adjusted[0] == pytest.approx(0.06) and adjusted[3] == pytest.approx(0.06) and math.isnan(adjusted[2])
    assert holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])


def test_holm_turns_a_lone_significant_verdict_into_no_significant_difference_in_a_larger_family() -> None:
    clear = ([900, 905, 910, 902], [800, 806, 809, 801])  # p far below 0.05 even after correction
    marginal = ([839, 850, 835, 845], [836, 842, 833, 838])  # differences 3, 8, 2, 7: p about 0.04
    alone = baseline_gains(_runs(_pairs("kd", *marginal)))
    assert alone.iloc[0]["p"] < 0.05 and verdict(alone.iloc[0]["gain"], alone.iloc[0]["p_holm"]) == "helps"
    noise = [_pairs(f"m{i}", [840 + i, 838, 845 - i, 841], [839, 840 + i, 842, 841 - i], student=f"s{i}")
             for i in range(5)]
    family = baseline_gains(_runs([*_pairs("kd", *marginal), *_pairs("feature", *clear, student="x"),
                                   *(row for rows in noise for row in rows)]))
    kd = family[family["method"] == "kd"].iloc[0]
    tested = int(family["p"].notna().sum())
    assert kd["p"] == pytest.approx(alone.iloc[0]["p"]) and kd["p_holm"] > kd["p"]
    assert gain_cells(kd)[VERDICT] == "no significant difference"
    assert gain_cells(family[family["method"] == "feature"].iloc[0])[VERDICT] == "helps"
    assert f"across the {tested} tested comparisons" in gain_caption(family)
    assert "Replicates vary the student seed (its initialisation, data order and augmentation) only" in \
        gain_caption(family)
