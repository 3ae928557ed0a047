"""Bad inputs generated from the declarations themselves: every knob, every CLI option, ids and names.

Each case goes through the real CLI (in-process) against a filled database and must end with exit 2, one clear
line (or click's own usage error), no traceback, and every table (Optuna's included) unchanged. A new knob or
option is covered without new test code; `test_every_declaration_has_cases` fails if one has none.
"""

from __future__ import annotations

import math
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bench.cli import checks
from bench.cli.app import app
from bench.config.grid import TRAIN_KNOBS
from bench.config.study import TRIALS
from bench.core.knobs import CELL_LIMIT, EPOCHS, NAME_MAX, SEED, Knob
from bench.core.registries import registries
from bench.data.splits import DataConfig
from tests.support.cli_harness import dump, make_filled_db

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
BASE = {"teacher": "effnet-lite0", "student": "projection", "method": "kd", "dataset": "digits", "epochs": 1}
BAD_NAMES = ["a\x00b", "tab\there", "zero\u200bwidth", "rtl\u202eevil", "bell\x07", "surrogate\udcff",
             "x" * (NAME_MAX + 1), "", "   "]


def _just_outside(knob: Knob) -> list[Any]:
    """Values one step outside each bound, NaN/inf and a huge number (for numeric knobs)."""
    if knob.type not in (int, float):
        return []
    step = 1 if knob.type is int else 1e-9
    values: list[Any] = []
    if knob.ge is not None:
        values.append(knob.ge - step if knob.type is float else math.ceil(knob.ge) - 1)
    if knob.gt is not None:
        values.append(knob.gt if knob.type is float else math.floor(knob.gt))
    if knob.le is not None:
        values += [knob.le + max(step, abs(knob.le) * 1e-9) if knob.type is float else math.floor(knob.le) + 1,
                   10**30]
    if knob.lt is not None:
        values.append(knob.lt if knob.type is float else math.ceil(knob.lt))
    if knob.type is float:
        values += [float("nan"), float("inf"), float("-inf")]
    if knob.pattern is not None:
        values.append(knob.default + 1)
    return values


def knob_values(knob: Knob) -> list[Any]:
    """Bad values derived from one declaration: wrong types, just outside each bound, NaN/inf, huge, not a choice."""
    values: list[Any] = []
    if knob.type is not object:
        values += [{"a": 1}, "word" if knob.type is not str else 12345]
        if knob.type in (int, float):
            values.append(True)
        if knob.type is int:
            values.append(1.5)
    if knob.choices is not None:
        values.append("not-a-choice")
    values += _just_outside(knob)
    return [v for v in values if knob.problem(v, "x") is not None or isinstance(v, dict)]


def declared_knobs() -> dict[str, tuple[str, str, Knob]]:
    """Every declared knob: case id -> (where it goes in a grid file, its name, its declaration)."""
    regs = registries()
    found: dict[str, tuple[str, str, Knob]] = {}
    for name, knob in TRAIN_KNOBS.items():
        found[f"trainer.{name}"] = ("hparams", name, knob)
    for kind in ("students", "methods"):
        for entry in regs[kind]:
            for name, knob in getattr(entry.obj, "knobs", {}).items():
                found[f"{kind}.{entry.name}.{name}"] = (f"{kind[:-1]}:{entry.name}", name, knob)
    for item in fields(DataConfig):
        found[f"data.{item.name}"] = ("data", item.name, item.metadata["knob"])
    for name, knob in (("seeds", SEED), ("epochs", EPOCHS), ("cell_limit", CELL_LIMIT)):
        found[f"grid.{name}"] = ("top", name, knob)
    found["study.trials"] = ("study", "trials", TRIALS)
    return found


def _grid_text(place: str, name: str, value: Any) -> tuple[str, str]:
    """A grid (or study) file holding one bad value, and the field the error must name."""
    base = dict(BASE)
    if place == "hparams":
        return yaml.safe_dump({**base, "hparams": {name: value}}), f"hparams.{name}"
    if place.startswith(("student:", "method:")):
        kind, unit = place.split(":")
        base[kind] = unit
        if kind == "student":
            base["method"] = "scratch"
        return yaml.safe_dump({**base, "hparams": {name: value}}), f"hparams.{name}"
    if place == "data":
        return yaml.safe_dump({**base, "data": {name: value}}), f"data.{name}"
    if place == "study":
        return yaml.safe_dump({**base, "method": ["scratch", "kd"], name: value}), name
    return yaml.safe_dump({**base, name: value}), name


