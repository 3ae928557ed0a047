"""data.teacher_views (issue 22): the teacher labels the view the student trains on, cached (FKD) or online."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.config.grid import load_grid
from bench.core.cards import TeacherCard
from bench.core.errors import BenchError
from bench.core.names import IMAGE_TEXT
from bench.core.registries import TEACHERS
from bench.core.taps import LOGITS, POOLED
from bench.data.splits import DataConfig
from bench.data.views import UNIFORMS, keyed_uniforms, params_from_uniforms
from bench.run.context import RunContext
from bench.run.loader import ImageInputs
from bench.run.parts import masked_train_labels
from bench.run.views import ViewFeed
from bench.run.workbench import Workbench
from bench.sweep.grid import run_grid
from bench.teacher_outputs.views import Labeller, compress_topk, make_labeller
from bench.teachers.base import Preprocess, Teacher
from tests.support.fakes import FakeImageTextTeacher
from tests.support.rows import query

TEACHER, HASH = "fake-views", "hash-views"
SIZE = 16
DATA = {"image_size": SIZE, "student_image_size": SIZE, "train_limit": 120, "val_limit": 40, "test_limit": 60}


class HashTeacher(Teacher):
    """A teacher whose pooled output is a fixed random projection of every input pixel: any changed pixel, crop,
    flip or mix changes it, so equal outputs mean equal inputs."""

    family = "test"
    taps = (POOLED,)

    def __init__(self) -> None:
        encoder = torch.nn.Linear(3 * SIZE * SIZE, 24, bias=False)
        with torch.no_grad():
            encoder.weight.copy_(torch.randn(24, 3 * SIZE * SIZE, generator=torch.Generator().manual_seed(3)))
        super().__init__(HASH, encoder, Preprocess(SIZE, (0.3, 0.4, 0.5), (0.2, 0.25, 0.3), "bilinear"), 24, "hash0")
        self.channels_last = False

    def features(self, images: torch.Tensor, taps: list[str]) -> dict[str, torch.Tensor]:
        return {POOLED: self.encoder(images.float().flatten(1))}


class ZeroShotFake(FakeImageTextTeacher):
    """The fake image-text teacher with a CLIP-like temperature, so it has a zero-shot head."""

    logit_scale = 10.0


@pytest.fixture
def teachers() -> Iterator[None]:
    card = TeacherCard("test", FakeImageTextTeacher.taps, IMAGE_TEXT)
    with TEACHERS.temporarily(TEACHER, lambda weights, **_: ZeroShotFake(), card), \
            TEACHERS.temporarily(HASH, lambda weights, **_: HashTeacher(), TeacherCard("test", (POOLED,))):
        yield


def test_views_are_keyed_by_seed_image_and_view_alone() -> None:
    all_rows = keyed_uniforms(7, np.arange(50), view=3)
    some = keyed_uniforms(7, np.array([41, 5]), view=3)
    assert torch.equal(some, all_rows[[41, 5]])  # the same view of an image whatever else is drawn
    assert not torch.equal(keyed_uniforms(7, np.arange(50), view=4), all_rows)  # another view differs
    assert not torch.equal(keyed_uniforms(8, np.arange(50), view=3), all_rows)  # another seed differs
    assert float(all_rows.min()) >= 0.0 and float(all_rows.max()) < 1.0
    assert abs(float(keyed_uniforms(0, np.arange(4000), view=0).mean()) - 0.5) < 0.02
    thetas = [params_from_uniforms(keyed_uniforms(0, np.arange(10), view, UNIFORMS), "crop-flip", 10, SIZE)["theta"]
              for view in range(4)]
    for first in range(4):
        for second in range(first + 1, 4):
            assert not torch.allclose(thetas[first], thetas[second])  # the K views of an image differ


def test_topk_keeps_the_top_probabilities_and_shares_the_rest_equally() -> None:
    from bench.teacher_outputs.cache import CacheEvent
    from bench.teacher_outputs.views import ViewCache

    logits = torch.randn(2, 5, 10, generator=torch.Generator().manual_seed(0)) * 3
    packed = compress_topk(logits, 3)
    cache = ViewCache({name: value for name, value in packed.items()}, {}, 2, CacheEvent(False, 0.0), 10, topk=3,
                      sizes={"classes": 10})
    rebuilt = cache.targets(torch.tensor([0, 1, 1]), torch.tensor([4, 0, 2]), LOGITS)
    original = logits[[0, 1, 1], [4, 0, 2]]
    p, q = original.softmax(-1), rebuilt.softmax(-1)
    top = original.topk(3, dim=-1).indices
    assert torch.allclose(q.gather(1, top), p.gather(1, top), atol=1e-6)  # top-k kept exactly at T = 1
    rest = torch.ones_like(q, dtype=torch.bool).scatter(1, top, False)
    assert torch.allclose(q[rest].view(3, 7).sum(1), p[rest].view(3, 7).sum(1), atol=1e-6)  # the tail's mass
    assert torch.allclose(q[rest].view(3, 7).std(1), torch.zeros(3), atol=1e-7)  # shared equally


def _to_teacher_input(student_batch: torch.Tensor, student: ImageInputs, preprocess: Preprocess) -> torch.Tensor:
    """The student's normalised view in the teacher's normalisation (same size here)."""
    s_mean, s_std = torch.tensor(student.mean).view(1, 3, 1, 1), torch.tensor(student.std).view(1, 3, 1, 1)
    t_mean, t_std = torch.tensor(preprocess.mean).view(1, 3, 1, 1), torch.tensor(preprocess.std).view(1, 3, 1, 1)
    return ((student_batch * s_std + s_mean) - t_mean) / t_std


@pytest.mark.usefixtures("teachers", "one_thread")
@pytest.mark.parametrize("augment", ["flip", "crop-flip", "mixup"])
@pytest.mark.parametrize("mode", ["cached", "online"])
def test_the_target_is_the_teachers_output_on_the_very_view_the_student_gets(tmp_path: Path, mode: str,
                                                                             augment: str) -> None:
    config = DataConfig(**DATA, augment=augment, teacher_views=mode, teacher_view_count=3)
    bench = Workbench(RunContext(cache_dir=tmp_path / "cache", device="cpu"))
    data = bench.data("digits", config)
    teacher = bench.teacher(HASH)
    labeller = make_labeller(teacher, data, bench.probe(HASH, data))
    mean, std = data.train_channel_stats
    student = ImageInputs(data.train.images, SIZE, mean, std)
    feed = ViewFeed(mode, augment, data.train.images, masked_train_labels(data), student, None, (POOLED,), 0, SIZE,
                    cache=bench.view_cache(labeller, data, [POOLED], SIZE) if mode == "cached" else None,
                    labeller=labeller if mode == "online" else None)
    generator = torch.Generator().manual_seed(1)
    index = torch.tensor([3, 17, 0, 55, 100])
    seen = []
    for epoch in (1, 2, 3, 4):
        inputs, targets, mix = feed.batch(index, epoch, student.raw(index), generator, torch.device("cpu"))
        again = teacher.features(_to_teacher_input(inputs, student, labeller.preprocess), [POOLED])[POOLED]
        assert torch.allclose(targets[POOLED], again, rtol=1e-4, atol=1e-3), (mode, augment, epoch)
        assert (mix is not None) == (augment == "mixup")
        seen.append(inputs)
    assert not torch.allclose(seen[0], seen[1])  # epoch 2 is another view
    if mode == "cached":  # K = 3: epoch 4 replays epoch 1's views, and a fresh process reads the same views
        assert torch.equal(seen[0], seen[3])
        fresh = Workbench(RunContext(cache_dir=tmp_path / "cache", device="cpu"))
        fresh_labeller = make_labeller(teacher, data, fresh.probe(HASH, data))
        cache = fresh.view_cache(fresh_labeller, data, [POOLED], SIZE)
        assert cache.event.hit and fresh_labeller.calls == 0
        replay = ViewFeed(mode, augment, data.train.images, masked_train_labels(data), student, None, (POOLED,), 0,
                          SIZE, cache=cache)
        inputs, targets, _ = replay.batch(index, 2, student.raw(index), generator, torch.device("cpu"))
        assert torch.equal(inputs, seen[1])


def _grid(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "views.yaml"
    path.write_text(f"teacher: {TEACHER}\ndataset: digits\nseeds: [0]\nepochs: 2\n"
                    f"data: {json.dumps({**DATA, 'augment': 'crop-flip'})}\nhparams: {{batch_size: 32}}\n{body}")
    return path


@pytest.mark.usefixtures("teachers", "one_thread")
def test_three_modes_run_for_standalone_and_head_students_and_count_their_teacher_images(tmp_path: Path) -> None:
    path = _grid(tmp_path, "student: [resnet, bottleneck]\nmethod: [scratch, kd]\ndata_variants:\n"
                           "  - {teacher_views: cached, teacher_view_count: 2}\n  - {teacher_views: online}\n")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    calls: list[int] = []
    original = Labeller.__call__

    def counted(self: Labeller, images: torch.Tensor, taps: list[str]) -> dict[str, torch.Tensor]:
        calls.append(len(images))
        return original(self, images, taps)

    Labeller.__call__ = counted  # type: ignore[method-assign]
    try:
        summary = run_grid(load_grid(path), db, RunContext(cache_dir=tmp_path / "cache", device="cpu"))
    finally:
        Labeller.__call__ = original  # type: ignore[method-assign]
    # resnet scratch once (no teacher: its views do not depend on the mode), 3 per other pair... and one probe
    assert (summary.done, summary.failed) == (1 + 1 + 3 * 2, 0)
    rows = query(db, "SELECT student, method, data_config, teacher_view_s, teacher_view_images, kd_targets, "
                     "test_acc FROM runs WHERE method != 'teacher-probe'")
    train_rows = query(db, "SELECT split_sizes FROM runs LIMIT 1")[0]["split_sizes"]
    n_train = json.loads(train_rows)["train"]
    by = {(r["student"], r["method"], json.loads(r["data_config"]).get("teacher_views", "fixed")): r for r in rows}
    assert set(by) == {("resnet", "scratch", "fixed"), *{(s, m, v) for s in ("resnet", "bottleneck")
                                                       for m in ("kd",) for v in ("cached", "online")},
                       ("bottleneck", "scratch", "cached"), ("bottleneck", "scratch", "online")}
    assert by[("resnet", "scratch", "fixed")]["teacher_view_images"] == 0
    assert by[("resnet", "kd", "cached")]["teacher_view_images"] == 2 * n_train  # K passes, paid once
    assert by[("resnet", "kd", "online")]["teacher_view_images"] == 2 * n_train  # every image, every epoch
    assert by[("resnet", "kd", "online")]["kd_targets"] == "probe-head-views"
    assert all(0.0 <= r["test_acc"] <= 1.0 and r["teacher_view_s"] >= 0 for r in rows)
    steps = 2 * -(-n_train // 32)  # online: one labeller call per training step, per online run
    online_runs = 3  # resnet kd, bottleneck scratch and kd
    cache_batches = 2 * 2 * -(-n_train // 128)  # two cached entries (resnet kd: logits; bottleneck: pooled+logits)
    assert len(calls) == online_runs * steps + cache_batches


@pytest.mark.usefixtures("teachers")
@pytest.mark.parametrize(("body", "field"), [
    ("student: bottleneck\nmethod: kd\n", "data.augment"),  # fixed views + augment + a head student
    ("student: resnet\nmethod: kd\ndata_variants: [{augment: mixup}]\n", "data.augment"),  # mixup needs views
    ("student: resnet\nmethod: kd\ndata_variants: [{teacher_views: cached, teacher_view_count: 0}]\n",
     "teacher_view_count"),
    ("student: resnet\nmethod: kd\ndata_variants: [{teacher_views: cached, teacher_view_topk: 0}]\n",
     "teacher_view_topk"),
    ("student: resnet\nmethod: kd\ndata_variants: [{teacher_views: sometimes}]\n", "teacher_views"),
    ("student: resnet\nmethod: kd\ndata_variants: [{teacher_views: online, augment: none}]\n", "teacher_views"),
    ("student: resnet\nmethod: kd\ndata_variants: [{teacher_view_count: 4}]\n", "teacher_view_count"),
])
def test_inconsistent_view_settings_are_refused_when_the_file_loads(tmp_path: Path, body: str, field: str) -> None:
    with pytest.raises(BenchError, match=field) as error:
        load_grid(_grid(tmp_path, body))
    assert "\n" not in str(error.value)


@pytest.mark.usefixtures("teachers", "one_thread")
def test_topk_above_the_class_count_stops_before_any_row(tmp_path: Path) -> None:
    path = _grid(tmp_path, "student: resnet\nmethod: kd\n"
                           "data_variants: [{teacher_views: cached, teacher_view_topk: 11}]\n")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    with pytest.raises(BenchError, match="teacher_view_topk.*10 classes"):
        run_grid(load_grid(path), db, RunContext(cache_dir=tmp_path / "cache", device="cpu"))
    assert not (tmp_path / "r.db").exists() or query(db, "SELECT count(*) AS n FROM runs")[0]["n"] == 0


def test_default_views_leave_spec_keys_alone() -> None:
    assert not {"teacher_views", "teacher_view_count", "augment"} & set(DataConfig().as_dict())
    assert DataConfig(teacher_views="cached", augment="flip").as_dict()["teacher_views"] == "cached"


class Interrupt(Exception):
    """Stands in for a worker killed after an epoch."""


@pytest.mark.usefixtures("teachers", "one_thread")
@pytest.mark.parametrize("mode", ["cached", "online"])
def test_a_resumed_run_replays_the_same_views_as_an_uninterrupted_one(tmp_path: Path, mode: str) -> None:
    from bench.run.run_spec import run_spec
    from bench.sweep.checkpoint import Checkpointer

    variant = "{teacher_views: cached, teacher_view_count: 2}" if mode == "cached" else "{teacher_views: online}"
    path = _grid(tmp_path, f"student: [resnet]\nmethod: kd\ndata_variants: [{variant}]\n")
    (spec,) = [s for s in load_grid(path).specs if s.method == "kd"]
    context = RunContext(cache_dir=tmp_path / "cache", device="cpu")
    straight = run_spec(spec, Workbench(context), "views")
    checkpoint = Checkpointer(tmp_path / "runs", spec.key, spec.epochs)

    def stop(record) -> None:  # noqa: ANN001
        raise Interrupt

    with pytest.raises(Interrupt):
        run_spec(spec, Workbench(context), "views", on_epoch=stop, checkpoint=checkpoint)
    resumed = run_spec(spec, Workbench(context), "views", checkpoint=checkpoint)  # a fresh process's workbench
    assert resumed.resumed_from_epoch == 1
    assert [e.train_loss for e in resumed.epoch_records] == [e.train_loss for e in straight.epoch_records]
    assert len(straight.epoch_records) == 2
    assert resumed.test_acc == straight.test_acc


@pytest.mark.usefixtures("teachers", "one_thread")
def test_a_damaged_view_cache_is_recomputed_and_other_settings_are_other_entries(tmp_path: Path) -> None:
    config = DataConfig(**DATA, augment="crop-flip", teacher_views="cached", teacher_view_count=2)
    bench = Workbench(RunContext(cache_dir=tmp_path / "cache", device="cpu"))
    data = bench.data("digits", config)
    labeller = make_labeller(bench.teacher(HASH), data, bench.probe(HASH, data))
    first = bench.view_cache(labeller, data, [POOLED], SIZE)
    files = {p.name: p.stat().st_size for p in (tmp_path / "cache" / "features").glob("*.safetensors")}
    for changed in (DataConfig(**DATA, augment="flip", teacher_views="cached", teacher_view_count=2),
                    DataConfig(**DATA, augment="crop-flip", teacher_views="cached", teacher_view_count=3),
                    DataConfig(**DATA, augment="crop-flip", teacher_views="cached", teacher_view_count=2,
                               teacher_view_seed=1)):
        other = Workbench(RunContext(cache_dir=tmp_path / "cache", device="cpu"))
        other_data = other.data("digits", changed)
        entry = other.view_cache(make_labeller(other.teacher(HASH), other_data, other.probe(HASH, other_data)),
                                 other_data, [POOLED], SIZE)
        assert not entry.event.hit  # policy, K and view seed are in the key
    newest = max((tmp_path / "cache" / "features").glob("*.safetensors"), key=lambda p: p.stat().st_mtime_ns)
    view_file = next(p for p in (tmp_path / "cache" / "features").glob("*.safetensors")
                     if p.name in files and p.stat().st_size == max(files.values()))
    assert view_file != newest
    raw = bytearray(view_file.read_bytes())
    raw[-20] ^= 0xFF  # flip bits in the tensors: the sha256 no longer matches
    view_file.write_bytes(bytes(raw))
    again = Workbench(RunContext(cache_dir=tmp_path / "cache", device="cpu"))
    again_labeller = make_labeller(again.teacher(HASH), data, again.probe(HASH, data))
    recomputed = again.view_cache(again_labeller, again.data("digits", config), [POOLED], SIZE)
    assert not recomputed.event.hit and again_labeller.calls > 0
    assert torch.equal(recomputed.outputs[POOLED], first.outputs[POOLED])
    assert any(".corrupt-" in p.name for p in (tmp_path / "cache" / "features").iterdir())


def test_the_same_view_seed_gives_the_same_views_in_another_process() -> None:
    import subprocess
    import sys

    code = ("import numpy as np; from bench.data.views import keyed_uniforms; "
            "print(keyed_uniforms(5, np.arange(7), 2).numpy().tobytes().hex())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == keyed_uniforms(5, np.arange(7), 2).numpy().tobytes().hex()


@pytest.mark.usefixtures("teachers", "one_thread")
def test_every_kind_of_teacher_output_is_served_for_views(tmp_path: Path) -> None:
    """Feature targets (feature) and pooled embeddings with per-row state (crd) come from the views too, cached and
    online, for a head student reading the teacher's feature map; each run trains and stores its view cost."""
    path = _grid(tmp_path, "student: [cbam]\nmethod: [feature, crd]\nhparams: {batch_size: 32, beta: 1.0}\n"
                           "data_variants:\n  - {teacher_views: cached, teacher_view_count: 2}\n"
                           "  - {teacher_views: online}\n")
    path.write_text(path.read_text().replace("hparams: {batch_size: 32}\n", ""))
    db = f"sqlite:///{tmp_path / 'r.db'}"
    summary = run_grid(load_grid(path), db, RunContext(cache_dir=tmp_path / "cache", device="cpu"))
    assert (summary.done, summary.failed) == (1 + 2 * 2, 0)
    rows = query(db, "SELECT method, data_config, teacher_view_images, test_acc FROM runs "
                     "WHERE method != 'teacher-probe'")
    n_train = json.loads(query(db, "SELECT split_sizes FROM runs LIMIT 1")[0]["split_sizes"])["train"]
    assert {(r["method"], json.loads(r["data_config"])["teacher_views"]) for r in rows} == {
        (m, v) for m in ("feature", "crd") for v in ("cached", "online")}
    assert all(r["teacher_view_images"] == 2 * n_train for r in rows)  # K = 2 passes; online: 2 epochs
    assert all(r["test_acc"] is not None for r in rows)


