"""Study YAML -> validated StudyModel, and the spec an Optuna trial suggests from it."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from bench.config.base import (
    CHOICE_FIELDS,
    Epochs,
    Scalar,
    Seed,
    SweepModel,
    non_empty_list,
    read_yaml,
    validate_config,
)
from bench.config.grid import (
    TRAINER,
    check_sweep,
    check_value,
    checked_name,
    knob_owners,
    relevant_defaults,
    sweep_specs,
    unknown_hparam,
)
from bench.core.errors import BenchError
from bench.core.knobs import Knob, validator
from bench.core.protocol import PROTOCOL_KNOBS, protocol_hparams, protocol_problem
from bench.core.spec import ExperimentSpec

Metric = Literal["val_acc", "size_mb", "params", "epoch_seconds", "inference_size_mb", "train_images_per_s",
                 "peak_mem_mb"]
TRIALS = Knob(20, int, ge=1, le=100_000, help="Optuna trials of the search")
Trials = Annotated[int, BeforeValidator(validator(TRIALS, "trials"))]
Count = Annotated[int, Field(ge=0, le=1_000_000)]


class ParamModel(BaseModel):
    """One searched hyperparameter; `methods`/`students` make it conditional on the trial's choice."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: list[Scalar] | None = None
    methods: list[str] | None = None
    students: list[str] | None = None

    @model_validator(mode="after")
    def _check_range(self) -> ParamModel:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            return self
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"a {self.type} parameter needs low < high, got low {self.low}, high {self.high}")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("log scale needs low > 0 and no step")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be > 0, got {self.step:g}")
        if self.type == "int" and any(v is not None and v != int(v) for v in (self.low, self.high, self.step)):
            raise ValueError("an int parameter needs integer low, high and step")
        return self

    def top(self) -> float:
        """The largest value a trial can draw (for an int with a step: the last step not above high)."""
        assert self.low is not None and self.high is not None
        if self.type == "int":
            step = int(self.step or 1)
            return int(self.low) + (int(self.high) - int(self.low)) // step * step
        return self.high


class SamplerModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["tpe", "random", "cmaes", "grid"] = "tpe"
    seed: Seed | None = 0


class PrunerModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["median", "hyperband", "none"] = "median"
    n_startup_trials: Count = 5
    n_warmup_steps: Count = 0
    reduction_factor: Annotated[int, Field(ge=2, le=1000)] = 3


