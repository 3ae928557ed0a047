"""Grid YAML -> validated list of ExperimentSpecs (config is data checked at the edge)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import field_validator

from bench.config.base import (
    CHOICE_FIELDS,
    Epochs,
    Scalar,
    Seed,
    SweepModel,
    as_list,
    non_empty_list,
    read_yaml,
    validate_config,
)
from bench.config.shapes import check_cells
from bench.core.errors import BenchError
from bench.core.knobs import EPOCHS, Knob, defaults_of, name_problem
from bench.core.names import DATA_SEED_FIELDS, HEAD, IMAGE, RETRIEVAL, TEACHER_VIEW_FIELDS
from bench.core.protocol import PROTOCOL_KNOBS, protocol_hparams, protocol_problem
from bench.core.registry import nearest_names
from bench.core.spec import ExperimentSpec
from bench.core.taps import POOLED

TRAIN_KNOBS: dict[str, Knob] = {  # read by bench/run/train.py (AdamW and the batch loader)
    "lr": Knob(3e-3, float, gt=0, le=1e9, help="AdamW learning rate; a diverging one fails its run"),
    "weight_decay": Knob(5e-4, float, ge=0, le=1, help="AdamW weight decay"),
    "batch_size": Knob(128, int, ge=1, le=65536, help="training batch size"),
}
TRAIN_DEFAULTS: dict[str, Any] = defaults_of(TRAIN_KNOBS)
RECIPE_EPOCHS = "epochs"  # a recipe may also set its student's epoch budget
TRAINER = "the trainer"


class GridModel(SweepModel):
    """A grid file: the shared fields, multiplied over seeds and epoch budgets."""

    seeds: list[Seed] = [0]
    epochs: list[Epochs] = [10]
    data_variants: list[dict[str, Any]] = []  # each: `data:` fields that replace the shared ones for its cells
    seed_axes: dict[str, list[Seed]] = {}  # data seeds varied like `seeds` (split_seed, labeled_seed): averaged over

    @field_validator("seeds", "epochs", mode="before")
    @classmethod
    def _listify_runs(cls, value: Any) -> Any:
        return non_empty_list(value)

    @field_validator("seed_axes", mode="before")
    @classmethod
    def _known_axes(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        for name in value:
            if name not in DATA_SEED_FIELDS:
                raise ValueError(f"{name!r} is not a seed axis; known: {', '.join(DATA_SEED_FIELDS)}")
        return {name: non_empty_list(seeds) for name, seeds in value.items()}


@dataclass(frozen=True)
class Grid:
    """A validated grid: its name, source file, specs and per-teacher weights paths."""

    name: str
    path: Path | None
    specs: tuple[ExperimentSpec, ...]
    weights: dict[str, str]


def load_grid(path: Path, database_url: str | None = None) -> Grid:
    """Read, validate and expand a grid file; every problem is one BenchError line. `run:` teachers (trained runs,
    bench/config/run_teachers.py) are looked up in `database_url`."""
    from bench.config.run_teachers import resolve_run_teachers

    raw = read_yaml(path, "grid")
    if isinstance(raw, dict):
        raw = resolve_run_teachers(raw, path, database_url)
    return expand_grid(validate_config(raw, path, GridModel, "grid"), path)


def expand_grid(model: GridModel, path: Path | None) -> Grid:
    """Check names and compatibility, multiply the lists, keep each spec's relevant hparams."""
    where = f"{path}: " if path else ""
    name = checked_name(model.name or (path.stem if path else "grid"), where)
    check_sweep(model, where, "grid")
    variants = seed_axis_variants(data_variants(model, where), model, where)
    cells = len(variants) * math.prod(len(as_list(v)) for v in [*(getattr(model, f) for f in CHOICE_FIELDS),
                                                                model.seeds, model.epochs, *model.hparams.values()])
    if cells > model.cell_limit:
        raise BenchError(f"{where}field 'cell_limit': the grid multiplies out to {cells} cells, more than its "
                         f"cell_limit {model.cell_limit}; shrink the lists or set cell_limit: {cells} on purpose")
    specs: dict[str, ExperimentSpec] = {}
    for variant in variants:
        for spec in sweep_specs(variant, model.seeds, model.epochs, where):
            specs.setdefault(spec.key, spec)  # a method that reads no teacher output runs once for all views
    return Grid(name, path, tuple(specs.values()), dict(model.weights))