def test_the_report_names_every_view_mode_in_the_setting() -> None:
    import pandas as pd

    from bench.report.tables import with_setting

    base = {"augment": "crop-flip"}
    configs = [base, {**base, "teacher_views": "cached", "teacher_view_count": 2}, {**base, "teacher_views": "cached"},
               {**base, "teacher_views": "online"}]
    frame = pd.DataFrame({"dataset": "d", "student": "resnet", "method": "kd", "epochs": 2, "teacher": "t",
                          "hparams": [{}] * 4, "data_config": configs, "study": "s"})
    assert list(with_setting(frame)["setting"]) == [
        "teacher_views=fixed", "teacher_view_count=2, teacher_views=cached",
        "teacher_view_count=8, teacher_views=cached", "teacher_views=online"]


def test_the_report_counts_a_cached_entry_once_and_online_forwards_per_run() -> None:
    import pandas as pd

    from bench.report.view_cost import view_cost_rows

    base = {"augment": "crop-flip"}
    frame = pd.DataFrame({
        "dataset": "d", "student": "resnet", "method": "kd", "epochs": 2, "teacher": "t", "status": "done",
        "hparams": [{}] * 5, "study": "s", "seed": [0, 1, 0, 1, 0],
        "data_config": [{**base, "teacher_views": "cached", "teacher_view_count": 2}] * 2
        + [{**base, "teacher_views": "online"}] * 2 + [base],
        "epoch_seconds": [1.0, 3.0, 5.0, 7.0, 1.5], "teacher_view_s": [10.0, 10.0, 4.0, 6.0, 0.0],
        "teacher_view_images": [200, 200, 100, 100, 0]})
    rows = {row[2]: row for row in view_cost_rows(frame, "d")}
    assert rows["teacher_view_count=2, teacher_views=cached"][4:] == ["2", "4.0", "10.0 once", "200"]
    assert rows["teacher_views=online"][4:] == ["2", "12.0", "10.0", "200"]  # summed over its runs
    assert rows["teacher_views=fixed"][4:] == ["1", "3.0", "0.0", "0"]
    assert view_cost_rows(frame[frame["data_config"] == base], "d") == []  # no views: no table