def knob_cases() -> list[Any]:
    cases = []
    for case_id, (place, name, knob) in declared_knobs().items():
        command = "study" if place == "study" else "run"
        if knob.type is not object:
            for index, value in enumerate(knob_values(knob)):
                text, field = _grid_text(place, name, value)
                cases.append(pytest.param(command, text, [field], id=f"{case_id}-{index}"))
        text, field = _grid_text(place, name, [])
        cases.append(pytest.param(command, text, [field], id=f"{case_id}-empty-list"))
        text, _ = _grid_text(place, name, knob.default)
        duplicated = text.replace(f"{name}:", f"{name}: {knob.default!r}\n{name}:", 1) if place == "top" else None
        if place in ("hparams", "data") or place.startswith(("student:", "method:")):
            key = f"{{{name}: "
            duplicated = text.replace(key, f"{{{name}: {yaml.safe_dump(knob.default).split(chr(10))[0]}, {name}: ", 1)
        if duplicated and duplicated != text:
            cases.append(pytest.param(command, duplicated, ["duplicate key", name], id=f"{case_id}-duplicate"))
    return cases


def search_cases() -> list[Any]:
    """Study search spaces: for each bounded numeric trainer knob, a range reaching outside it, plus bad shapes."""
    cases = []
    for name, knob in TRAIN_KNOBS.items():
        kind = "int" if knob.type is int else "float"
        for index, low in enumerate(_just_outside(knob)[:1]):
            space = {name: {"type": kind, "low": low, "high": knob.default}}
            cases.append(pytest.param("study", yaml.safe_dump({**BASE, "search": space}), [f"search.{name}"],
                                      id=f"search.{name}-{index}"))
    for index, space in enumerate([{"type": "float", "low": 0.1, "high": 0.01}, {"type": "categorical", "choices": []},
                                   {"type": "float", "low": -1, "high": 1, "log": True}, {"type": "bogus"},
                                   {"type": "float", "low": 0.001, "high": 0.1, "step": 0}]):
        cases.append(pytest.param("study", yaml.safe_dump({**BASE, "search": {"lr": space}}), ["search.lr"],
                                  id=f"search-shape-{index}"))
    return cases


FILE_CASES = knob_cases() + search_cases()


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """One filled database for every case, and its dump: a case that writes anything fails the next assertion."""
    path = make_filled_db(tmp_path_factory.mktemp("generated") / "results.db")
    return path, dump(path)


def _check(argv: list[str], db: tuple[Path, list[str]], words: list[str], with_db: bool = True) -> str:
    path, before = db
    result = CliRunner().invoke(app, [*argv, *(["--db", f"sqlite:///{path}"] if with_db else [])])
    stderr = result.stderr
    assert result.exit_code == 2, (argv, result.exit_code, stderr, result.stdout[-500:], result.exception)
    assert "Traceback" not in stderr and result.exception is None or isinstance(result.exception, SystemExit)
    if stderr.startswith("error: "):
        assert stderr.count("\n") == 1 and len(stderr) <= checks.MAX_ERROR_CHARS + 10, stderr
        for word in words:
            assert word in stderr, f"{word!r} not in {stderr!r}"
    else:
        assert "Usage:" in stderr and "Error" in stderr, stderr  # click's own usage error
    assert dump(path) == before
    return stderr


@pytest.mark.parametrize(("command", "text", "words"), FILE_CASES)
def test_generated_bad_file_is_refused(tmp_path: Path, shared_db: tuple[Path, list[str]], command: str, text: str,
                                       words: list[str]) -> None:
    file = tmp_path / "generated.yaml"
    file.write_text(text)
    _check([command, str(file)], shared_db, words)


# -------------------------------------------------------------------------------------------- command-line options
BASE_ARGS = {"run": ["{good_grid}"], "worker": ["--study", "generated"], "study": ["{good_study}"],
             "list": [], "teachers": [], "sql": ["SELECT 1"], "report": ["--out", "{tmp}/report"],
             "runs": [], "show": ["1"], "eval": ["1"], "export": ["1", "--out", "{tmp}/student.onnx"],
             "plan": ["{good_grid}"], "track": ["wandb", "--wandb-dir", "{tmp}/wandb"]}