class FinalModel(BaseModel):
    """The reported numbers: the best trial(s) re-run on the test split over these seeds."""

    model_config = ConfigDict(extra="forbid")
    seeds: list[Seed] = [1, 2, 3]
    top: Annotated[int, Field(ge=1, le=1000)] = 3  # Pareto-front trials re-run in a multi-objective study
    scratch: bool = False  # also re-run each best trial's student as `scratch` (its shared hparams, same seeds)

    @field_validator("seeds", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return non_empty_list(value)


class StudyModel(SweepModel):
    """A study file: the shared fields (each choice field a categorical), one seed and budget, the search."""

    seed: Seed = 0
    epochs: Epochs = 10
    search: dict[str, ParamModel] = {}
    sampler: SamplerModel = SamplerModel()
    pruner: PrunerModel | None = None  # default: median for one objective, none for several
    objectives: Annotated[dict[Metric, Literal["maximize", "minimize"]], Field(min_length=1)] = {
        "val_acc": "maximize"}
    trials: Trials = 20
    final: FinalModel = FinalModel()
    enqueue: list[dict[str, Scalar]] = []  # trials to try first (e.g. known-good settings)
    weights: dict[str, str] = {}

    @field_validator("sampler", "pruner", mode="before")
    @classmethod
    def _name_only(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def study_name(self) -> str:
        return self.name or "study"

    @property
    def pruner_name(self) -> str:
        return self.pruner.name if self.pruner else ("median" if len(self.objectives) == 1 else "none")


def load_study_file(path: Path, database_url: str | None = None) -> StudyModel:
    """Read and validate a study file; every problem is one BenchError line naming the field. `run:` teachers
    (trained runs, bench/config/run_teachers.py) are resolved against `database_url` as a grid's are: the search
    then runs over the resolved `run:<key>` names with their artifacts in `weights`, which the stored config keeps."""
    from bench.config.run_teachers import resolve_run_teachers

    raw = read_yaml(path, "study")
    if isinstance(raw, dict):
        raw = resolve_run_teachers(raw, path, database_url)
    model = validate_config(raw, path, StudyModel, "study")
    if model.name is None:
        model = model.model_copy(update={"name": checked_name(path.stem, f"{path}: ")})
    check_study(model, path)
    return model


def check_study(model: StudyModel, path: Path | None) -> None:
    """Names, pairs and fixed hparams are checked as a grid would; then the search space itself."""
    from bench.core.registries import registries

    where = f"{path}: " if path else ""
    for name, value in model.hparams.items():
        if isinstance(value, list):
            raise BenchError(f"{where}field 'hparams.{name}': a study fixes one value here; search it under 'search'")
    check_sweep(model, where, "study")
    if model.trials > model.cell_limit:
        raise BenchError(f"{where}field 'trials': {model.trials} trials is more than the study's cell_limit "
                         f"{model.cell_limit}; lower trials or set cell_limit: {model.trials} on purpose")
    sweep_specs(model, [model.seed], [model.epochs], where)  # every combination's student, method and taps fit
    owners = knob_owners(registries(), model.student, model.method)
    if not model.search and all(len(getattr(model, field)) == 1 for field in CHOICE_FIELDS):
        raise BenchError(f"{where}field 'search': empty, and one teacher, student, method and dataset: every trial "
                         "would run the same cell; add a parameter under search (or use bench run)")
    for name, param in model.search.items():
        if name in model.hparams:
            raise BenchError(f"{where}field 'hparams.{name}': also searched under 'search.{name}'; fix it in one "
                             "place only")
        if name not in owners:
            raise unknown_hparam(where, f"search.{name}", name, list(owners), "study")
        for field, allowed in (("methods", model.method), ("students", model.student)):
            extra = set(getattr(param, field) or ()) - set(allowed)
            if extra:
                raise BenchError(f"{where}field 'search.{name}.{field}': {sorted(extra)} not in this study's {field}")
        _check_param(where, name, param, _param_owners(owners[name], param))
    _check_strategy(model, where)
    _check_enqueue(model, owners, where)
    _check_searched_cells(model, where)


SEARCHED_CELL_LIMIT = 512  # combinations built at load; past it each searched parameter is varied alone


def searched_trials(model: StudyModel) -> list[dict[str, Scalar]]:
    """The trials to pre-build: every categorical choice, and the two ends of each numeric range (where shapes
    break: widths, heads, patch sizes), over every choice of teacher, student, method and dataset."""
    axes = {field: list(getattr(model, field)) for field in CHOICE_FIELDS}
    axes |= {name: list(param.choices or ()) if param.type == "categorical" else
             sorted({int(param.low) if param.type == "int" else param.low, param.top()})  # type: ignore[arg-type]
             for name, param in model.search.items()}
    if math.prod(len(values) for values in axes.values()) <= SEARCHED_CELL_LIMIT:
        return [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]
    first = {name: values[0] for name, values in axes.items()}
    return [{**first, name: value} for name, values in axes.items() for value in values]


def _check_searched_cells(model: StudyModel, where: str) -> None:
    """Build every pre-built trial's cell as a grid cell is built, so a bad pair fails at load, not at trial 17."""
    from optuna.trial import FixedTrial

    from bench.config.shapes import check_cells

    for params in searched_trials(model):
        trial = FixedTrial(params)
        spec = suggest_spec(trial, model)
        searched = {name: value for name, value in trial.params.items() if name in model.search}
        shown = ", ".join(f"{name}={value}" for name, value in searched.items())
        check_cells([spec], where, "search", f" (searched {shown})" if shown else "")


def _param_owners(owners: list[tuple[str, Knob]], param: ParamModel) -> list[tuple[str, Knob]]:
    """The owners a searched parameter reaches once its `methods`/`students` filters apply."""
    chosen = set(param.methods or ()) | set(param.students or ())
    return [(o, k) for o, k in owners if not (param.methods or param.students) or o in chosen or o == TRAINER]


def _check_param(where: str, name: str, param: ParamModel, owners: list[tuple[str, Knob]]) -> None:
    """Every value the sampler can draw must be valid for every knob it reaches."""
    field = f"search.{name}"
    if param.type == "categorical":
        for choice in param.choices or ():
            check_value(where, f"{field}.choices", name, choice, owners)
        return
    for owner, knob in owners:
        used = f"(used by {owner})"
        if knob.type is object:
            continue
        if knob.type not in (int, float) or knob.choices is not None:
            raise BenchError(f"{where}field {field!r}: {knob.rule(name)} {used}; search it with type: categorical")
        if knob.type is int and param.type != "int":
            raise BenchError(f"{where}field {field!r}: {name} is an integer {used}; search it with type: int")
        for end, value in (("low", param.low), ("high", param.top())):
            value = int(value) if param.type == "int" else value
            problem = knob.problem(value, name)
            if problem:
                raise BenchError(f"{where}field '{field}.{end}': [low, high] must lie inside the valid range: "
                                 f"{problem} {used}")
        if knob.pattern and int(param.step or 1) % knob.pattern[0]:
            raise BenchError(f"{where}field '{field}.step': {knob.rule(name)} {used}; "
                             f"give step: a multiple of {knob.pattern[0]}")


def _check_enqueue(model: StudyModel, owners: dict[str, list[tuple[str, Knob]]], where: str) -> None:
    """Enqueued trials name searched parameters or choice fields, with values the run can use."""
    for number, trial in enumerate(model.enqueue):
        field = f"enqueue.{number}"
        unknown = set(trial) - set(model.search) - set(CHOICE_FIELDS)
        if unknown:
            raise BenchError(f"{where}field {field!r}: {sorted(unknown)} are not searched parameters")
        for name, value in trial.items():
            if name in CHOICE_FIELDS and value not in getattr(model, name):
                raise BenchError(f"{where}field '{field}.{name}': {value!r} is not one of this study's {name}")
            if name in model.search:
                check_value(where, f"{field}.{name}", name, value, _param_owners(owners[name], model.search[name]))
                _check_in_space(where, f"{field}.{name}", value, model.search[name])


def _check_in_space(where: str, field: str, value: Scalar, param: ParamModel) -> None:
    """An enqueued value must be one the search itself could draw: in its choices, or inside [low, high]."""
    if param.type == "categorical":
        if value not in (param.choices or ()):
            raise BenchError(f"{where}field {field!r}: {value!r} is not one of the searched choices {param.choices}")
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not param.low <= value <= param.high:  # type: ignore[operator]
        raise BenchError(f"{where}field {field!r}: {value!r} is outside the searched range "
                         f"[{param.low:g}, {param.high:g}]")


def _check_strategy(model: StudyModel, where: str) -> None:
    if len(model.objectives) > 1 and model.pruner_name != "none":
        raise BenchError(f"{where}field 'pruner': Optuna cannot prune multi-objective studies; use pruner: none")
    if len(model.objectives) > 1 and model.sampler.name == "cmaes":
        raise BenchError(f"{where}field 'sampler': cmaes is single-objective; use tpe or random")
    if model.sampler.name == "grid" and any(p.type != "categorical" for p in model.search.values()):
        raise BenchError(f"{where}field 'sampler': the grid sampler needs every search parameter categorical")
    if model.seed in model.final.seeds:
        raise BenchError(f"{where}field 'final.seeds': must not contain the search seed {model.seed} "
                         "(the reported runs are fresh seeds)")


def suggest_value(trial, name: str, param: ParamModel) -> Scalar:  # noqa: ANN001 - optuna.Trial
    if param.type == "categorical":
        return trial.suggest_categorical(name, param.choices)
    if param.type == "int":
        return trial.suggest_int(name, int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
    return trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)


def suggest_spec(trial, model: StudyModel) -> ExperimentSpec:  # noqa: ANN001 - optuna.Trial
    """The trial's spec: categorical choices, fixed hparams, and only the parameters that apply to it."""
    from bench.core.registries import registries

    chosen = {}
    for field in CHOICE_FIELDS:
        values = getattr(model, field)
        chosen[field] = values[0] if len(values) == 1 else trial.suggest_categorical(field, values)
    relevant = relevant_defaults(registries(), chosen["student"], chosen["method"])
    hparams = {**relevant, **{k: v for k, v in model.hparams.items() if k in relevant}}
    given = {k: v for k, v in model.hparams.items() if k in PROTOCOL_KNOBS}
    for name, param in model.search.items():
        applies = name in relevant or name in PROTOCOL_KNOBS
        if not applies or chosen["method"] not in (param.methods or [chosen["method"]]):
            continue
        if chosen["student"] in (param.students or [chosen["student"]]):
            value = suggest_value(trial, name, param)
            (given if name in PROTOCOL_KNOBS else hparams)[name] = value
    problem = protocol_problem(given)
    if problem:
        raise BenchError(f"study {model.study_name!r}: hparams: {problem}")
    hparams.update(protocol_hparams(given))
    data = model.data.config().as_dict()
    return ExperimentSpec.create(**chosen, hparams=hparams, data=data, epochs=model.epochs, seed=model.seed)
