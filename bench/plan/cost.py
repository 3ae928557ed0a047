"""`bench plan`'s cost estimate per phase: teacher pass, teacher reference, student epochs (all estimates).

Seconds = images / images-per-second. Rates are timed here on a few batches (the real teacher when its weights
are present, else its random-init architecture; the real student, random init), or taken from the cited table
for a named GPU (bench/plan/throughput.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.core.names import BASELINE_METHOD, HEAD
from bench.core.spec import ExperimentSpec
from bench.plan import throughput as tp

NOMINAL_SIZES = {  # official (train pool, test) image counts: a missing dataset's cost is estimated from these
    "tiny-imagenet": (100_000, 10_000), "coco-captions": (118_287, 5_000), "cifar-100": (50_000, 10_000),
    "fashion-mnist": (60_000, 10_000), "digits": (1_437, 360),
}
NATIVE_SIZES = {"tiny-imagenet": 64, "coco-captions": 224, "cifar-100": 32, "fashion-mnist": 28, "digits": 8}
PROBE_SECONDS_PER_IMAGE = 2e-5  # estimate: a logistic-regression probe on cached features (CPU)
FINETUNE_LRS = 1  # a grid's fine-tune tries one lr (data.finetune_lr: teacher_outputs/finetune.py)

NUM_CLASSES = {"tiny-imagenet": 200, "cifar-100": 100, "fashion-mnist": 10, "digits": 10, "coco-captions": 1}
EVAL_SPEEDUP = 3.0  # estimate: an eval (forward-only) image costs a third of a training image


@dataclass(frozen=True)
class Splits:
    train: int
    val: int
    test: int
    labeled: int


def split_sizes(dataset: str, data: dict[str, Any]) -> Splits | None:
    """Train/val/test/labeled image counts from the official sizes and the file's limits (None: unknown)."""
    sizes = NOMINAL_SIZES.get(dataset)
    if sizes is None:
        return None
    pool, test = sizes
    val = round(pool * float(data.get("val_fraction", 0.1)))
    cap = lambda n, key: min(n, data[key]) if data.get(key) else n  # noqa: E731
    train = cap(pool - val, "train_limit")
    return Splits(train, cap(val, "val_limit"), cap(test, "test_limit"), cap(train, "labeled_limit"))


