"""Checks of command-line values at the edge, before any teacher, dataset or database is touched.

Each path option is declared here by what it must be (PATH_KINDS); the generated bad-input test reads the same
table, so a new path option without a declared kind fails that test.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.core.errors import BenchError
from bench.core.knobs import name_problem

MAX_ERROR_CHARS = 600  # an error line quotes the bad value; a 398 MB line helps no one
RUN_ID_DIGITS = 18  # every id below 10**18 fits a 64-bit integer column on every supported database
SPEC_KEY_HEX = 64
SYSTEM_DIRS = (Path("/proc"), Path("/sys"), Path("/dev"))
# what each path option or argument must be: an existing file to read, an existing directory to read, a directory
# bench creates and writes, or a file bench writes
EXISTING_FILE, EXISTING_DIR, WRITABLE_DIR, WRITABLE_FILE = "existing file", "existing dir", "writable dir", "new file"
PATH_KINDS = {
    "grid_file": EXISTING_FILE, "grid": EXISTING_FILE, "study_file": EXISTING_FILE, "plan_file": EXISTING_FILE,
    "data_root": EXISTING_DIR, "cache_dir": WRITABLE_DIR, "run_dir": WRITABLE_DIR, "artifacts": WRITABLE_DIR,
    "report.out_dir": WRITABLE_DIR, "export.out_file": WRITABLE_FILE, "track.artifact_root": WRITABLE_DIR,
    "track.wandb_dir": WRITABLE_DIR, "launch.file": EXISTING_FILE, "launch.log_dir": WRITABLE_DIR,
    "report.published": EXISTING_FILE, "run.log_dir": WRITABLE_DIR,
}


def short_line(message: str) -> str:
    """One line of at most MAX_ERROR_CHARS characters, control characters shown escaped."""
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(message.split()))
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 30] + f"... ({len(line)} characters)"


def _shown(path: Path) -> str:
    return short_line(str(path))[:200]


def _in_system_dir(path: Path) -> bool:
    return any(path == top or top in path.parents for top in SYSTEM_DIRS)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def writable_dir(option: str, path: Path | None) -> Path | None:
    """A directory bench writes into: an existing writable directory, or one it can create (no file on the way)."""
    if path is None:
        return None
    resolved = path.expanduser().absolute()
    if _in_system_dir(resolved):
        raise BenchError(f"{option} {_shown(path)}: is under a system directory (/proc, /sys, /dev); give a "
                         "directory of your own")
    if resolved.exists() and not resolved.is_dir():
        raise BenchError(f"{option} {_shown(path)}: exists and is not a directory; give a directory")
    existing = _nearest_existing(resolved)
    if not existing.is_dir():
        raise BenchError(f"{option} {_shown(path)}: {_shown(existing)} is a file, so the directory cannot be "
                         "created; give a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BenchError(f"{option} {_shown(path)}: {_shown(existing)} is not writable; give a writable directory")
    return path


def existing_dir(option: str, path: Path | None) -> Path | None:
    """A directory bench reads: it must exist and be a directory."""
    if path is None:
        return None
    if not path.expanduser().is_dir():
        what = "is a file" if path.expanduser().exists() else "does not exist"
        raise BenchError(f"{option} {_shown(path)}: {what}; give an existing directory")
    return path


def writable_file(option: str, path: Path) -> Path:
    """A file bench writes: not a directory, in an existing writable directory outside the system ones."""
    resolved = path.expanduser().absolute()
    if _in_system_dir(resolved):
        raise BenchError(f"{option} {_shown(path)}: is under a system directory (/proc, /sys, /dev); give a file "
                         "of your own")
    if resolved.is_dir():
        raise BenchError(f"{option} {_shown(path)}: is a directory; give a file name (e.g. student.onnx)")
    if not resolved.parent.is_dir():
        what = "does not exist" if not resolved.parent.exists() else "is not a directory"
        raise BenchError(f"{option} {_shown(path)}: directory {_shown(resolved.parent)} {what}; create it first")
    if not os.access(resolved.parent, os.W_OK | os.X_OK) or (resolved.exists() and not os.access(resolved, os.W_OK)):
        raise BenchError(f"{option} {_shown(path)}: not writable; give a file in a writable directory")
    return path


def run_ref(ref: str) -> str:
    """A run id (ASCII digits, fits 64 bits) or a spec key prefix (hex), parsed strictly."""
    if ref.isascii() and ref.isdigit() and len(ref) <= RUN_ID_DIGITS:
        return ref
    if ref and ref.isascii() and len(ref) <= SPEC_KEY_HEX and not ref.isdigit() and all(
            c in "0123456789abcdef" for c in ref):
        return ref
    raise BenchError(f"RUN {short_line(repr(ref))[:80]}: expected a run id (up to {RUN_ID_DIGITS} ASCII digits) "
                     f"or a spec key prefix (up to {SPEC_KEY_HEX} hex characters 0-9a-f); see `bench runs`")


def study_name(option: str, name: str) -> str:
    """A grid or study name as the database stores it: printable, not empty, not too long."""
    problem = name_problem(name)
    if problem:
        raise BenchError(f"{option} {short_line(repr(name))[:60]}: {problem}")
    return name


def positive(option: str, value: int | None) -> int | None:
    """A count that must be at least 1 when given (0 or less would do nothing, silently)."""
    if value is not None and value < 1:
        raise BenchError(f"{option} {value}: must be at least 1 (leave it out for no limit)")
    return value


def device(name: str) -> str:
    """A device this torch build can use (the error lists them)."""
    if name == "auto":
        return name
    from bench.run.workbench import resolve_device

    resolve_device(name)
    return name


def weights(items: list[str] | None, teachers: list[str] | None = None) -> dict[str, str]:
    """TEACHER=PATH items: a named teacher that is registered and, when a file names its teachers, one of them."""
    from bench.core.registries import TEACHERS

    parsed: dict[str, str] = {}
    for item in items or []:
        teacher, sep, path = item.partition("=")
        if not sep or not path or not teacher:
            raise BenchError(f"--weights {short_line(repr(item))[:80]}: expected TEACHER=PATH")
        if teachers is not None and teacher not in teachers:
            raise BenchError(f"--weights {teacher[:60]!r}: not a teacher of this file (its teachers: "
                             f"{', '.join(teachers)})")
        if teachers is None:
            TEACHERS.check(teacher)
        parsed[teacher] = path
    return parsed


def trials(value: int | None, file_trials_limit: int) -> int | None:
    """--trials within [1, the study's cell_limit] (the file's maximum number of runs)."""
    if value is not None and not 1 <= value <= file_trials_limit:
        raise BenchError(f"--trials {value}: must be in [1, {file_trials_limit}] (the study's cell_limit; raise "
                         "cell_limit in the file on purpose for more)")
    return value


FLAGS = {"out_dir": "--out", "out_file": "--out", "grid_file": "FILE", "study_file": "FILE", "plan_file": "FILE"}


def path_kind(command: str, name: str) -> str:
    """What the path parameter `name` of `command` must be (KeyError: not declared in PATH_KINDS)."""
    return PATH_KINDS.get(f"{command}.{name}") or PATH_KINDS[name]


def paths(command: str, **options: Path | None) -> None:
    """Check each path parameter of `command` (keyword: its parameter name) as PATH_KINDS says it must be."""
    checks = {WRITABLE_DIR: writable_dir, EXISTING_DIR: existing_dir, WRITABLE_FILE: writable_file}
    for name, path in options.items():
        kind = path_kind(command, name)
        if path is not None and kind in checks:
            checks[kind](FLAGS.get(name, "--" + name.replace("_", "-")), path)