def data_variants(model: GridModel, where: str) -> list[GridModel]:
    """The grid once per entry of `data_variants` (its fields replacing the shared `data:` ones), or as it is."""
    from pydantic import ValidationError

    from bench.config.base import DataModel

    if not model.data_variants:
        return [model]
    variants = []
    shared = model.data.model_dump(exclude_unset=True)
    for number, override in enumerate(model.data_variants):
        if not override:
            raise BenchError(f"{where}field 'data_variants[{number}]': an empty variant repeats the shared data; "
                             "give the fields it changes")
        try:
            data = DataModel.model_validate({**shared, **override})
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            raise BenchError(f"{where}field 'data_variants[{number}].{field}': {first['msg']}") from None
        if data.labeled_seed is not None and data.labeled_limit is None:
            raise BenchError(f"{where}field 'data_variants[{number}].labeled_seed': it picks the rows labeled_limit "
                             "keeps labelled; this variant has no labeled_limit: set one or drop labeled_seed")
        variants.append(model.model_copy(update={"data": data}))
    return variants


def seed_axis_variants(variants: list[GridModel], model: GridModel, where: str) -> list[GridModel]:
    """Each variant once per combination of the `seed_axes` values (data seeds a report averages over like `seeds`);
    the axis fields must not be set elsewhere, and labeled_seed needs labeled_limit in every variant."""
    if not model.seed_axes:
        return variants
    names = list(model.seed_axes)
    for name in names:
        fixed = [v for v in variants if name in v.data.model_dump(exclude_unset=True)]
        if fixed:
            raise BenchError(f"{where}field 'seed_axes.{name}': data.{name} is also set (in data: or data_variants); "
                             "give it in one place")
        if name == "labeled_seed" and any(v.data.labeled_limit is None for v in variants):
            raise BenchError(f"{where}field 'seed_axes.labeled_seed': the labeled subset exists only under "
                             "data.labeled_limit; set it or drop the axis")
    combined = []
    for variant in variants:
        for values in itertools.product(*(model.seed_axes[name] for name in names)):
            data = variant.data.model_copy(update=dict(zip(names, values, strict=True)))
            combined.append(variant.model_copy(update={"data": data}))
    return combined


def checked_name(name: str, where: str) -> str:
    """The grid or study name (from the file or its file name) if the database can store and show it."""
    problem = name_problem(name)
    if problem:
        raise BenchError(f"{where}field 'name': {name[:40]!r}: {problem} (name the file or set name:)")
    return name


def check_sweep(model: SweepModel, where: str, what: str) -> None:
    """The checks a `what` (grid or study) file shares: names, weights, hparams, method pairs, teacher reference."""
    from bench.core.registries import registries

    regs = registries()
    for field_name in CHOICE_FIELDS:
        registry = regs[f"{field_name}s"]
        for name in getattr(model, field_name):
            try:
                registry.check(name)
            except BenchError as error:
                raise BenchError(f"{where}field {field_name!r}: {error}") from None
    for teacher in model.weights:
        if teacher not in model.teacher:
            raise BenchError(f"{where}field 'weights': {teacher!r} is not one of this {what}'s teachers")
    _check_hparams(model, regs, where, what)
    _check_dataset_methods(model, regs, where)
    _check_teacher_reference(model, regs, where)


