"""Grid YAML -> validated list of ExperimentSpecs (config is data checked at the edge)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, field_validator

from bench.data import DATA_KNOBS, DataConfig
from bench.errors import BenchError
from bench.knobs import EPOCHS, SEED, Knob, defaults_of, validator
from bench.names import RETRIEVAL
from bench.registry import nearest_names
from bench.spec import ExperimentSpec

Scalar = str | int | float | bool
ConfigModel = TypeVar("ConfigModel", bound=BaseModel)
TRAIN_KNOBS: dict[str, Knob] = {  # read by bench/run/train.py (AdamW and the batch loader)
    "lr": Knob(3e-3, float, gt=0, le=1e9, help="AdamW learning rate; a diverging one fails its run"),
    "weight_decay": Knob(5e-4, float, ge=0, le=1, help="AdamW weight decay"),
    "batch_size": Knob(128, int, ge=1, le=65536, help="training batch size"),
}
TRAIN_DEFAULTS: dict[str, Any] = defaults_of(TRAIN_KNOBS)
TRAINER = "the trainer"
Seed = Annotated[int, BeforeValidator(validator(SEED, "seed"))]
Epochs = Annotated[int, BeforeValidator(validator(EPOCHS, "epochs"))]


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


def non_empty_list(value: Any) -> Any:
    """A scalar becomes a one-item list; an empty list is refused (it would run nothing)."""
    if value == []:
        raise ValueError("an empty list runs nothing; give at least one value")
    return _as_list(value)


class DataModel(BaseModel):
    """The grid's `data:` mapping; each field is checked against bench.data.DATA_KNOBS."""

    model_config = ConfigDict(extra="forbid")
    image_size: int | None = None
    student_image_size: int | None = None
    train_limit: int | None = None
    val_limit: int | None = None
    test_limit: int | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    decode_size: int | None = None
    skip_bad: bool = False
    label_set: str = "fine"
    root: str | None = None
    teacher_reference: Literal["probe", "zero-shot"] = "probe"
    kd_targets: Literal["oof", "in-sample"] = "oof"

    @field_validator(*DATA_KNOBS, mode="before")
    @classmethod
    def _in_range(cls, value: Any, info: Any) -> Any:
        return validator(DATA_KNOBS[info.field_name], info.field_name)(value)


class GridModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    teacher: list[str]
    student: list[str]
    method: list[str]
    dataset: list[str]
    seeds: list[Seed] = [0]
    epochs: list[Epochs] = [10]
    data: DataModel = DataModel()
    hparams: dict[str, Any] = {}  # checked against the knobs of the grid's students, methods and trainer
    weights: dict[str, str] = {}

    @field_validator("teacher", "student", "method", "dataset", "seeds", "epochs", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return non_empty_list(value)


@dataclass(frozen=True)
class Grid:
    """A validated grid: its name, source file, specs and per-teacher weights paths."""

    name: str
    path: Path | None
    specs: tuple[ExperimentSpec, ...]
    weights: dict[str, str]


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if not isinstance(key, list | dict) and key in seen:  # unhashable keys: SafeLoader refuses them
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            if not isinstance(key, list | dict):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path, what: str = "grid") -> Any:
    """Parse a YAML `what` file; a missing file, a directory, non-UTF-8 bytes or bad YAML is one BenchError line."""
    if path.is_dir():
        raise BenchError(f"{path}: is a directory, not a {what} file")
    if not path.is_file():
        raise BenchError(f"{what} file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise BenchError(f"{path}: not a UTF-8 text {what} file (bad byte at offset {error.start})") from None
    except OSError as error:
        raise BenchError(f"{path}: cannot read the {what} file: {error.strerror or error}") from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise BenchError(f"{path}: invalid YAML{where}: {problem}") from None


def _fields_at(model: type[BaseModel], parents: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model that the location `parents` points into."""
    for part in parents:
        annotation = model.model_fields[str(part)].annotation if str(part) in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def config_error(path: Path, error: ValidationError, model: type[BaseModel]) -> str:
    """One line for a config file's first problem; a typo'd field (often the cause of a missing one) first."""
    errors = error.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    field = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] not in ("value_error", "missing", "extra_forbidden"):
        shown = repr(first.get("input"))
        message = f"{shown if len(shown) <= 60 else shown[:57] + '...'}: {message}"
    allowed = _fields_at(model, first["loc"][:-1]) if first["type"] == "extra_forbidden" else []
    if allowed:
        message = f"unknown field; allowed: {', '.join(allowed)}"
    return f"{path}: field {field!r}: {message}"


def load_config(path: Path, model: type[ConfigModel], what: str) -> ConfigModel:
    """Read a YAML `what` file and validate it against `model`; every problem is one BenchError line."""
    raw = read_yaml(path, what)
    if not isinstance(raw, dict):
        raise BenchError(f"{path}: a {what} file must be a mapping of fields (teacher, student, ...)")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise BenchError(config_error(path, error, model)) from None


def load_grid(path: Path) -> Grid:
    """Read, validate and expand a grid file; every problem is one BenchError line."""
    return expand_grid(load_config(path, GridModel, "grid"), path)


def expand_grid(model: GridModel, path: Path | None) -> Grid:
    """Check names and compatibility, multiply the lists, keep each spec's relevant hparams."""
    from bench.registries import registries

    where = f"{path}: " if path else ""
    regs = registries()
    for field_name, registry in (("teacher", regs["teachers"]), ("student", regs["students"]),
                                 ("method", regs["methods"]), ("dataset", regs["datasets"])):
        for name in getattr(model, field_name):
            try:
                registry.check(name)
            except BenchError as error:
                raise BenchError(f"{where}field {field_name!r}: {error}") from None
    for teacher in model.weights:
        if teacher not in model.teacher:
            raise BenchError(f"{where}field 'weights': {teacher!r} is not one of this grid's teachers")
    _check_hparams(model, regs, where)
    _check_dataset_methods(model, regs, where)
    _check_teacher_reference(model, regs, where)
    data = DataConfig(**model.data.model_dump())
    specs: dict[str, ExperimentSpec] = {}
    hparam_names = list(model.hparams)
    hparam_values = [_as_list(model.hparams[name]) for name in hparam_names]
    for teacher, student, method, dataset, seed, epochs, values in itertools.product(
        model.teacher, model.student, model.method, model.dataset, model.seeds, model.epochs,
        itertools.product(*hparam_values),
    ):
        relevant = relevant_defaults(regs, student, method)
        chosen = {k: v for k, v in zip(hparam_names, values, strict=True) if k in relevant}
        spec = ExperimentSpec.create(
            teacher=teacher, student=student, method=method, dataset=dataset,
            hparams={**relevant, **chosen}, data=data.as_dict(), epochs=epochs, seed=seed,
        )
        specs.setdefault(spec.key, spec)
    _check_compatibility(list(specs.values()), regs, where)
    name = model.name or (path.stem if path else "grid")
    return Grid(name, path, tuple(specs.values()), dict(model.weights))


def relevant_defaults(regs: dict[str, Any], student: str, method: str) -> dict[str, Any]:
    """Training defaults plus the student's and the method's own hyperparameter defaults."""
    return {
        **TRAIN_DEFAULTS,
        **regs["students"].get(student).defaults,
        **regs["methods"].get(method).defaults,
    }


def knob_owners(regs: dict[str, Any], students: list[str], methods: list[str]) -> dict[str, list[tuple[str, Knob]]]:
    """Each hparam name -> (who uses it, its declaration) for the trainer and these students and methods."""
    owners: dict[str, list[tuple[str, Knob]]] = {name: [(TRAINER, knob)] for name, knob in TRAIN_KNOBS.items()}
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


def _check_hparams(model: GridModel, regs: dict[str, Any], where: str) -> None:
    owners = knob_owners(regs, model.student, model.method)
    for name, values in model.hparams.items():
        field = f"hparams.{name}"
        if name not in owners:
            raise unknown_hparam(where, field, name, list(owners), "grid")
        if values == []:
            raise BenchError(f"{where}field {field!r}: an empty list runs nothing; give at least one value")
        for value in _as_list(values):
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


def _check_teacher_reference(model: GridModel, regs: dict[str, Any], where: str) -> None:
    """Zero-shot targets need a text encoder: only image-text teachers have one."""
    if model.data.teacher_reference != "zero-shot":
        return
    for teacher in model.teacher:
        if not regs["teachers"].entry(teacher).card.image_text:
            raise BenchError(
                f"{where}field 'data.teacher_reference': 'zero-shot' needs an image-text teacher (CLIP, SigLIP, "
                f"BLIP); {teacher!r} has no text encoder, so use 'probe'"
            )


def _check_dataset_methods(model: GridModel, regs: dict[str, Any], where: str) -> None:
    """Image-text datasets take the joint-space methods, classification datasets the others."""
    for dataset, method in itertools.product(model.dataset, model.method):
        image_text = regs["datasets"].entry(dataset).card.task == RETRIEVAL
        if image_text != regs["methods"].entry(method).card.joint_space:
            raise BenchError(
                f"{where}method {method!r} does not fit dataset {dataset!r}: image-text datasets take the "
                "joint-space methods (joint-cosine, joint-contrastive), classification datasets the others"
            )
