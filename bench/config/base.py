"""What grid and study files share: YAML reading, one-line errors, the `data:` model and the common fields."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, create_model, field_validator

from bench.config.yaml_bounds import yaml_shape_problem
from bench.core.errors import BenchError
from bench.core.knobs import CELL_LIMIT, EPOCHS, SEED, name_problem, validator
from bench.data.splits import DataConfig

Scalar = str | int | float | bool
ConfigModel = TypeVar("ConfigModel", bound=BaseModel)
Seed = Annotated[int, BeforeValidator(validator(SEED, "seed"))]
Epochs = Annotated[int, BeforeValidator(validator(EPOCHS, "epochs"))]
CellLimit = Annotated[int, BeforeValidator(validator(CELL_LIMIT, "cell_limit"))]
CHOICE_FIELDS = ("teacher", "student", "method", "dataset")


def as_list(value: Any) -> Any:
    """A scalar becomes a one-item list; a list stays as it is."""
    return value if isinstance(value, list) else [value]


def non_empty_list(value: Any) -> Any:
    """A scalar becomes a one-item list; an empty list is refused (it would run nothing)."""
    if value == []:
        raise ValueError("an empty list runs nothing; give at least one value")
    return as_list(value)


class _DataBase(BaseModel):
    """The methods of the `data:` model, whose fields come from DataConfig."""

    model_config = ConfigDict(extra="forbid")

    def config(self) -> DataConfig:
        """The DataConfig these validated values describe."""
        return DataConfig(**self.model_dump())


def _data_model() -> type[_DataBase]:
    """The `data:` mapping's model: each DataConfig field with its type, default and Knob check (declared once)."""
    hints = get_type_hints(DataConfig)
    spec: dict[str, Any] = {
        f.name: (Annotated[hints[f.name], BeforeValidator(validator(f.metadata["knob"], f.name))], f.default)
        for f in fields(DataConfig)
    }
    return create_model("DataModel", __base__=_DataBase, __doc__="A grid's or study's `data:` mapping.", **spec)


DataModel = _data_model()


class SweepModel(BaseModel):
    """The fields grid and study files share: what to combine, the data, fixed hparams and teacher weights."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    teacher: list[str]
    student: list[str]
    method: list[str]
    dataset: list[str]
    data: DataModel = DataModel()  # type: ignore[valid-type]
    hparams: dict[str, Any] = {}  # checked against the knobs of the file's students, methods and trainer
    recipes: dict[str, dict[str, Any]] = {}  # student -> fixed hparams (and `epochs`) overriding the shared ones
    weights: dict[str, str] = {}
    cell_limit: CellLimit = CELL_LIMIT.default  # a bigger file is refused unless it raises this on purpose

    @field_validator(*CHOICE_FIELDS, mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return non_empty_list(value)

    @field_validator("name", mode="before")
    @classmethod
    def _printable_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            problem = name_problem(value)
            if problem:
                raise ValueError(f"{problem} (the grid or study name in the database)")
        return value


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


def read_yaml(path: Path, what: str) -> Any:
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
        problem = yaml_shape_problem(text)
        if problem:
            raise BenchError(f"{path}: refused {what} file: {problem}")
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except RecursionError:  # a bound above should stop this first; never a traceback either way
        raise BenchError(f"{path}: refused {what} file: nested too deeply") from None
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
    return validate_config(read_yaml(path, what), path, model, what)


def validate_config(raw: Any, path: Path, model: type[ConfigModel], what: str) -> ConfigModel:
    """Validate parsed YAML against `model` (a mapping of fields); every problem is one BenchError line."""
    if not isinstance(raw, dict):
        raise BenchError(f"{path}: a {what} file must be a mapping of fields (teacher, student, ...)")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise BenchError(config_error(path, error, model)) from None