@pytest.mark.usefixtures("teachers", "one_thread")
def test_zero_shot_and_fine_tuned_teachers_label_the_views(tmp_path: Path) -> None:
    path = _grid(tmp_path, "student: resnet\nmethod: kd\ndata_variants:\n"
                           "  - {teacher_reference: zero-shot, teacher_views: cached, teacher_view_count: 2}\n"
                           "  - {teacher_reference: finetune, finetune_epochs: 1, teacher_views: online}\n")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    summary = run_grid(load_grid(path), db, RunContext(cache_dir=tmp_path / "cache", device="cpu"))
    assert (summary.done, summary.failed) == (4, 0)  # two references, two kd runs
    rows = query(db, "SELECT kd_targets, teacher_view_images FROM runs WHERE method = 'kd' ORDER BY kd_targets")
    n_train = json.loads(query(db, "SELECT split_sizes FROM runs LIMIT 1")[0]["split_sizes"])["train"]
    assert [(r["kd_targets"], r["teacher_view_images"]) for r in rows] == [
        ("finetune-views", 2 * n_train), ("zero-shot-views", 2 * n_train)]


class OwnHeadTeacher(HashTeacher):
    """A hash teacher that is also a classifier (as a trained run is): its LOGITS tap is its own head's output."""

    taps = (POOLED, LOGITS)

    def features(self, images: torch.Tensor, taps: list[str]) -> dict[str, torch.Tensor]:
        pooled = self.encoder(images.float().flatten(1))
        return {POOLED: pooled, LOGITS: pooled[:, :10] * 2}


