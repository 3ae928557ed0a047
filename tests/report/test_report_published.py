"""`bench report --published`: a published CSV's rows set beside the matching settings, with the difference and
whether the published value lies inside our 95% interval; a bad CSV is one line before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from scipy.stats import t

from bench.core.errors import BenchError
from bench.report.published import compare_published, load_published
from bench.report.write import write_report
from bench.store.results import Store
from tests.support.records import record

CSV_HEADER = "source,table,selection,dataset,teacher,student,method,published_method,test_acc\n"


def _database(tmp_path: Path) -> str:
    """resnet8x4 kd from teacher t over three seeds (70, 72, 74 %) and its scratch over two (60, 61 %)."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = Store(url)
    for seed, acc in enumerate([0.70, 0.72, 0.74]):
        store.save_run(record(f"kd{seed}", seed=seed, student="resnet8x4", method="kd", test_acc=acc))
    for seed, acc in enumerate([0.60, 0.61]):
        store.save_run(record(f"s{seed}", seed=seed, student="resnet8x4", method="scratch", test_acc=acc,
                              hparams={"lr": 0.1}))
    return url


def _published(tmp_path: Path, rows: str) -> Path:
    path = tmp_path / "published.csv"
    path.write_text(CSV_HEADER + rows)
    return path


def test_matching_rows_get_the_published_figure_difference_and_interval_verdict(tmp_path: Path) -> None:
    url = _database(tmp_path)
    published = _published(tmp_path, "paper,1,best,digits,t,resnet8x4,kd,KD,73.5\n"
                                      "paper,1,best,digits,other,resnet8x4,kd,KD,99\n"  # another teacher: no match
                                      "paper,1,best,digits,,resnet8x4,scratch,vanilla,65.0\n"
                                      "paper,1,last,digits,,vgg8,scratch,vanilla,70\n")  # no such setting here
    paths = write_report(url, tmp_path / "out", formats=("md", "csv"), published=published)
    text = paths[0].read_text()
    assert [p.name for p in paths][:5] == ["report.md", "summary.csv", "baseline.csv", "runs.csv", "published.csv"]
    assert len((tmp_path / "out" / "published.csv").read_text().splitlines()) == 1 + 2
    half = t.ppf(0.975, 2) * 2.0 / 3 ** 0.5  # 95% t interval of (70, 72, 74): mean 72, sd 2
    assert "### digits: beside the published figures" in text and "table 1" in text
    kd_line = next(line for line in text.splitlines() if line.startswith("| t | resnet8x4 | kd"))
    assert f"72.00 [{72 - half:.2f}, {72 + half:.2f}]" in kd_line and "73.50 (best)" in kd_line
    assert "| -1.50 | yes |" in kd_line  # 73.5 lies inside [67.0, 77.0]
    scratch_line = next(line for line in text.splitlines() if "| scratch" in line and "65.00" in line)
    scratch_half = t.ppf(0.975, 1) * 0.5 ** 0.5 / 2 ** 0.5  # two seeds: a wide interval that holds 65
    assert f"60.50 [{60.5 - scratch_half:.2f}, {60.5 + scratch_half:.2f}]" in scratch_line
    assert "| -4.50 | yes |" in scratch_line
    assert "99.00" not in text and "vgg8" not in text
    assert "best test accuracy seen during training" in text


def test_the_interval_verdict_follows_the_numbers(tmp_path: Path) -> None:
    import pandas as pd

    summary = pd.DataFrame([{"dataset": "d", "teacher": "t", "student": "s", "method": "kd", "epochs": 2,
                             "metric": "test_acc", "score_mean": 0.72, "ci_low": 0.70, "ci_high": 0.74, "seeds": 3},
                            {"dataset": "d", "teacher": "t", "student": "s", "method": "scratch", "epochs": 2,
                             "metric": "test_acc", "score_mean": 0.6, "ci_low": float("nan"),
                             "ci_high": float("nan"), "seeds": 1}])
    published = load_published(_published(tmp_path, "p,1,best,d,t,s,kd,KD,74.5\np,1,best,d,t,s,kd,KD,73.9\n"
                                                     "p,1,best,d,,s,scratch,v,60\n"))
    rows = compare_published(summary, published)
    assert list(rows["inside"]) == [False, True, None]
    assert list(rows["difference"]) == pytest.approx([-2.5, -1.9, 0.0])


@pytest.mark.parametrize(("text", "message"), [
    ("source,table\np,1\n", "missing column(s) selection, dataset"),
    ("p,1,top,d,t,s,kd,KD,70\n", "row 2: selection 'top' must be best or last"),
    ("p,1,best,d,t,s,kd,KD,0.7x\n", "row 2: test_acc must be a percentage"),
])
def test_a_bad_published_csv_is_one_line_and_nothing_is_written(tmp_path: Path, text: str, message: str) -> None:
    url = _database(tmp_path)
    path = tmp_path / "bad.csv"
    path.write_text(text if text.startswith("source") else CSV_HEADER + text)
    with pytest.raises(BenchError) as error:
        write_report(url, tmp_path / "out", formats=("md",), published=path)
    assert message in str(error.value) and "\n" not in str(error.value) and not (tmp_path / "out").exists()


def test_a_trained_run_teacher_matches_a_published_row_by_its_architecture(tmp_path: Path) -> None:
    """`run:<key>` is the student its run trained (read from that run's row, even outside --where); a published
    row naming another architecture, or a run teacher whose row is not in the database, does not match."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = Store(url)
    store.save_run(record("aaaabbbbccccdddd", study="teachers", teacher="x", student="resnet32x4", method="scratch"))
    for seed, acc in enumerate([0.70, 0.74]):
        store.save_run(record(f"kd{seed}", seed=seed, study="students", teacher="run:aaaabbbbcccc",
                              student="resnet8x4", method="kd", test_acc=acc))
        store.save_run(record(f"lost{seed}", seed=seed, study="students", teacher="run:eeeeffff0000",
                              student="resnet8x4", method="kd", test_acc=acc, hparams={"lr": 0.3}))
    published = _published(tmp_path, "paper,1,best,digits,resnet32x4,resnet8x4,kd,KD,72.5\n"
                                      "paper,1,best,digits,wrn-40-2,resnet8x4,kd,KD,99\n")
    write_report(url, tmp_path / "out", "study = 'students'", formats=("md",), published=published)
    text = (tmp_path / "out" / "report.md").read_text()
    lines = [line for line in text.splitlines() if "| resnet8x4 | kd" in line and "(best)" in line]
    assert len(lines) == 1, text  # the lost run's teacher has no architecture: no match
    assert lines[0].startswith("| resnet32x4 (run:aaaabbbbcccc) | resnet8x4 | kd (") and "| 2 | 72.00 [" in lines[0]
    assert "| 72.50 (best) | -0.50 | yes |" in lines[0] and "99.00" not in text


def test_trained_run_students_reads_each_run_teachers_own_row(tmp_path: Path) -> None:
    from bench.report.load import trained_run_students

    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = Store(url)
    store.save_run(record("aaaabbbbccccdddd", student="resnet32x4"))
    store.save_run(record("aaaabbbbcccceeee", student="wrn-40-2"))  # two runs share the 12 characters: ambiguous
    store.save_run(record("111122223333", student="vgg13"))
    found = trained_run_students(url, ["run:aaaabbbbcccc", "run:111122223333", "run:999999999999", "effnet-lite0"])
    assert found == {"run:111122223333": "vgg13"}
