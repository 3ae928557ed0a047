"""Teacher fine-tuning: a tiny random timm model beats its frozen probe, runs once per key, keeps labels balanced."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.core.registries import TEACHERS
from bench.data.splits import DataConfig, DatasetSplits, Split
from bench.teacher_outputs import finetune
from bench.teacher_outputs.cache import FeatureCache
from bench.teacher_outputs.features import run_teacher
from bench.teacher_outputs.finetune import FinetuneConfig, finetune_key, finetune_teacher, labeled_rows
from bench.teacher_outputs.probe import fit_linear_probe
from bench.teachers.base import Teacher
from bench.teachers.timm_vit import create_timm_model, register_timm_teacher

MODEL = "test_efficientnet"  # timm's tiny EfficientNet (256-d pooled), built with random weights
SIZE = 16
CONFIG = FinetuneConfig(lrs=(1e-2,), max_epochs=6, batch_size=32)


def faint_checkerboard(n: int, seed: int) -> Split:
    """Class 1 adds a faint checkerboard under strong pixel noise: random frozen features barely see it."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = rng.integers(0, 200, size=(n, SIZE, SIZE)) + 24 * labels[:, None, None] * ((yy + xx) % 2)
    return Split(images.clip(0, 255).astype(np.uint8), labels.astype(np.int64))


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny checkpoint the test writes to disk."""
    from safetensors.torch import save_file

    path: Path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    torch.manual_seed(0)
    source = create_timm_model(MODEL, None)
    save_file({key: value.contiguous() for key, value in source.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def teacher(weights: Path) -> Iterator[Teacher]:
    """A registered timm teacher loaded from the tiny checkpoint."""
    register_timm_teacher("tiny-finetune", MODEL, "tiny random EfficientNet")
    try:
        yield TEACHERS.get("tiny-finetune")(str(weights))
    finally:
        TEACHERS.remove("tiny-finetune")


@pytest.fixture(scope="module")
def data() -> DatasetSplits:
    return DatasetSplits("checker", ("plain", "checker"), faint_checkerboard(160, 0), faint_checkerboard(80, 1),
                         faint_checkerboard(80, 2), DataConfig(image_size=SIZE))


def frozen_probe_val_acc(teacher: Teacher, data: DatasetSplits) -> float:
    preprocess = teacher.preprocess.with_size(SIZE)
    splits = ("train", "val", "test")
    features = {s: run_teacher(teacher, data.split(s), preprocess, ["pooled"], torch.device("cpu"))["pooled"]
                for s in splits}
    labels = {s: torch.from_numpy(data.split(s).labels) for s in splits}
    return fit_linear_probe(features, labels, data.num_classes, targets="in-sample").val_acc


@pytest.mark.usefixtures("one_thread")
def test_finetune_beats_probe_and_is_cached(teacher: Teacher, data: DatasetSplits, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    before = {name: value.clone() for name, value in teacher.state_dict().items()}
    calls = []
    real = finetune._train_one_lr
    monkeypatch.setattr(finetune, "_train_one_lr", lambda *args: calls.append(args[3]) or real(*args))
    cache = FeatureCache(tmp_path)
    first = finetune_teacher(teacher, data, CONFIG, cache, torch.device("cpu"))
    assert first.val_acc > frozen_probe_val_acc(teacher, data) + 0.1
    assert not first.hit and calls == [1e-2]
    assert first.logits["train"].shape == (160, 2) and first.pooled["test"].shape == (80, teacher.embed_dim)
    assert {"head.weight", "head.bias"} <= set(first.state) and 1 <= first.epochs <= CONFIG.max_epochs
    assert all(torch.equal(value, teacher.state_dict()[name]) for name, value in before.items())  # a private copy
    second = finetune_teacher(teacher, data, CONFIG, FeatureCache(tmp_path), torch.device("cpu"))
    assert second.hit and calls == [1e-2]  # read back, not trained again
    for split in ("train", "val", "test"):
        assert torch.equal(second.logits[split], first.logits[split])
    assert second.val_acc == first.val_acc and second.lr == first.lr and second.epochs == first.epochs


def test_key_follows_every_hyperparameter(teacher: Teacher, data: DatasetSplits) -> None:
    base = finetune_key(teacher, data, CONFIG)
    assert finetune_key(teacher, data, replace(CONFIG)) == base
    for change in ({"lrs": (3e-3,)}, {"max_epochs": 7}, {"unfreeze": 1}, {"seed": 1}, {"labeled_limit": 50},
                   {"weight_decay": 0.0}, {"batch_size": 16}):
        assert finetune_key(teacher, data, replace(CONFIG, **change)) != base, change
    other = replace(data, config=DataConfig(image_size=SIZE * 2))
    assert finetune_key(teacher, other, CONFIG) != base


def test_unfreeze_trains_only_the_last_blocks(teacher: Teacher, data: DatasetSplits, tmp_path: Path) -> None:
    config = replace(CONFIG, unfreeze=1, max_epochs=1)
    result = finetune_teacher(teacher, data, config, FeatureCache(tmp_path), torch.device("cpu"))
    last = len(teacher.encoder.blocks) - 1
    encoder = {name for name in result.state if name.startswith("encoder.")}
    assert encoder and all(not name.startswith("encoder.blocks.") or name.startswith(f"encoder.blocks.{last}.")
                           for name in encoder)
    assert not any(name.startswith(("encoder.conv_stem", "encoder.classifier")) for name in encoder)


def test_labeled_rows_are_a_balanced_seeded_prefix() -> None:
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    rows = labeled_rows(labels, 8, seed=3)
    assert len(rows) == 8 and np.bincount(labels[rows], minlength=4).tolist() == [2, 2, 2, 2]
    assert set(rows) <= set(labeled_rows(labels, 20, seed=3))  # a larger limit keeps the smaller one's rows
    assert not np.array_equal(rows, labeled_rows(labels, 8, seed=4))
    assert np.array_equal(labeled_rows(labels, None), np.arange(100))


GRID_DATA = {"image_size": SIZE, "student_image_size": 8, "train_limit": 120, "val_limit": 40, "test_limit": 40,
             "teacher_reference": "finetune", "finetune_epochs": 1, "finetune_lr": 1e-2, "labeled_limit": 30}


def write_grid(tmp_path: Path, name: str, weights_file: str, **fields: object) -> Path:
    """A grid of the tiny fine-tuned teacher on digits; `fields` replace any of its top-level fields."""
    import json

    path = tmp_path / f"{name}.yaml"
    grid = {"name": name, "teacher": "tiny-finetune", "student": ["projection"], "method": ["scratch", "kd"],
            "dataset": "digits", "epochs": 1, "data": GRID_DATA, "hparams": {"batch_size": 16},
            "weights": {"tiny-finetune": weights_file}}
    path.write_text(json.dumps({**grid, **fields}))
    return path


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_finetune_reference_through_a_grid(teacher: Teacher, weights: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference row is the fine-tuned teacher, kd reads its logits, scratch sees only the labeled rows,
    transfer rows reach kd with label -1, and a second grid on the same data does not fine-tune again."""
    import json

    from bench.config.grid import load_grid
    from bench.run import run_spec as run_spec_module
    from bench.run.context import RunContext
    from bench.store.sql import read_only_query
    from bench.sweep.grid import run_grid
    from bench.sweep.queue import WorkerOptions

    fits, seen = [], {}
    real_fit, real_train = finetune._train_one_lr, run_spec_module.train_student
    monkeypatch.setattr(finetune, "_train_one_lr", lambda *args: fits.append(args[3]) or real_fit(*args))

    def counting_train(student, method, data, *args, **kwargs):  # noqa: ANN001, ANN202 - a pass-through hook
        labels = data.labels["train"]
        seen[type(method).__name__] = (len(labels), int((labels == -1).sum()))
        return real_train(student, method, data, *args, **kwargs)

    monkeypatch.setattr(run_spec_module, "train_student", counting_train)
    context = RunContext(cache_dir=tmp_path / "cache", device="cpu")
    for name in ("first", "second"):  # each in its own database: the second runs every cell again
        db = f"sqlite:///{tmp_path / f'{name}.db'}"
        summary = run_grid(load_grid(write_grid(tmp_path, name, str(weights))), db, context,
                           options=WorkerOptions(run_dir=tmp_path / f"runs-{name}", bundle="off"))  # the hook
        assert (summary.done, summary.failed) == (3, 0)  # above sees the single-run loop's train_student
        assert fits == [1e-2]  # fine-tuned once, by the first grid; the second read the cache
    assert seen == {"Scratch": (30, 0), "HintonKD": (120, 90)}
    _, rows = read_only_query(f"sqlite:///{tmp_path / 'first.db'}",
                              "SELECT study, student, method, kd_targets, teacher_reference, params, epoch_seconds, "
                              "data_config FROM runs ORDER BY id")
    assert [row[1:5] for row in rows] == [("fine-tuned", "teacher-finetune", "finetune", "fine-tuned"),
                                          ("projection", "scratch", None, "fine-tuned"),
                                          ("projection", "kd", "finetune", "fine-tuned")]
    assert rows[0][5] > teacher.num_params() and rows[0][6] > 0
    assert all(json.loads(row[7])["labeled_limit"] == 30 for row in rows)