def test_a_trained_run_labels_views_with_its_own_head() -> None:
    from bench.teacher_outputs.probe import ProbeResult
    from bench.teacher_outputs.reference import OWN_HEAD_REFERENCE
    from tests.support.fakes import tiny_splits

    teacher = OwnHeadTeacher()
    reference = ProbeResult(0.0, 0.5, 0.5, {}, reference=OWN_HEAD_REFERENCE, head_params=0)
    labeller = make_labeller(teacher, tiny_splits(), reference)
    images = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    assert torch.equal(labeller(images, [LOGITS])[LOGITS], teacher.features(images, [LOGITS])[LOGITS])
    assert labeller.key["reference"] == "own-head" and labeller.calls == 1


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_attention_maps_of_the_real_teacher_come_from_the_views(tmp_path: Path) -> None:
    """AT on the ImageNet teacher's feature maps, for a standalone CNN and a head student, cached and online."""
    path = tmp_path / "at.yaml"
    path.write_text("teacher: effnet-lite0\nstudent: [cbam, densenet]\nmethod: attention\ndataset: digits\n"
                    "seeds: [0]\nepochs: 2\ndata: {image_size: 64, student_image_size: 16, train_limit: 200, "
                    "val_limit: 60, test_limit: 100, augment: flip}\nhparams: {batch_size: 32, at_weight: 5.0}\n"
                    "data_variants:\n  - {teacher_views: cached, teacher_view_count: 2}\n"
                    "  - {teacher_views: online}\n")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    summary = run_grid(load_grid(path), db, RunContext(cache_dir=tmp_path / "cache", device="cpu"))
    assert (summary.done, summary.failed) == (1 + 2 * 2, 0)
    terms = query(db, "SELECT r.student, r.data_config, e.loss_terms FROM run_epochs e JOIN runs r "
                      "ON r.id = e.run_id WHERE r.method = 'attention' AND e.epoch = 1")
    assert len(terms) == 4
    for row in terms:  # the AT term was computed (finite, positive) from the views' feature maps
        at = json.loads(row["loss_terms"])["at"]
        assert 0.0 < at < 1e3, (row["student"], row["data_config"], at)