NO_DB = {"list", "teachers"}
# the string options whose bad values are said here (what each accepts is a set of words, a URL or SQL)
STRING_BAD = {
    "device": ["meta", "xla", "cuda:99", "not-a-device", "cpu\x00"],
    "db": ["sqlite:////proc/x/results.db", "sqlite:///{tmp}", "sqlite:////dev/null", "postgresql://u@h:port/db",
           "sqlite:///{tmp}/r.db?timeout=word", "sqlite:///{tmp}/r.db?mode=ro",
           "sqlite:///{tmp}/r.db?isolation_level=BOGUS", "mysql://u@h/db", "not a url"],
    "weights": ["=x.pt", "no-such-teacher=x.pt", "effnet-lite0", "effnet-lite0="],
    "study": BAD_NAMES, "keep": ["bogus"], "split": ["bogus"], "formats": ["pdf"], "fmt": ["pdf"], "gpu": ["bogus"],
    "columns": ["no_such_column"], "what": ["bogus"], "run_ref": ["99999999999999999999", "-1", "²", "１", "zz"],
    "names": ["no-such-teacher"], "tracker": ["neptune", ""], "tracking_uri": ["bogus://x", "not a uri", ""],
    "storage": ["http://127.0.0.1:5000", "grpc://127.0.0.1", "grpc://h:99999", ""],
    "bundle": ["bogus", "on", ""],
}
NUMBER_BAD = ["-1", "0", "word", "nan"]
SKIP = {("sql", "query"), ("sql", "timeout"), ("runs", "where"), ("report", "where"), ("export", "where"),
        ("track", "where")}
# bench launch submits jobs and bench status reads a study: their options have their own one-line tests
# (tests/sweep/test_launch.py); walking them here would submit real workers for any value the launcher accepts
SKIP_COMMANDS = {"launch", "status"}  # the SQL guard of --where has its own tests (tests/store, tests/faults)


def _commands() -> dict[str, Any]:
    group = typer.main.get_command(app)
    return dict(group.commands)  # type: ignore[attr-defined]


def _is_flag(param: Any) -> bool:
    return param.param_type_name == "option" and bool(param.is_flag)


def _flag(param: Any) -> str | None:
    return param.opts[0] if param.param_type_name == "option" else None


def _type(param: Any) -> str:
    """The parameter's declared Python type name (typer keeps it beside its own click copy): 'int', 'Path', ..."""
    return param.bare_type() if callable(getattr(param, "bare_type", None)) else type(param.type).__name__


def _path_values(kind: str, tmp: str) -> list[str]:
    values = {checks.EXISTING_FILE: [f"{tmp}/missing.yaml", tmp, "/proc/self/nope.yaml"],
              checks.EXISTING_DIR: [f"{tmp}/missing-dir", f"{tmp}/existing.txt"],
              checks.WRITABLE_DIR: [f"{tmp}/existing.txt", f"{tmp}/existing.txt/below", "/proc/bench-test"],
              checks.WRITABLE_FILE: [tmp, f"{tmp}/missing-dir/out.onnx", f"{tmp}/existing.txt/out.onnx",
                                     "/proc/bench-test.onnx"]}[kind]
    if os.geteuid() != 0:
        values.append(f"{tmp}/locked/sub" if kind != checks.WRITABLE_FILE else f"{tmp}/locked/out.onnx")
    return values


def option_cases() -> list[Any]:
    """Every option and argument of every command, with bad values derived from its click type (or kind)."""
    cases = []
    for command, cmd in _commands().items():
        if command in SKIP_COMMANDS:
            continue
        for param in cmd.params:
            name, flag = param.name or "", _flag(param)
            kind = _type(param)
            if (command, name) in SKIP or _is_flag(param):
                continue
            if kind == "Path" or name in checks.PATH_KINDS or f"{command}.{name}" in checks.PATH_KINDS:
                values = _path_values(checks.path_kind(command, name), "{tmp}")
            elif kind in ("int", "float"):
                values = NUMBER_BAD if kind == "float" else NUMBER_BAD[:3]
            else:
                values = STRING_BAD[name]
            for index, value in enumerate(values):
                cases.append(pytest.param(command, name, flag, value, id=f"{command}-{name}-{index}"))
    return cases


OPTION_CASES = option_cases()


def _argv(command: str, name: str, flag: str | None, value: str, tmp: Path) -> list[str]:
    base = [arg.format(good_grid=CORPUS / "good-grid.yaml", good_study=CORPUS / "good-study.yaml", tmp=tmp)
            for arg in BASE_ARGS[command]]
    value = value.format(tmp=tmp)
    if flag is None:  # an argument: it replaces the base's positional value
        return [command, value, *(base[1:] if base and not base[0].startswith("--") else base)]
    if flag in base:
        at = base.index(flag)
        base = base[:at] + base[at + 2:]
    return [command, *base, flag, value]