def test_new_data_fields_leave_spec_keys_alone() -> None:
    fresh = DataConfig().as_dict()
    assert not {"labeled_limit", "finetune_epochs", "finetune_lr", "finetune_unfreeze"} & set(fresh)
    assert DataConfig(labeled_limit=5).as_dict()["labeled_limit"] == 5


@pytest.mark.parametrize(("fields", "match"), [
    ({"method": ["attention"]}, "data.teacher_reference"),
    ({"method": ["crd"], "data": {**GRID_DATA, "teacher_reference": "probe"}}, "data.labeled_limit"),
    ({"data": {**GRID_DATA, "finetune_unfreeze": "last"}}, "data.finetune_unfreeze"),
])
def test_settings_a_fine_tune_cannot_serve_are_refused(tmp_path: Path, fields: dict, match: str) -> None:
    from bench.config.grid import load_grid
    from bench.core.errors import BenchError

    path = write_grid(tmp_path, "bad", "x", **{"teacher": "effnet-lite0", "weights": {}, "student": ["resnet"],
                                               **fields})
    with pytest.raises(BenchError, match=match):
        load_grid(path)


def test_finetune_reads_its_rows_as_float_one_batch_at_a_time(teacher: Teacher, monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    """The labeled rows are converted per batch (never all at once) and give the whole conversion's pixels."""
    from bench.data.imagecache import ImageView
    from bench.data.images import to_tensor

    base = faint_checkerboard(120, 5)
    view = Split(ImageView(base.images, np.arange(119, -1, -1)), base.labels[::-1].copy())
    data = DatasetSplits("checker-view", ("plain", "checker"), view, faint_checkerboard(20, 1),
                         faint_checkerboard(20, 2), DataConfig(image_size=SIZE))
    rows = labeled_rows(data.train.labels, 50)
    preprocess = teacher.preprocess.with_size(SIZE)
    source = finetune.LabeledImages(data, rows, preprocess)
    index = torch.tensor([49, 0, 17, 3])
    whole = to_tensor(np.asarray(data.train.images)[rows], preprocess.input_size, preprocess.mean, preprocess.std,
                      preprocess.interpolation)
    assert len(source) == 50 and torch.equal(source[index], whole[index])
    converted: list[int] = []
    real = finetune.to_tensor
    monkeypatch.setattr(finetune, "to_tensor", lambda images, *a: converted.append(len(images)) or real(images, *a))
    finetune_teacher(teacher, data, replace(CONFIG, max_epochs=1, labeled_limit=50), FeatureCache(tmp_path),
                     torch.device("cpu"))
    assert converted and max(converted) <= CONFIG.batch_size < 50