def sweep_specs(model: SweepModel, seeds: list[int], epochs_list: list[int], where: str) -> list[ExperimentSpec]:
    """Every combination's spec (hparams a spec does not use left out), each checked for compatibility."""
    from bench.core.registries import registries

    regs = registries()
    base_data = model.data.config().as_dict()
    specs: dict[str, ExperimentSpec] = {}
    hparam_names = list(model.hparams)
    hparam_values = [as_list(model.hparams[name]) for name in hparam_names]
    for teacher, student, method, dataset, seed, epochs, values in itertools.product(
        model.teacher, model.student, model.method, model.dataset, seeds, epochs_list,
        itertools.product(*hparam_values),
    ):
        relevant = relevant_defaults(regs, student, method)
        data = _method_data(regs, student, method, base_data)
        recipe = model.recipes.get(student, {})
        given = dict(zip(hparam_names, values, strict=True))
        given.update({k: v for k, v in recipe.items() if k != RECIPE_EPOCHS})  # the student's own recipe wins
        chosen = {k: v for k, v in given.items() if k in relevant}
        problem = protocol_problem(given)
        if problem:
            raise BenchError(f"{where}field 'hparams': {problem}")
        spec = ExperimentSpec.create(
            teacher=teacher, student=student, method=method, dataset=dataset,
            hparams={**relevant, **chosen, **protocol_hparams(given)}, data=data,
            epochs=recipe.get(RECIPE_EPOCHS, epochs), seed=seed,
        )
        specs.setdefault(spec.key, spec)
    _check_compatibility(list(specs.values()), regs, where)
    check_cells(specs.values(), where)  # heads vs width, patch vs image, layer pairs: built on the meta device
    return list(specs.values())


def _method_data(regs: dict[str, Any], student: str, method: str, data: dict[str, Any]) -> dict[str, Any]:
    """A standalone student trained without a teacher (scratch) has no teacher views: its augmentation draws
    fresh each batch (mixup: online), so one run serves every teacher_views setting of its grid. (A head student
    reads the teacher's features of its views even from scratch.)"""
    if (regs["methods"].entry(method).card.family != "baseline" or data.get("teacher_views", "fixed") == "fixed"
            or regs["students"].entry(student).card.kind == HEAD):
        return data
    plain = {key: value for key, value in data.items() if key not in TEACHER_VIEW_FIELDS}
    return {**plain, "teacher_views": "online"} if data.get("augment") == "mixup" else plain


def scratch_twin(spec: ExperimentSpec) -> ExperimentSpec:
    """The same student, data, epochs and seed trained from scratch, sharing every hparam scratch knows (lr, batch,
    the student's own): the baseline a study's `final.scratch` arm pairs with its best trial."""
    from bench.core.names import BASELINE_METHOD
    from bench.core.registries import registries

    relevant = relevant_defaults(registries(), spec.student, BASELINE_METHOD)
    hparams = {name: spec.hparams_dict.get(name, default) for name, default in relevant.items()}
    return ExperimentSpec.create(teacher=spec.teacher, student=spec.student, method=BASELINE_METHOD,
                                 dataset=spec.dataset, hparams=hparams,
                                 data=_method_data(registries(), spec.student, BASELINE_METHOD, spec.data_dict),
                                 epochs=spec.epochs, seed=spec.seed)


def relevant_defaults(regs: dict[str, Any], student: str, method: str) -> dict[str, Any]:
    """Training defaults plus the student's and the method's own hyperparameter defaults."""
    return {
        **TRAIN_DEFAULTS,
        **regs["students"].get(student).defaults,
        **regs["methods"].get(method).defaults,
    }


def knob_owners(regs: dict[str, Any], students: list[str], methods: list[str]) -> dict[str, list[tuple[str, Knob]]]:
    """Each hparam name -> (who uses it, its declaration) for the trainer and these students and methods."""
    owners: dict[str, list[tuple[str, Knob]]] = {name: [(TRAINER, knob)]
                                                 for name, knob in {**TRAIN_KNOBS, **PROTOCOL_KNOBS}.items()}
    for registry, names in ((regs["students"], students), (regs["methods"], methods)):
        for owner in names:
            for name, knob in registry.get(owner).knobs.items():
                owners.setdefault(name, []).append((owner, knob))
    return owners