@pytest.mark.parametrize(("command", "name", "flag", "value"), OPTION_CASES)
def test_generated_bad_option_is_refused(tmp_path: Path, shared_db: tuple[Path, list[str]], command: str, name: str,
                                         flag: str | None, value: str) -> None:
    (tmp_path / "existing.txt").write_text("a file where a directory is expected\n")
    (tmp_path / "locked").mkdir(mode=0o500)
    argv = _argv(command, name, flag, value, tmp_path)
    if flag == "--db":
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 2 and result.stderr.startswith(("error: ", "Usage:")), result.stderr
        assert dump(shared_db[0]) == shared_db[1]
        return
    _check(argv, shared_db, [flag or ""] if flag and name not in ("weights",) else [], command not in NO_DB)


def test_every_declaration_has_cases() -> None:
    """Every knob and every option of every command has generated cases (a new one is covered or fails here)."""
    knob_ids = {case.id.rsplit("-", 1)[0] for case in FILE_CASES}
    missing = [key for key in declared_knobs() if not any(i.startswith(key) for i in knob_ids)]
    assert not missing, missing
    covered = {(case.values[0], case.values[1]) for case in OPTION_CASES}
    options = {(command, param.name) for command, cmd in _commands().items() for param in cmd.params
               if not _is_flag(param) and (command, param.name) not in SKIP and command not in SKIP_COMMANDS}
    assert options <= covered, sorted(options - covered)
    assert len(FILE_CASES) >= 300 and len(OPTION_CASES) >= 100


@seed(25)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(
    st.text(st.characters(categories=["Cc", "Cf", "Co", "Zl", "Zp"]), min_size=1, max_size=4).map(lambda s: f"n{s}n"),
    st.text(st.characters(codec="utf-8", categories=["L", "N"]), min_size=NAME_MAX + 1, max_size=NAME_MAX + 50)))
def test_grid_names_that_no_database_stores_well_are_refused(tmp_path_factory: pytest.TempPathFactory,
                                                              shared_db: tuple[Path, list[str]], name: str) -> None:
    file = tmp_path_factory.mktemp("names") / "grid.yaml"
    file.write_text(yaml.safe_dump({**BASE, "name": name}), encoding="utf-8")
    _check(["run", str(file)], shared_db, ["name"])


@seed(25)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ref=st.one_of(st.integers(min_value=10**18, max_value=10**40).map(str),
                     st.integers(max_value=-1).map(str),
                     st.text(st.characters(categories=["Nd"], exclude_characters="0123456789"),
                             min_size=1, max_size=6)))
def test_run_ids_are_parsed_strictly(shared_db: tuple[Path, list[str]], ref: str) -> None:
    for command in ("show", "eval"):
        _check([command, ref], shared_db, ["RUN"])


def test_yaml_bombs_and_deep_nesting_are_refused_quickly(tmp_path: Path, shared_db: tuple[Path, list[str]]) -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))
    cases = {"laughs.yaml": (laughs, ["aliases", "100000"]),
             "deep.yaml": ("teacher: " + "[" * 3000 + "]" * 3000 + "\n", ["nested more than 50"]),
             "wide.yaml": (yaml.safe_dump({**BASE, "epochs": list(range(1, 10_001))}), ["cell_limit", "10000"])}
    for file_name, (text, words) in cases.items():
        (tmp_path / file_name).write_text(text)
        _check(["run", str(tmp_path / file_name)], shared_db, words)


def test_raising_the_cell_limit_on_purpose_lets_a_big_grid_through_the_limit(tmp_path: Path) -> None:
    from bench.config.grid import load_grid

    text = yaml.safe_dump({**BASE, "seeds": list(range(60)), "epochs": list(range(1, 101))})
    (tmp_path / "big.yaml").write_text(text)
    with pytest.raises(Exception, match="6000 cells"):
        load_grid(tmp_path / "big.yaml")
    (tmp_path / "big.yaml").write_text(text + "cell_limit: 6000\n")
    assert len(load_grid(tmp_path / "big.yaml").specs) == 6000


def test_an_error_line_is_truncated() -> None:
    line = checks.short_line("x" * 10_000 + "\x00")
    assert len(line) <= checks.MAX_ERROR_CHARS and line.endswith("characters)")
    assert checks.short_line("a\x00b") == "a\\x00b"
