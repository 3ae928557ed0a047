"""Feature cache: computed once, reused, invalidated by anything that changes the outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data.splits import DataConfig, load_dataset
from bench.teacher_outputs.cache import FeatureCache
from bench.teacher_outputs.features import cached_teacher_outputs
from bench.teachers.base import Preprocess, Teacher


class CountingTeacher(Teacher):
    """A tiny deterministic conv teacher that counts how many images it has seen."""

    taps = ("pooled",)

    def __init__(self, fingerprint: str = "w1") -> None:
        torch.manual_seed(0)
        encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        super().__init__("counting", encoder, Preprocess(16, (0.5,) * 3, (0.5,) * 3), 8, fingerprint)
        self.images_seen = 0

    def features(self, images, taps):  # noqa: ANN001, ANN201
        self.images_seen += len(images)
        return {"pooled": self.encoder(images)}


@pytest.fixture
def data():
    return load_dataset("digits", DataConfig(train_limit=50, val_limit=20, test_limit=30, image_size=16))


def lookup(teacher: Teacher, data, cache: FeatureCache, split: str = "train", taps=("pooled",)):  # noqa: ANN001, ANN201
    return cached_teacher_outputs(teacher, data, split, taps, cache, torch.device("cpu"))


def test_second_lookup_hits_and_returns_identical_tensors(tmp_path: Path, data) -> None:
    teacher = CountingTeacher()
    cache = FeatureCache(tmp_path)
    first, event1 = lookup(teacher, data, cache)
    assert not event1.hit and teacher.images_seen == 50 and first["pooled"].shape == (50, 8)
    second, event2 = lookup(teacher, data, FeatureCache(tmp_path))  # a new process, same dir
    assert event2.hit and teacher.images_seen == 50
    assert torch.equal(first["pooled"], second["pooled"])
    assert event2.teacher_seconds == pytest.approx(event1.teacher_seconds, rel=1e-3)
    assert cache.misses == 1 and not list(cache.root.glob("*.tmp"))


@pytest.mark.parametrize(
    "change",
    ["weights", "image_size", "split", "data_limit"],
)
def test_anything_that_changes_outputs_invalidates(tmp_path: Path, data, change: str) -> None:
    cache = FeatureCache(tmp_path)
    lookup(CountingTeacher(), data, cache)
    teacher, split = CountingTeacher(), "train"
    if change == "weights":
        teacher = CountingTeacher(fingerprint="w2")
    elif change == "image_size":
        data = load_dataset("digits", DataConfig(train_limit=50, val_limit=20, test_limit=30, image_size=24))
    elif change == "split":
        split = "val"
    elif change == "data_limit":
        data = load_dataset("digits", DataConfig(train_limit=40, val_limit=20, test_limit=30, image_size=16))
    _, event = lookup(teacher, data, cache, split)
    assert not event.hit and teacher.images_seen > 0


def test_limits_on_other_splits_do_not_invalidate(tmp_path: Path, data) -> None:
    cache = FeatureCache(tmp_path)
    lookup(CountingTeacher(), data, cache)
    other = load_dataset("digits", DataConfig(train_limit=50, val_limit=20, test_limit=10, image_size=16,
                                               student_image_size=8))
    teacher = CountingTeacher()
    _, event = lookup(teacher, other, cache)
    assert event.hit and teacher.images_seen == 0


def test_damaged_cache_file_is_recomputed(tmp_path: Path, data) -> None:
    cache = FeatureCache(tmp_path)
    original, _ = lookup(CountingTeacher(), data, cache)
    for path in cache.root.glob("*.safetensors"):
        path.write_bytes(path.read_bytes()[:100])
    teacher = CountingTeacher()
    again, event = lookup(teacher, data, cache)
    assert not event.hit and teacher.images_seen == 50
    assert torch.allclose(original["pooled"], again["pooled"])


def randomise_tensor_bytes(path: Path, fraction: float = 0.5, seed: int = 0) -> None:
    """Overwrite `fraction` of the tensor data bytes with random ones; the header stays valid."""
    import numpy as np

    raw = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little")  # u64 header length, JSON header, then the data region
    rng = np.random.default_rng(seed)
    where = rng.choice(np.arange(start, len(raw)), size=int(fraction * (len(raw) - start)), replace=False)
    for index, value in zip(where.tolist(), rng.integers(0, 256, size=len(where)).tolist(), strict=True):
        raw[index] = value
    path.write_bytes(bytes(raw))


def quarantined(cache: FeatureCache) -> list[Path]:
    return sorted(cache.root.glob("*.safetensors.corrupt-*"))


def test_randomised_tensor_bytes_are_quarantined_and_recomputed(tmp_path: Path, data, caplog) -> None:
    from safetensors import safe_open

    cache = FeatureCache(tmp_path)
    original, _ = lookup(CountingTeacher(), data, cache)
    (path,) = cache.root.glob("*.safetensors")
    randomise_tensor_bytes(path)
    with safe_open(str(path), framework="pt") as handle:  # still a well-formed file: only the hash can tell
        assert not torch.equal(handle.get_tensor("pooled"), original["pooled"])
    teacher = CountingTeacher()
    again, event = lookup(teacher, data, cache)
    assert not event.hit and teacher.images_seen == 50
    assert torch.equal(again["pooled"], original["pooled"])
    assert len(quarantined(cache)) == 1 and path.is_file()
    assert sum("moved aside" in record.getMessage() for record in caplog.records) == 1
    _, event = lookup(CountingTeacher(), data, cache)  # the recomputed file is trusted again
    assert event.hit


def test_file_without_a_content_hash_is_stale(tmp_path: Path, data) -> None:
    """A file written before content hashes (no hash in its metadata) is recomputed, not trusted."""
    from safetensors.torch import save_file

    cache = FeatureCache(tmp_path)
    original, _ = lookup(CountingTeacher(), data, cache)
    (path,) = cache.root.glob("*.safetensors")
    save_file({"pooled": torch.zeros_like(original["pooled"])}, str(path), metadata={"teacher_seconds": "1.0"})
    teacher = CountingTeacher()
    again, event = lookup(teacher, data, cache)
    assert not event.hit and teacher.images_seen == 50 and torch.equal(again["pooled"], original["pooled"])


def probe_bench(cache_dir: Path):  # noqa: ANN201
    """A Workbench whose 'counting' teacher is the tiny one above (no weights to load)."""
    from bench.run.context import RunContext
    from bench.run.workbench import Workbench

    bench = Workbench(RunContext(cache_dir=cache_dir, device="cpu"))
    bench._teachers["counting"] = CountingTeacher()
    return bench


def probe_file(cache: FeatureCache) -> Path:
    from safetensors import safe_open

    for path in cache.root.glob("*.safetensors"):
        with safe_open(str(path), framework="pt") as handle:
            if "test_acc" in handle.keys():  # noqa: SIM118
                return path
    raise AssertionError("no probe file in the cache")


@pytest.fixture(scope="module")
def clean_probe(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """One probe fitted into a cache directory that each test copies: (cache dir, data, result)."""
    root = tmp_path_factory.mktemp("probe-cache")
    data = load_dataset("digits", DataConfig(train_limit=50, val_limit=20, test_limit=30, image_size=16))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return root, data, probe_bench(root).probe("counting", data)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("damage", ["randomised bytes", "impossible accuracy", "non-finite logits"])
def test_damaged_probe_cache_is_quarantined_and_refitted(tmp_path: Path, clean_probe, damage: str) -> None:
    import shutil

    root, data, clean = clean_probe
    assert 0.0 <= clean.test_acc <= 1.0
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    cache = FeatureCache(tmp_path)
    path = probe_file(cache)
    if damage == "randomised bytes":
        randomise_tensor_bytes(path)
    else:  # correctly hashed, wrong values: only the bounds check can tell
        tensors, metadata = cache.load(path.stem)
        if damage == "impossible accuracy":
            tensors["test_acc"] = torch.tensor(-1.9e23)
        else:
            tensors["logits.test"] = torch.full_like(tensors["logits.test"], float("nan"))
        cache.save(path.stem, tensors, metadata)
    again = probe_bench(tmp_path).probe("counting", data)
    assert (again.test_acc, again.val_acc, again.weight_decay) == (clean.test_acc, clean.val_acc, clean.weight_decay)
    assert all(torch.equal(again.logits[split], clean.logits[split]) for split in ("train", "val", "test"))
    assert len(quarantined(cache)) == 1


def test_a_long_teacher_pass_says_its_images_per_second(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.teacher_outputs.features import PassRate

    rate = PassRate("teacher t", 1000, every_s=0.0)
    line = rate.advance(250)
    assert line is not None and line.startswith("teacher t: 250/1000 images, ") and line.endswith(" images/s")
    assert line in capsys.readouterr().err
    quiet = PassRate("teacher t", 1000, every_s=3600.0)
    assert quiet.advance(500) is None and capsys.readouterr().err == ""  # short passes print nothing


class TwoTapTeacher(CountingTeacher):
    """Taps 'pooled' and 'feature_map' of one conv; records the taps of every pass (one pass per batch)."""

    taps = ("pooled", "feature_map")

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[str, ...]] = []

    def features(self, images, taps):  # noqa: ANN001, ANN201
        self.asked.append(tuple(taps))
        self.images_seen += len(images)
        fmap = self.encoder[0](images)
        return {tap: fmap.mean(dim=(2, 3)) if tap == "pooled" else fmap for tap in taps}


def test_each_tap_is_cached_on_its_own_so_a_second_tap_runs_the_teacher_only_for_it(tmp_path: Path, data) -> None:
    teacher = TwoTapTeacher()
    first, event1 = lookup(teacher, data, FeatureCache(tmp_path), taps=("pooled",))
    assert not event1.hit and set(teacher.asked) == {("pooled",)}
    teacher.asked.clear()
    both, event2 = lookup(teacher, data, FeatureCache(tmp_path), taps=("pooled", "feature_map"))
    assert not event2.hit and set(teacher.asked) == {("feature_map",)} and teacher.images_seen == 100
    assert torch.equal(both["pooled"], first["pooled"]) and both["feature_map"].shape[:2] == (50, 8)
    teacher.asked.clear()
    cache = FeatureCache(tmp_path)
    alone, event3 = lookup(teacher, data, cache, taps=("feature_map",))
    assert event3.hit and teacher.asked == [] and cache.hits == 1 and cache.misses == 0
    assert torch.equal(alone["feature_map"], both["feature_map"])
    assert event3.teacher_seconds == pytest.approx(event2.teacher_seconds, rel=1e-3)  # the pass that wrote it
    assert len(list(cache.root.glob("*.safetensors"))) == 2  # one entry per tap


def test_a_pass_for_several_missing_taps_runs_the_teacher_once_and_writes_an_entry_each(tmp_path: Path,
                                                                                         data) -> None:
    teacher = TwoTapTeacher()
    cache = FeatureCache(tmp_path)
    _, event = lookup(teacher, data, cache, taps=("pooled", "feature_map"))
    assert not event.hit and teacher.images_seen == 50 and set(teacher.asked) == {("feature_map", "pooled")}
    assert len(list(cache.root.glob("*.safetensors"))) == 2
    _, hit = lookup(teacher, data, FeatureCache(tmp_path), taps=("pooled", "feature_map"))
    assert hit.hit and teacher.images_seen == 50
    assert hit.teacher_seconds == pytest.approx(event.teacher_seconds, rel=1e-3)  # one pass, counted once


@pytest.mark.usefixtures("one_thread")
def test_teacher_pass_over_a_view_in_chunks_matches_the_whole_batch_pass(data) -> None:
    from bench.data.splits import Split
    from bench.teacher_outputs.features import run_teacher

    teacher, device = TwoTapTeacher(), torch.device("cpu")
    preprocess = teacher.preprocess
    taps = ["feature_map", "pooled"]
    chunked = run_teacher(teacher, data.train, preprocess, taps, device, batch_size=7)  # a ragged last batch
    copy = Split(np.asarray(data.train.images), data.train.labels)
    whole = run_teacher(teacher, copy, preprocess, taps, device, batch_size=len(copy))
    assert len(teacher.asked) == 8 + 1
    for tap in taps:
        assert chunked[tap].shape == whole[tap].shape and chunked[tap].dtype == torch.float32
        assert torch.allclose(chunked[tap], whole[tap], atol=1e-6, rtol=0)


def test_workbench_asking_a_second_tap_later_runs_the_teacher_only_for_it(tmp_path: Path, data) -> None:
    from bench.run.context import RunContext
    from bench.run.workbench import Workbench

    teacher = TwoTapTeacher()

    def bench() -> Workbench:  # a new process each time, one cache directory
        workbench = Workbench(RunContext(cache_dir=tmp_path, device="cpu"))
        workbench._teachers["two-tap"] = teacher
        return workbench

    bench().teacher_outputs("two-tap", data, ("pooled",))
    teacher.asked.clear()
    outputs = bench().teacher_outputs("two-tap", data, ("pooled", "feature_map"))
    assert set(teacher.asked) == {("feature_map",)} and not any(event.hit for event in outputs.events)
    assert {split: len(outputs.features[split]["feature_map"]) for split in ("train", "val", "test")} == data.sizes()
    teacher.asked.clear()
    again = bench().teacher_outputs("two-tap", data, ("feature_map",))
    assert teacher.asked == [] and all(event.hit for event in again.events)


def test_a_read_only_split_is_hashed_once_per_process_and_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.data.imagecache import ImageView
    from bench.data.splits import Split
    from bench.teacher_outputs import features
    from bench.teacher_outputs.features import split_fingerprint

    base = np.random.default_rng(0).integers(0, 256, size=(40, 6, 6, 3), dtype=np.uint8)
    writable = Split(ImageView(base.copy(), np.arange(30)), np.arange(30) % 3)
    base.flags.writeable = False  # as the decoded-image memmap is opened
    split = Split(ImageView(base, np.arange(30)), np.arange(30) % 3)
    first = split_fingerprint(split)
    assert first == split_fingerprint(writable)  # the memo does not change the value

    def no_reading(*args: object) -> int:
        raise AssertionError("hashed the pixels again")

    monkeypatch.setattr(features, "chunk_rows", no_reading)
    assert split_fingerprint(Split(ImageView(base, np.arange(30)), np.arange(30) % 3)) == first
    for other in (Split(ImageView(base, np.arange(1, 31)), np.arange(30) % 3),  # other rows
                  Split(ImageView(base, np.arange(30)), np.arange(30) % 2),  # other labels
                  writable):  # a writable base may change in place: always hashed
        with pytest.raises(AssertionError, match="hashed the pixels again"):
            split_fingerprint(other)


def test_cpu_teacher_batches_shrink_for_large_inputs_and_gpu_batches_do_not() -> None:
    from bench.teacher_outputs.features import TEACHER_BATCH, teacher_batch_size

    cpu = torch.device("cpu")
    assert teacher_batch_size(cpu, 64) == teacher_batch_size(cpu, 112) == TEACHER_BATCH  # small inputs: as before
    assert teacher_batch_size(cpu, 224) == TEACHER_BATCH // 4 and teacher_batch_size(cpu, 4096) == 1
    assert teacher_batch_size(torch.device("cuda"), 224) == TEACHER_BATCH  # GPU activations are not host RAM
