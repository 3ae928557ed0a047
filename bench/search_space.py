"""Study YAML -> validated StudyModel, and the spec an Optuna trial suggests from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from bench.data import DataConfig
from bench.errors import BenchError
from bench.grid import DataModel, GridModel, Scalar, _as_list, expand_grid, load_config, relevant_defaults
from bench.registry import nearest_names
from bench.spec import ExperimentSpec

Metric = Literal["val_acc", "size_mb", "params", "epoch_seconds", "inference_size_mb", "train_images_per_s",
                 "peak_mem_mb"]
CHOICE_FIELDS = ("teacher", "student", "method", "dataset")


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
            raise ValueError(f"a {self.type} parameter needs low < high")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("log scale needs low > 0 and no step")
        return self


class SamplerModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["tpe", "random", "cmaes", "grid"] = "tpe"
    seed: int | None = 0


class PrunerModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["median", "hyperband", "none"] = "median"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    reduction_factor: int = 3


class FinalModel(BaseModel):
    """The reported numbers: the best trial(s) re-run on the test split over these seeds."""

    model_config = ConfigDict(extra="forbid")
    seeds: list[int] = [1, 2, 3]
    top: int = 3  # Pareto-front trials re-run in a multi-objective study


class StudyModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    teacher: list[str]
    student: list[str]
    method: list[str]
    dataset: list[str]
    seed: int = 0
    epochs: int = 10
    data: DataModel = DataModel()
    hparams: dict[str, Scalar] = {}
    search: dict[str, ParamModel] = {}
    sampler: SamplerModel = SamplerModel()
    pruner: PrunerModel | None = None  # default: median for one objective, none for several
    objectives: dict[Metric, Literal["maximize", "minimize"]] = {"val_acc": "maximize"}
    trials: int = 20
    final: FinalModel = FinalModel()
    enqueue: list[dict[str, Scalar]] = []  # trials to try first (e.g. known-good settings)
    weights: dict[str, str] = {}

    @field_validator(*CHOICE_FIELDS, mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return _as_list(value)

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


def load_study_file(path: Path) -> StudyModel:
    """Read and validate a study file; every problem is one BenchError line naming the field."""
    model = load_config(path, StudyModel, "study")
    if model.name is None:
        model = model.model_copy(update={"name": path.stem})
    check_study(model, path)
    return model


def check_study(model: StudyModel, path: Path | None) -> None:
    """Names, pairs and fixed hparams are checked as a grid would; then the search space itself."""
    from bench.catalog import registries

    where = f"{path}: " if path else ""
    expand_grid(GridModel(teacher=model.teacher, student=model.student, method=model.method,
                          dataset=model.dataset, seeds=[model.seed], epochs=[model.epochs], data=model.data,
                          hparams=dict(model.hparams), weights=model.weights), path)
    regs = registries()
    known = {name for s in model.student for m in model.method for name in relevant_defaults(regs, s, m)}
    for name, param in model.search.items():
        if name not in known:
            close = nearest_names(name, sorted(known))
            hint = f"did you mean: {', '.join(close)}?" if close else f"known: {', '.join(sorted(known))}"
            raise BenchError(f"{where}field 'search.{name}': no student or method in this study uses it; {hint}")
        for field, allowed in (("methods", model.method), ("students", model.student)):
            extra = set(getattr(param, field) or ()) - set(allowed)
            if extra:
                raise BenchError(f"{where}field 'search.{name}.{field}': {sorted(extra)} not in this study's {field}")
    _check_strategy(model, where)


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
    allowed = set(model.search) | set(CHOICE_FIELDS)
    for number, trial in enumerate(model.enqueue):
        unknown = set(trial) - allowed
        if unknown:
            raise BenchError(f"{where}field 'enqueue.{number}': {sorted(unknown)} are not searched parameters")
    if model.trials < 1 or model.epochs < 1:
        raise BenchError(f"{where}fields 'trials' and 'epochs' must be at least 1")


def suggest_value(trial, name: str, param: ParamModel) -> Scalar:  # noqa: ANN001 - optuna.Trial
    if param.type == "categorical":
        return trial.suggest_categorical(name, param.choices)
    if param.type == "int":
        return trial.suggest_int(name, int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
    return trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)


def suggest_spec(trial, model: StudyModel) -> ExperimentSpec:  # noqa: ANN001 - optuna.Trial
    """The trial's spec: categorical choices, fixed hparams, and only the parameters that apply to it."""
    from bench.catalog import registries

    chosen = {}
    for field in CHOICE_FIELDS:
        values = getattr(model, field)
        chosen[field] = values[0] if len(values) == 1 else trial.suggest_categorical(field, values)
    relevant = relevant_defaults(registries(), chosen["student"], chosen["method"])
    hparams = {**relevant, **{k: v for k, v in model.hparams.items() if k in relevant}}
    for name, param in model.search.items():
        if name not in relevant or chosen["method"] not in (param.methods or [chosen["method"]]):
            continue
        if chosen["student"] in (param.students or [chosen["student"]]):
            hparams[name] = suggest_value(trial, name, param)
    data = DataConfig(**model.data.model_dump()).as_dict()
    return ExperimentSpec.create(**chosen, hparams=hparams, data=data, epochs=model.epochs, seed=model.seed)