@dataclass
class Rates:
    """Teacher inference and student training images/s, timed once per distinct setting (or from the table)."""

    gpu: str | None
    infos: dict[str, Any]
    weights: dict[str, str]
    sources: set[str] = field(default_factory=set)
    flop_scaled: set[str] = field(default_factory=set)  # networks with no table row, FLOP-scaled from the anchor
    _cache: dict[Any, float | None] = field(default_factory=dict)

    def _note(self, source: str) -> None:
        self.sources.add(source)

    def teacher(self, name: str, size: int) -> float | None:
        key = ("teacher", name, size)
        if key not in self._cache:
            self._cache[key] = self._teacher(name, size)
        return self._cache[key]

    def _teacher(self, name: str, size: int) -> float | None:
        if self.gpu:
            rate = tp.teacher_rate(self.gpu, name, size)
            if rate is None:
                rate = run_teacher_rate(self.gpu, name, self.infos.get(name), self.weights.get(name), size)
                if rate is not None:
                    self.flop_scaled.add(name)
            if rate is not None:
                self._note(f"teacher {name} at {size} px: {rate.images_per_s:.0f} img/s, {rate.source}")
            return rate.images_per_s if rate else None
        info = self.infos.get(name)
        if info is not None and not info.missing:
            from bench.core.registries import TEACHERS

            teacher = TEACHERS.get(name)(self.weights.get(name))
            rate = tp.measure_teacher(teacher, size)
            what = "a random-init stand-in" if teacher.fingerprint == "stand-in" else "its weights"
            self._note(f"teacher {name} at {size} px: {rate:.0f} img/s, measured here ({what})")
            return rate
        arch = tp.TEACHER_ARCH.get(name)
        if arch is None:
            return None
        import timm

        kwargs = {"img_size": size} if "vit" in arch[0] or "beit" in arch[0] else {}
        model = timm.create_model(arch[0], pretrained=False, **kwargs).eval()
        rate = tp.measure_teacher(_TimmFeatures(model), size, batch=4)
        self._note(f"teacher {name} at {size} px: {rate:.0f} img/s, measured here on its random-init "
                   f"architecture {arch[0]} (weights missing)")
        return rate

    def student(self, spec: ExperimentSpec, size: int, shape: tuple[int, ...]) -> float | None:
        key = ("student", spec.student, size, shape, self._own_hparams(spec), spec.dataset)
        if key not in self._cache:
            self._cache[key] = self._student(spec, size, shape)
        return self._cache[key]

    def bundle(self, spec: ExperimentSpec, shape: tuple[int, ...], count: int) -> float | None:
        """Training images/s of `count` such head cells as one stacked bundle, all cells' images counted (a cell's
        share of the bundle's time: its images / this rate), timed here (bundle_sizes); None under --gpu: the
        throughput table has no stacked rates."""
        if self.gpu:
            return None
        key = ("bundle", spec.student, shape, self._own_hparams(spec), spec.dataset, count)
        if key not in self._cache:
            import torch

            students = []
            for seed in range(count):  # each slice its own initialisation, as each cell builds its own
                torch.manual_seed(seed)
                students.append(self._built(spec, 0, shape))
            batch = int(spec.hparams_dict.get("batch_size", 64))
            rate = tp.measure_bundle(students, shape, batch)
            self._note(f"student {spec.student} (head), {count} stacked: {rate:.0f} img/s (all {count} cells' "
                       "images), measured here")
            self._cache[key] = rate
        return self._cache[key]

    def _own_hparams(self, spec: ExperimentSpec) -> tuple:
        """The hparams that change a student's speed: its own knobs and the batch size (not a method's knobs)."""
        from bench.core.registries import STUDENTS

        own = set(STUDENTS.get(spec.student).knobs) | {"batch_size"}
        return tuple(sorted((name, value) for name, value in spec.hparams_dict.items() if name in own))

    def _student(self, spec: ExperimentSpec, size: int, shape: tuple[int, ...]) -> float | None:
        from bench.core.registries import STUDENTS

        head = STUDENTS.entry(spec.student).card.kind == HEAD
        if self.gpu:
            rate = tp.student_rate(self.gpu, spec.student, head, size)
            if rate is None and not head:
                rate = flop_scaled_rate(self.gpu, spec, size)
                if rate is not None:
                    self.flop_scaled.add(spec.student)
            if rate is not None:
                self._note(f"student {spec.student}{'' if head else f' at {size} px'}: "
                           f"{rate.images_per_s:.0f} img/s, {rate.source}")
            return rate.images_per_s if rate else None
        student = self._built(spec, size, shape)
        batch = min(int(spec.hparams_dict.get("batch_size", 64)), 64)
        rate = tp.measure_student(student, shape, batch)
        self._note(f"student {spec.student} ({'head' if head else f'{size} px'}): {rate:.0f} img/s, measured here")
        return rate

    def _built(self, spec: ExperimentSpec, size: int, shape: tuple[int, ...]) -> Any:
        """The run's student as run_spec builds it for this teacher and input (random weights: for timing)."""
        from bench.core.registries import STUDENTS
        from bench.students.base import StudentContext

        head = STUDENTS.entry(spec.student).card.kind == HEAD
        info = self.infos.get(spec.teacher)
        context = StudentContext(NUM_CLASSES.get(spec.dataset, 10), shape[-1] if head else _embed(info), size,
                                 input_shape=shape if head else None, teacher_params=(info and info.params) or 0)
        return STUDENTS.get(spec.student)(context, spec.hparams_dict)


class _TimmFeatures:
    """A random-init timm model dressed as a teacher for measure_teacher."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def parameters(self) -> Any:
        return self.model.parameters()

    def features(self, images: Any, taps: list[str]) -> Any:
        return self.model.forward_features(images)


def _embed(info: Any) -> int:
    return int((info and info.embed_dim) or 768)


def teacher_size(spec: ExperimentSpec, info: Any) -> int:
    """The teacher's input size: data.image_size, else its native size."""
    arch = tp.TEACHER_ARCH.get(spec.teacher)
    native = (info.preprocess.input_size if info is not None and info.preprocess else None) or (arch and arch[1])
    return int(spec.data_dict.get("image_size") or native or 224)


