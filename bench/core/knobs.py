"""Typed knob declarations (torch-free): each hyperparameter's default, type and valid values, in one line."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", object: "any value"}
SEED_MAX = 2**32 - 1


def _num(value: float) -> str:
    return f"{value:g}".replace("e+0", "e").replace("e+", "e") if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Knob:
    """One knob: its default, type, bounds (ge/gt/le/lt), choices or a 6n+r pattern, and a help line.

    The default is checked against the declaration at import, so a declared default is always valid.
    """

    default: Any
    type: type = float
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None
    pattern: tuple[int, int] | None = None  # (m, r): value % m == r, e.g. (6, 2) for ResNet depths 6n+2
    optional: bool = False  # None allowed (means "the built-in behaviour")
    help: str = ""

    def __post_init__(self) -> None:
        problem = self.problem(self.default, "default")
        if problem:
            raise ValueError(f"invalid knob declaration: {problem}")

    def type_ok(self, value: Any) -> bool:
        """Whether `value` has this knob's type (bool is never a number; an int is a valid float)."""
        if self.type is object:
            return True
        if self.type is bool:
            return isinstance(value, bool)
        if isinstance(value, bool):
            return False
        if self.type is float:
            return isinstance(value, int | float) and math.isfinite(value)
        return isinstance(value, self.type)

    def in_range(self, value: Any) -> bool:
        """Bounds, choices and pattern (the type already checked)."""
        if self.choices is not None and value not in self.choices:
            return False
        if self.pattern is not None and value % self.pattern[0] != self.pattern[1]:
            return False
        return not ((self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
                    or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt))

    def problem(self, value: Any, name: str) -> str | None:
        """None when `value` is valid; else one line: the bad value, then the rule."""
        if value is None and self.optional:
            return None
        if not self.type_ok(value):
            return f"{value!r} is not {_TYPE_WORDS.get(self.type, self.type.__name__)}; {self.rule(name)}"
        if not self.in_range(value):
            word = "not allowed" if self.choices is not None else "out of range"
            return f"{value!r} is {word}; {self.rule(name)}"
        return None

    def bounds(self, compact: bool = False) -> str:
        """'> 0 and <= 10', 'in [0, 1]' (compact: '(0,10]', '[0,1]', '>0'); '' without bounds."""
        low, high = (self.ge, "[") if self.ge is not None else (self.gt, "(")
        top, close = (self.le, "]") if self.le is not None else (self.lt, ")")
        comma = "," if compact else ", "
        if low is not None and top is not None:
            return f"{'' if compact else 'in '}{high}{_num(low)}{comma}{_num(top)}{close}"
        space = "" if compact else " "
        if low is not None:
            return f"{'>=' if high == '[' else '>'}{space}{_num(low)}"
        if top is not None:
            return f"{'<=' if close == ']' else '<'}{space}{_num(top)}"
        return ""

    def rule(self, name: str) -> str:
        """'temperature must be a number > 0', 'depth must be an integer 6n+2 in [8, 200]'."""
        if self.choices is not None:
            return f"{name} must be one of: {', '.join(str(c) for c in self.choices)}"
        parts = [_TYPE_WORDS.get(self.type, self.type.__name__)]
        if self.pattern is not None:
            parts.append(f"{self.pattern[0]}n+{self.pattern[1]}")
        if self.bounds():
            parts.append(self.bounds())
        if self.optional:
            parts.append("or null")
        return f"{name} must be {' '.join(parts)}"

    def short(self) -> str:
        """Compact valid range for tables: '>0', '[0,1]', 'int [1,65536]', 'mse|cosine', 'int 6n+2 [8,200]'."""
        if self.choices is not None:
            return "|".join(str(c) for c in self.choices)
        kind = {int: "int ", str: "str", bool: "bool", object: "any"}.get(self.type, "")
        pattern = f"{self.pattern[0]}n+{self.pattern[1]} " if self.pattern else ""
        return f"{kind}{pattern}{self.bounds(compact=True)}".strip()


def loose(default: Any) -> Knob:
    """An undeclared default (e.g. a test's builder): any value goes."""
    return Knob(default, object)


def as_knobs(declared: Mapping[str, Any]) -> dict[str, Knob]:
    """Knob declarations as they are; a plain default becomes a loose knob."""
    return {name: value if isinstance(value, Knob) else loose(value) for name, value in declared.items()}


def defaults_of(knobs: Mapping[str, Knob]) -> dict[str, Any]:
    """The plain `defaults` mapping (name -> default) that specs and builders read."""
    return {name: knob.default for name, knob in knobs.items()}


def describe(knobs: Mapping[str, Knob]) -> str:
    """'alpha=0.7 ([0,1]), temperature=4.0 (>0)' for `bench list`."""
    return ", ".join(f"{name}={knob.default!r} ({knob.short()})" for name, knob in knobs.items())


SEED = Knob(0, int, ge=0, le=SEED_MAX, help="run seed (weights init, batch order)")
EPOCHS = Knob(10, int, ge=1, le=10000, help="training epochs of a run")


def loss_weight(default: float, help: str = "") -> Knob:
    """A loss term's weight: a number in [0, 1e6]."""
    return Knob(default, float, ge=0, le=1e6, help=help)


def temperature(default: float, help: str = "") -> Knob:
    """A softmax temperature: a number > 0 and <= 100."""
    return Knob(default, float, gt=0, le=100, help=help)


def size(default: int, high: int = 8192, help: str = "") -> Knob:
    """A layer width or count: an integer in [1, high]."""
    return Knob(default, int, ge=1, le=high, help=help)


def validator(knob: Knob, name: str) -> Callable[[Any], Any]:
    """A check for pydantic's BeforeValidator: the value unchanged, or ValueError with the knob's rule."""

    def check(value: Any) -> Any:
        problem = knob.problem(value, name)
        if problem:
            raise ValueError(problem)
        return value

    return check


NAME_MAX = 120  # runs.study is VARCHAR(200) and a study's re-runs add '/final'; PostgreSQL and SQLite both store it
CELL_LIMIT = Knob(5000, int, ge=1, le=10**7, help="most cells (or trials) one file may expand to; raise it on purpose")
_BAD_CATEGORIES = {"Cc": "a control character", "Cf": "an invisible format character (zero-width, bidi)",
                   "Cs": "an undecodable byte (lone surrogate)", "Co": "a private-use character",
                   "Cn": "an unassigned code point", "Zl": "a line separator", "Zp": "a paragraph separator"}


def name_problem(value: str) -> str | None:
    """None for a usable grid/study name (printable, 1..NAME_MAX characters); else what is wrong with it."""
    import unicodedata

    if not value or not value.strip():
        return "a name must not be empty"
    if len(value) > NAME_MAX:
        return f"{len(value)} characters is too long; at most {NAME_MAX}"
    for index, char in enumerate(value):
        category = unicodedata.category(char)
        if category in _BAD_CATEGORIES:
            return (f"character {index + 1} (U+{ord(char):04X}) is {_BAD_CATEGORIES[category]}; "
                    "use printable characters only")
    return None