def unknown_hparam(where: str, field: str, name: str, known: list[str], users: str) -> BenchError:
    """'field 'hparams.temprature': no student or method in this grid uses it; did you mean: temperature?'."""
    close = nearest_names(name, sorted(known))
    hint = f"did you mean: {', '.join(close)}?" if close else f"known: {', '.join(sorted(known))}"
    return BenchError(f"{where}field {field!r}: no student or method in this {users} uses it; {hint}")


def check_value(where: str, field: str, name: str, value: Any, owners: list[tuple[str, Knob]]) -> None:
    """`value` must be valid for every knob named `name` that will read it."""
    if not isinstance(value, Scalar):
        raise BenchError(f"{where}field {field!r}: {value!r} is not a single value (number, string or bool)")
    for owner, knob in owners:
        problem = knob.problem(value, name)
        if problem:
            raise BenchError(f"{where}field {field!r}: {problem} (used by {owner})")


def _check_recipes(model: SweepModel, owners: dict[str, list[tuple[str, Knob]]], where: str, what: str) -> None:
    """`recipes`: each key one of the file's students, each value a valid single value of a known hparam."""
    for student, recipe in model.recipes.items():
        if student not in model.student:
            raise BenchError(f"{where}field 'recipes.{student}': not one of this {what}'s students "
                             f"({', '.join(model.student)})")
        for name, value in (recipe or {}).items():
            field = f"recipes.{student}.{name}"
            if name == RECIPE_EPOCHS:
                problem = EPOCHS.problem(value, name)
                if problem:
                    raise BenchError(f"{where}field {field!r}: {problem}")
                continue
            if name not in owners:
                raise unknown_hparam(where, field, name, [*owners, RECIPE_EPOCHS], what)
            check_value(where, field, name, value, owners[name])


def _check_hparams(model: SweepModel, regs: dict[str, Any], where: str, what: str) -> None:
    owners = knob_owners(regs, model.student, model.method)
    _check_recipes(model, owners, where, what)
    for name, values in model.hparams.items():
        field = f"hparams.{name}"
        if name not in owners:
            raise unknown_hparam(where, field, name, list(owners), what)
        if values == []:
            raise BenchError(f"{where}field {field!r}: an empty list runs nothing; give at least one value")
        for value in as_list(values):
            check_value(where, field, name, value, owners[name])


def _check_compatibility(specs: list[ExperimentSpec], regs: dict[str, Any], where: str) -> None:
    """Each spec's student gives what its method reads, and its teacher has the taps both need."""
    from bench.run.parts import incompatibility

    for spec in specs:
        teacher = regs["teachers"].entry(spec.teacher)
        problem = incompatibility(spec.student, spec.method, spec.hparams_dict, spec.teacher,
                                  teacher.card.taps, teacher.card.modality)
        if problem:
            raise BenchError(f"{where}{problem}")
        _check_views(spec, regs, where)
        if spec.data_dict.get("teacher_reference") == "finetune":  # only its pooled features and logits are kept
            problem = incompatibility(spec.student, spec.method, spec.hparams_dict, spec.teacher, (POOLED,), IMAGE)
            if problem:
                raise BenchError(f"{where}field 'data.teacher_reference': a fine-tuned teacher gives only its "
                                 f"pooled features and logits; {problem}")