def student_input(spec: ExperimentSpec, info: Any) -> tuple[int, tuple[int, ...]]:
    """(image size, per-sample input shape) of a run's student: images, or the teacher tap a head reads."""
    from bench.core.registries import STUDENTS

    entry = STUDENTS.entry(spec.student)
    size = int(spec.data_dict.get("student_image_size") or NATIVE_SIZES.get(spec.dataset, 32))
    if entry.card.kind != HEAD:
        return size, (3, size, size)
    dim, tokens = _embed(info), (teacher_size(spec, info) // 16) ** 2
    tap = entry.obj.input_taps[0]
    return 0, {"tokens": (tokens, dim), "feature_map": (dim, 7, 7)}.get(tap, (dim,))


def reference_seconds(spec: ExperimentSpec, rates: Rates, info: Any) -> tuple[float | None, float | None]:
    """(teacher pass, teacher reference) seconds of one teacher x dataset x data config."""
    splits = split_sizes(spec.dataset, spec.data_dict)
    rate = rates.teacher(spec.teacher, teacher_size(spec, info))
    if splits is None or not rate:
        return None, None
    images = splits.train + splits.val + splits.test
    passes = images / rate
    data = spec.data_dict
    if data.get("teacher_reference") == "finetune":
        epochs = int(data.get("finetune_epochs", 6))
        per_epoch = splits.labeled / (rate * tp.TRAIN_RATIO) + splits.val / rate
        if rates.gpu:  # small fine-tune batches are launch-bound on a GPU: the measured floor
            per_epoch = max(per_epoch, (splits.labeled + splits.val) * tp.FINETUNE_FLOOR_S)
        per_lr = epochs * per_epoch
        return passes, FINETUNE_LRS * per_lr + passes  # the fine-tuned teacher's features are extracted again
    return passes, splits.train * PROBE_SECONDS_PER_IMAGE


FLOP_ANCHOR = ("resnet", 64)  # the table's standalone row a student without one is scaled from (by FLOPs)


def forward_flops(model: Any, size: int) -> float:
    """FLOPs of one image's forward pass (torch's FLOP counter on a batch of one, CPU)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(torch.zeros(1, 3, size, size))
    return float(counter.get_total_flops())


def _anchor(gpu: str) -> tuple[float, float] | None:
    """(images/s, forward FLOPs per image) of the table's anchor student on `gpu`."""
    from bench.core.registries import STUDENTS
    from bench.students.base import StudentContext

    rate = tp.student_rate(gpu, FLOP_ANCHOR[0], False, FLOP_ANCHOR[1])
    if rate is None:
        return None
    model = STUDENTS.get(FLOP_ANCHOR[0])(StudentContext(10, 0, FLOP_ANCHOR[1]), {})
    return rate.images_per_s, forward_flops(model, FLOP_ANCHOR[1])


def flop_scaled_rate(gpu: str, spec: ExperimentSpec, size: int) -> tp.Rate | None:
    """A standalone student with no table row (the CIFAR nets): the anchor row's rate x anchor FLOPs / its FLOPs.
    An estimate: small nets are launch-bound on a GPU, so it is low for them (the per-step floor still applies)."""
    from bench.core.registries import STUDENTS
    from bench.students.base import StudentContext

    anchor = _anchor(gpu)
    if anchor is None:
        return None
    context = StudentContext(NUM_CLASSES.get(spec.dataset, 10), 0, size)
    ours = forward_flops(STUDENTS.get(spec.student)(context, spec.hparams_dict), size)
    return tp.Rate(anchor[0] * anchor[1] / ours, f"estimate: {FLOP_ANCHOR[0]} at {FLOP_ANCHOR[1]} px on {gpu} "
                   f"scaled by forward FLOPs ({ours / 1e6:.0f} vs {anchor[1] / 1e6:.0f} MFLOPs)")


def estimate_basis(gpu: str | None, flop_scaled: set[str]) -> str:
    """One line saying what the time estimate rests on: rates timed on this CPU, or a named GPU's table rows (measured
    on an H200, scaled to the GPU) with the architectures that have no row FLOP-scaled from the measured anchor."""
    if gpu is None:
        import torch

        return ("estimate basis: CPU, this machine: each student's training steps and each teacher's forward pass "
                f"timed here on a few batches at {torch.get_num_threads()} thread(s), as each of bench run's workers "
                "would take them now (--threads, else the CPUs free of other load divided among the workers; kept "
                "in the timing cache), not a table")
    scaled = sorted(flop_scaled)
    flops = (f"; {len(scaled)} networks with no row ({', '.join(scaled)}) "
             f"FLOP-scaled from the measured {FLOP_ANCHOR[0]} at {FLOP_ANCHOR[1]} px rate (rate x its FLOPs / "
             "theirs)") if scaled else ""
    return (f"estimate basis: GPU {gpu}, not timed here: throughput-table rates {tp.H200_SOURCE}, "
            f"{tp.GPU_SCALE[gpu][1]}{flops}; per-step and per-run floors measured on an H200")


def run_teacher_rate(gpu: str, name: str, info: Any, weights: str | None, size: int) -> tp.Rate | None:
    """A trained-run teacher (`run:`) on a named GPU: the anchor's rate scaled by FLOPs, forward only."""
    from bench.core.registries import TEACHERS

    anchor = _anchor(gpu)
    if not name.startswith("run:") or (info is not None and info.missing) or anchor is None:
        return None
    ours = forward_flops(TEACHERS.get(name)(weights).encoder, size)
    return tp.Rate(anchor[0] * anchor[1] / ours * EVAL_SPEEDUP, f"estimate: {FLOP_ANCHOR[0]} at {FLOP_ANCHOR[1]} px "
                   f"on {gpu} scaled by forward FLOPs ({ours / 1e6:.0f} vs {anchor[1] / 1e6:.0f} MFLOPs), forward "
                   f"only (x{EVAL_SPEEDUP:.0f})")


def bundle_sizes(plan: Any) -> dict[str, int]:
    """Cell key -> the size of the stacked bundle it would train in under `--bundle auto` with one worker (cells that
    share a bundle key, MAX_BUNDLE at most a bundle); cells that train alone are left out, and so is every trial of
    a study (its sampler draws them one at a time: bench/sweep/worker.py bundles grid cells only)."""
    from bench.run.bundle import MAX_BUNDLE, bundle_key

    if plan.kind != "grid":
        return {}
    groups: dict[str, list[str]] = {}
    for spec in plan.runs:
        key = bundle_key(spec)
        if spec.key not in plan.done and key is not None:
            groups.setdefault(key, []).append(spec.key)
    return {cell: len(keys[start:start + MAX_BUNDLE]) for keys in groups.values()
            for start in range(0, len(keys), MAX_BUNDLE) for cell in keys[start:start + MAX_BUNDLE]}


def run_seconds(spec: ExperimentSpec, rates: Rates, info: Any, bundle: int | None = None) -> float | None:
    """A run's student epochs: train images / training rate, plus val each epoch and test once. `bundle`: the
    size of the stacked bundle it trains in (bundle_sizes); its training time is then its share of the stacked
    steps, where they were timed here (val and test are scored per cell, at the single rate)."""
    splits = split_sizes(spec.dataset, spec.data_dict)
    size, shape = student_input(spec, info)
    rate = rates.student(spec, size, shape)
    if splits is None or not rate:
        return None
    train_rate = (rates.bundle(spec, shape, bundle) if bundle else None) or rate
    few = (spec.method == BASELINE_METHOD and spec.data_dict.get("labeled_limit")
           and spec.data_dict.get("budget", "epochs") == "epochs")  # budget steps: the whole train split's steps
    train = splits.labeled if few else splits.train
    seconds = (spec.epochs * (train / train_rate + splits.val / (EVAL_SPEEDUP * rate))
               + splits.test / (EVAL_SPEEDUP * rate))
    if not rates.gpu:
        return seconds  # timed here at the run's own batch size: the per-step cost is in the rate
    steps = spec.epochs * -(-train // int(spec.hparams_dict.get("batch_size", 64)))
    floor = steps * tp.STEP_FLOOR_S["head" if size == 0 else "standalone"] + tp.RUN_FLOOR_S
    rates.sources.add(f"per-step and per-run floors: {tp.FLOOR_SOURCE}")
    return max(seconds, floor)


VIEW_PARAM_BYTES = 4 * 6  # a cached view's parameters: its (2, 3) float32 crop map (mixup: 13 more numbers)


def view_entry(spec: ExperimentSpec) -> tuple | None:
    """What a cached-views run shares its view cache with (teacher, dataset, data), None when it reads no views."""
    data = spec.data_dict
    if data.get("teacher_views", "fixed") != "cached":
        return None
    return spec.teacher, spec.dataset, tuple(sorted((k, str(v)) for k, v in data.items()))


def view_costs(plan: Any, rates: Rates) -> tuple[float | None, float | None]:
    """(teacher seconds on views, cached views' MB on disk) of the cells not done yet: a cached entry's K passes
    over the train split once (its logits: classes floats per view), an online run's teacher pass over every
    train image of every epoch. Estimates: the MB count logits only (a head student's entry adds its tap)."""
    seconds: float | None = 0.0
    megabytes = 0.0
    entries: set[tuple] = set()
    for spec in plan.runs:
        data = spec.data_dict
        mode = data.get("teacher_views", "fixed")
        splits = split_sizes(spec.dataset, data)
        if spec.key in plan.done or mode == "fixed" or splits is None:
            continue
        rate = rates.teacher(spec.teacher, teacher_size(spec, rates.infos.get(spec.teacher)))
        if mode == "online":
            images = spec.epochs * splits.train * plan.repeats
        else:
            entry = view_entry(spec)
            if entry is None or entry in entries:
                continue
            entries.add(entry)
            count = int(data.get("teacher_view_count", 8))
            images = count * splits.train
            per_view = 4 * min(NUM_CLASSES.get(spec.dataset, 1), int(data.get("teacher_view_topk") or 10**9))
            megabytes += count * splits.train * (per_view + VIEW_PARAM_BYTES) / 1e6
        seconds = None if seconds is None or not rate else seconds + images / rate
    return seconds, megabytes


def cell_seconds(plan: Any, rates: Rates, bundle: str = "auto") -> list[float | None]:
    """Student epochs of each cell not done yet; under --bundle auto a bundled cell's share of its bundle's steps
    (bundle_sizes)."""
    sizes = bundle_sizes(plan) if bundle == "auto" else {}
    return [run_seconds(spec, rates, rates.infos.get(spec.teacher), sizes.get(spec.key))
            for spec in plan.runs if spec.key not in plan.done]


def estimate(plan: Any, rates: Rates, bundle: str = "auto") -> dict[str, float | None]:
    """Seconds per phase of a bench.plan.dry_run.Plan's cells not done yet (None: a phase could not be estimated)."""
    totals: dict[str, float | None] = {"teacher pass": 0.0, "teacher reference": 0.0, "student epochs": 0.0}

    def add(phase: str, seconds: float | None) -> None:
        current = totals[phase]
        totals[phase] = None if seconds is None or current is None else current + seconds

    for spec in plan.references:
        if spec.key not in plan.done:
            passes, reference = reference_seconds(spec, rates, rates.infos.get(spec.teacher))
            add("teacher pass", passes)
            add("teacher reference", reference)
    runs = cell_seconds(plan, rates, bundle)
    student = None if None in runs else sum(r for r in runs if r is not None) * plan.repeats
    if student is not None and plan.kind == "study":
        student *= max(0.0, 1 - plan.done_count / max(plan.repeats * len(plan.runs), 1))
    add("student epochs", student)
    views, _ = view_costs(plan, rates)
    if views:  # data.teacher_views cached or online: the teacher's passes over augmented views
        totals["teacher views"] = views
    elif views is None:
        totals["teacher views"] = None
    return totals
