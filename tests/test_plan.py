"""`bench plan`: the study files load, the dry run lists cells, names what is missing, reads the database only."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.store.results import Store
from tests.support.paths import REPO
from tests.support.records import record

STUDIES = REPO / "studies"


def plan(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """`bench plan` offline, with an empty home: no $BENCH_DATA, $BENCH_WEIGHTS or hub cache to find."""
    env = {k: v for k, v in os.environ.items() if k not in ("BENCH_DATA", "BENCH_WEIGHTS", "HF_HOME")}
    env.update(HOME=str(home), HF_HUB_OFFLINE="1", HF_HOME=str(home / "hf"), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "bench", "plan", *args], cwd=home, capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.mark.parametrize(("name", "cells"), [("paper-tiny-imagenet", 4 * 6 * 5 * 3),
                                              ("paper-coco-retrieval", 2 * 6 * 2 * 3)])
def test_paper_grids_load_with_the_real_loader(name: str, cells: int) -> None:
    from bench.config.grid import load_grid

    grid = load_grid(STUDIES / f"{name}.yaml")
    assert len(grid.specs) == cells
    assert {spec.teacher for spec in grid.specs} <= {"dino-vitb16", "beit-base", "clip-vitb16", "blip-base"}
    recipes = {(s.student, s.epochs, s.hparams_dict["lr"], s.hparams_dict["weight_decay"]) for s in grid.specs}
    cnn_epochs, head_epochs = {"paper-tiny-imagenet": (90, 30), "paper-coco-retrieval": (30, 10)}[name]
    assert recipes == {*((student, head_epochs, 1e-3, 5e-4) for student in ("projection", "bottleneck", "mha")),
                       *((student, cnn_epochs, 2.5e-4, 0.05) for student in ("resnet", "densenet", "cbam-resnet"))}


@pytest.mark.parametrize(("recipes", "message"), [
    ({"vit": {"lr": 0.1}}, "field 'recipes.vit': not one of this grid's students (resnet)"),
    ({"resnet": {"lrr": 0.1}}, "field 'recipes.resnet.lrr': no student or method in this grid uses it"),
    ({"resnet": {"lr": -1}}, "field 'recipes.resnet.lr'"),
    ({"resnet": {"epochs": 0}}, "field 'recipes.resnet.epochs'"),
])
def test_a_bad_recipe_is_one_line_naming_its_field(tmp_path: Path, recipes: dict, message: str) -> None:
    import yaml

    from bench.config.grid import load_grid
    from bench.core.errors import BenchError

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"teacher": "effnet-lite0", "student": "resnet", "method": "scratch",
                                    "dataset": "digits", "recipes": recipes}))
    with pytest.raises(BenchError, match=re.escape(message)):
        load_grid(path)


def test_vit_study_loads_and_its_student_has_about_60_percent_fewer_parameters() -> None:
    from bench.config.study import load_study_file
    from bench.core.registries import STUDENTS
    from bench.students.base import StudentContext

    model = load_study_file(STUDIES / "vit-cifar100.yaml")
    assert set(model.search) == {"alpha", "beta", "temperature", "lr"} and model.final.seeds == [1, 2, 3]
    assert model.final.scratch  # issue 29: its scratch arm (the best setting without a teacher) for a gain table
    teacher_params = 21_665_664  # dino-vits16 on the meta device (`bench teachers dino-vits16`)
    student = STUDENTS.get("vit")(StudentContext(100, 384, 32, teacher_params=teacher_params),
                                 {**STUDENTS.get("vit").defaults, **{k: v for k, v in model.hparams.items()
                                                                     if k in STUDENTS.get("vit").defaults}})
    ratio = sum(p.numel() for p in student.parameters()) / teacher_params
    assert 0.35 < ratio < 0.45


def test_plan_on_the_demo_exits_0_and_lists_its_cells(tmp_path: Path) -> None:
    result = plan(str(STUDIES / "demo.yaml"), "--gpu", "h200", "--db", f"sqlite:///{tmp_path / 'r.db'}",
                  home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "grid demo: 13 cells (1 teacher-reference cells + 12 runs); 0 already done" in result.stdout
    assert ("effnet-lite0 x fashion-mnist: 12 runs (0 done): students bottleneck, resnet; methods kd, scratch; "
            "seeds 3") in result.stdout
    # the bottleneck cells bundle by method (3 seeds each); the ResNets cannot bundle
    assert ("bundling (--bundle auto, the default): 6 head-student cells would train as 2 stacked bundle(s) of 3, 3 "
            "with one worker, 6 cells alone; the estimate below times every cell alone (the h200 table has no "
            "stacked rates)") in result.stdout
    for phase in ("teacher pass", "teacher reference", "student epochs", "total"):
        assert phase in result.stdout
    assert not (tmp_path / "r.db").exists()  # read-only: no database is created
    wrong = plan(str(STUDIES / "demo.yaml"), "--gpu", "h200", "--bundle", "on", home=tmp_path)
    assert wrong.returncode == 2 and "--bundle 'on': expected auto or off" in wrong.stderr
    wrong = plan(str(STUDIES / "demo.yaml"), "--threads", "0", home=tmp_path)
    assert wrong.returncode == 2 and "--threads 0: threads must be from 1 to" in wrong.stderr


@pytest.mark.parametrize("name", ["paper-tiny-imagenet", "paper-coco-retrieval", "vit-cifar100"])
def test_plan_on_a_paper_file_offline_exits_2_naming_weights_and_data(tmp_path: Path, name: str) -> None:
    result = plan(str(STUDIES / f"{name}.yaml"), "--gpu", "h100", "--db", f"sqlite:///{tmp_path / 'r.db'}",
                  home=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    teachers = {"paper-tiny-imagenet": ["dino-vitb16", "beit-base", "clip-vitb16", "blip-base"],
                "paper-coco-retrieval": ["clip-vitb16", "blip-base"], "vit-cifar100": ["dino-vits16"]}[name]
    for teacher in teachers:
        assert f"{teacher}: MISSING; fix: bench teachers fetch {teacher}" in result.stdout
    layout = {"paper-tiny-imagenet": "tiny-imagenet-200/{wnids.txt", "paper-coco-retrieval": "captions_val2017.json",
              "vit-cifar100": "cifar-100-python/{train, test, meta}"}[name]
    assert "MISSING; fix:" in result.stdout and layout in result.stdout
    assert "not runnable yet" in result.stdout and "total" in result.stdout
    # issue 29: a line per cell group whose teacher saw the test split's source (CLIP, BLIP on Tiny ImageNet: none
    # known); the COCO study requires the Karpathy split, so blip-base there is held out
    flagged = [line.split(" (")[0].strip() for line in result.stdout.splitlines() if "OVERLAP " in line]
    expected = {"paper-tiny-imagenet": [f"OVERLAP {t} x tiny-imagenet" for t in ("dino-vitb16", "beit-base")]}
    assert flagged == expected.get(name, []), result.stdout
    if name == "paper-tiny-imagenet":
        assert "beit-base saw ImageNet-22k and ImageNet-1k images" in result.stdout
        assert "source: timm beit_base_patch16_224.in22k_ft_in22k_in1k" in result.stdout
    else:
        assert "pretraining overlap: none known for these teachers and datasets" in result.stdout


@pytest.mark.slow
def test_plan_reports_done_cells_and_leaves_the_database_untouched(tmp_path: Path) -> None:
    """A cell stored as done is counted done; the database's bytes do not change; batches are timed here."""
    from bench.config.grid import load_grid

    grid = load_grid(STUDIES / "digits-smoke.yaml")
    path = tmp_path / "r.db"
    Store(f"sqlite:///{path}").save_run(record(grid.specs[0].key))
    before = path.read_bytes()
    result = plan(str(STUDIES / "digits-smoke.yaml"), "--db", f"sqlite:///{path}", "--threads", "2", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "already done" in result.stdout and "; 1 already done" in result.stdout
    assert "(1 done)" in result.stdout and "measured here" in result.stdout
    assert "estimated time on this machine (timed here)" in result.stdout
    assert "estimate basis: CPU, this machine: each student's training steps" in result.stdout
    assert "timed here on a few batches at 2 thread(s), as each of bench run's workers" in result.stdout
    assert path.read_bytes() == before


def test_coco_study_is_refused_without_the_karpathy_split_by_plan_and_run(tmp_path: Path) -> None:
    """Issue 29: with COCO present but no dataset_coco.json, `bench plan` names the file and the fix; `bench run`
    stops in one line before any database exists; with the file, the dataset is present."""
    import yaml

    from bench.config.grid import load_grid
    from bench.core.errors import BenchError
    from bench.plan.dry_run import dataset_presence
    from bench.run.context import RunContext
    from bench.sweep.grid import run_grid
    from tests.support.dataset_fixtures import write_coco
    from tests.support.fakes import registered

    data = tmp_path / "data"
    root, _ = write_coco(data, n_train=4, n_val=2)
    result = plan(str(STUDIES / "paper-coco-retrieval.yaml"), "--gpu", "h100", "--data-root", str(data), "--db",
                  f"sqlite:///{tmp_path / 'r.db'}", home=tmp_path)
    line = next(line for line in result.stdout.splitlines() if line.startswith("  coco-captions:"))
    assert result.returncode == 2 and "MISSING; fix:" in line and "dataset_coco.json" in line
    assert "caption_datasets.zip" in line and str(root) in line

    with registered() as teacher:  # `bench run`'s own path (run_grid's preflight) with an offline image-text teacher
        grid = {"teacher": teacher, "student": "projection", "method": "joint-cosine", "dataset": "coco-captions",
                "data": {"image_size": 32, "coco_split": "karpathy"}}
        (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
        context = RunContext(cache_dir=tmp_path / "cache", data_root=data, device="cpu")
        with pytest.raises(BenchError) as refused:
            run_grid(load_grid(tmp_path / "grid.yaml"), f"sqlite:///{tmp_path / 'run.db'}", context)
    assert "data.coco_split karpathy needs the Karpathy split file" in str(refused.value)
    assert "\n" not in str(refused.value) and not (tmp_path / "run.db").exists()  # one line, nothing written

    write_coco(data, n_train=4, n_val=2, karpathy_test=[5, 6])
    assert dataset_presence("coco-captions", {"coco_split": "karpathy"}, data) == (root, None)  # plan's own check