def _check_views(spec: ExperimentSpec, regs: dict[str, Any], where: str) -> None:
    """data.augment and data.teacher_views together: what has a teacher target for each augmented image."""
    data = spec.data_dict
    augment, views = data.get("augment", "none"), data.get("teacher_views", "fixed")
    if views == "fixed":
        if augment == "mixup":
            raise BenchError(f"{where}field 'data.augment': a mixed image has no target among the fixed teacher "
                             "outputs of the un-augmented images; set teacher_views: cached or online")
        if augment != "none" and regs["students"].entry(spec.student).card.kind == HEAD:
            raise BenchError(f"{where}field 'data.augment': {augment!r} augments images, and student "
                             f"{spec.student!r} reads the fixed teacher features; set teacher_views: cached (or "
                             "online), augment: none, or drop the head student")
        extra = [name for name in TEACHER_VIEW_FIELDS[1:] if name in data]
        if extra:
            raise BenchError(f"{where}field 'data.{extra[0]}' applies to teacher_views: cached; with fixed views it "
                             "changes nothing: drop it or set teacher_views")
        return
    if augment == "none":
        raise BenchError(f"{where}field 'data.teacher_views': {views!r} labels augmented views, and augment is none "
                         "(every view is the un-augmented image); set augment (flip, crop-flip, crop-pad-flip, mixup) "
                         "or teacher_views: fixed")
    if views == "online":
        extra = [name for name in TEACHER_VIEW_FIELDS[1:] if name in data]
        if extra:
            raise BenchError(f"{where}field 'data.{extra[0]}' applies to teacher_views: cached; online views are "
                             "drawn by each run's seed: drop it")
    if regs["datasets"].entry(spec.dataset).card.task == RETRIEVAL:
        raise BenchError(f"{where}field 'data.teacher_views': {views!r} serves classification datasets; "
                         f"{spec.dataset!r} is an image-text dataset: use teacher_views: fixed")


def _check_few_labels(model: SweepModel, regs: dict[str, Any], where: str) -> None:
    """Fine-tuning and labeled_limit need class labels; methods reading every train row's label cannot run."""
    data = model.data
    unfreeze = data.finetune_unfreeze
    if unfreeze != "all" and (isinstance(unfreeze, bool) or not isinstance(unfreeze, int) or unfreeze < 0):
        raise BenchError(f"{where}field 'data.finetune_unfreeze': {unfreeze!r} is not 'all' or a block count >= 0")
    if data.labeled_seed is not None and data.labeled_limit is None:
        raise BenchError(f"{where}field 'data.labeled_seed': it picks the rows data.labeled_limit keeps labelled; "
                         "without a labeled_limit it changes nothing: set one or drop labeled_seed")
    uses = [name for name, used in (("teacher_reference: finetune", data.teacher_reference == "finetune"),
                                    ("labeled_limit", data.labeled_limit is not None)) if used]
    if not uses:
        return
    for dataset in model.dataset:
        if regs["datasets"].entry(dataset).card.task == RETRIEVAL:
            raise BenchError(f"{where}field 'data.{uses[0].split(':')[0]}': {uses[0]} needs a classification "
                             f"dataset; {dataset!r} is image-text retrieval")
    for method in model.method:
        if data.labeled_limit is not None and regs["methods"].get(method).reads_train_labels:
            raise BenchError(f"{where}field 'data.labeled_limit': method {method!r} reads every train row's "
                             "label; drop the method or the limit")


def _check_teacher_reference(model: SweepModel, regs: dict[str, Any], where: str) -> None:
    """Zero-shot targets need a text encoder: only image-text teachers have one."""
    _check_few_labels(model, regs, where)
    if model.data.teacher_reference != "zero-shot":
        return
    for teacher in model.teacher:
        if not regs["teachers"].entry(teacher).card.image_text:
            raise BenchError(
                f"{where}field 'data.teacher_reference': 'zero-shot' needs an image-text teacher (CLIP, SigLIP, "
                f"BLIP); {teacher!r} has no text encoder, so use 'probe'"
            )


def _check_dataset_methods(model: SweepModel, regs: dict[str, Any], where: str) -> None:
    """Image-text datasets take the joint-space methods, classification datasets the others."""
    for dataset, method in itertools.product(model.dataset, model.method):
        image_text = regs["datasets"].entry(dataset).card.task == RETRIEVAL
        if image_text != regs["methods"].entry(method).card.joint_space:
            raise BenchError(
                f"{where}method {method!r} does not fit dataset {dataset!r}: image-text datasets take the "
                "joint-space methods (joint-cosine, joint-contrastive), classification datasets the others"
            )
