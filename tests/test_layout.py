"""The layout rules: no import cycles in bench/, every module in its layer, only entry points and packages at the
root of bench/, no package-init re-exports, no hidden late imports, units live in their package."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO

LATE_IMPORT_MARK = "noqa: " + "E402"  # spelled in two parts so that this file does not match itself


def module_files(root: Path, package: str = "bench") -> dict[str, Path]:
    """Dotted module name -> file for every module under root/package (a package is its __init__)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_names(module: str, path: Path) -> list[str]:
    """Every dotted name `module` imports, anywhere in the file (functions too), relative ones made absolute."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the project modules it imports (a name resolves to its longest prefix that is a module)."""
    modules = module_files(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module, path in modules.items():
        for name in imported_names(module, path):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                graph[module].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def test_cycle_finder_sees_relative_and_function_level_imports(tmp_path: Path) -> None:
    """The checker itself: a cycle through `from . import` inside a function is found, a chain is not a cycle."""
    package = tmp_path / "bench" / "pkg"
    package.mkdir(parents=True)
    (tmp_path / "bench" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from .b import g\n    return g\n")
    (package / "b.py").write_text("from bench.pkg import c\n\ndef g():\n    from ..pkg.a import f\n")
    (package / "c.py").write_text("import json\n")
    graph = import_graph(tmp_path)
    assert graph["bench.pkg.a"] == {"bench.pkg.b"}
    assert graph["bench.pkg.b"] == {"bench.pkg", "bench.pkg.a", "bench.pkg.c"}
    assert cycles(graph) == [["bench.pkg.a", "bench.pkg.b"]]


def test_no_import_cycles_in_bench() -> None:
    found = cycles(import_graph(REPO))
    assert not found, "import cycles among bench modules: " + "; ".join(" <-> ".join(c) for c in found)


# The floors of bench/, lowest first: a module may import its own floor and the floors below, never one above.
# Packages of one floor may import each other (the cycle test still holds). docs/ARCHITECTURE.md explains each.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("package root", ("bench",)),  # bench/__init__.py: the version only
    ("core", ("bench.core",)),  # the shared vocabulary: errors, names, taps, knobs, cards, registries, spec; torch-free
    ("data and store", ("bench.data", "bench.store")),  # dataset splits and image arrays; the SQL store
    ("units and report", ("bench.teachers", "bench.students", "bench.methods", "bench.datasets", "bench.report",
                          "bench.track")),  # report and track read the store
    ("teacher outputs", ("bench.teacher_outputs",)),  # teacher pass, feature cache, probe, fine-tune
    ("deploy", ("bench.deploy",)),  # the deployable model and its inference cost
    ("run", ("bench.run",)),  # one spec in, one record out
    ("config and artifacts", ("bench.config", "bench.artifacts")),  # grid/study files; kept students, export
    ("sweep", ("bench.sweep",)),  # queue, grid, study search, worker loop, checkpoints
    ("plan", ("bench.plan",)),  # the dry run (it asks the sweep what is done)
    ("cli", ("bench.cli", "bench.__main__")),
)


def layer_of(module: str) -> int:
    """The floor of a module: the one whose package is the longest prefix of its name."""
    matches = [(len(package), index) for index, (_, packages) in enumerate(LAYERS) for package in packages
               if module == package or module.startswith(package + ".")]
    assert matches, f"{module} is in no layer of tests/test_layout.py LAYERS: add its package to a floor"
    return max(matches)[1]


def test_no_module_imports_a_floor_above_its_own() -> None:
    graph = import_graph(REPO)
    upward = [f"{module} ({LAYERS[layer_of(module)][0]}) imports {name} ({LAYERS[layer_of(name)][0]})"
              for module, names in sorted(graph.items()) for name in sorted(names)
              if layer_of(name) > layer_of(module)]
    assert not upward, "imports that go up a floor:\n" + "\n".join(upward)


def test_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: a core module importing the run layer is reported."""
    for folder in ("bench", "bench/core", "bench/run"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "bench" / "core" / "names.py").write_text("from bench.run.train import x\n")
    (tmp_path / "bench" / "run" / "train.py").write_text("x = 1\n")
    graph = import_graph(tmp_path)
    assert [(m, n) for m, names in graph.items() for n in names if layer_of(n) > layer_of(m)] == [
        ("bench.core.names", "bench.run.train")]


def test_bench_root_holds_only_entry_points_and_packages() -> None:
    root = REPO / "bench"
    modules = sorted(path.name for path in root.glob("*.py"))
    assert modules == ["__init__.py", "__main__.py"], f"flat modules at the root of bench/: {modules}"
    packages = sorted(path.name for path in root.iterdir() if path.is_dir() and (path / "__init__.py").exists())
    listed = {package.split(".")[1] for _, names in LAYERS for package in names if package.count(".") == 1}
    assert set(packages) <= listed, f"packages in no layer: {sorted(set(packages) - listed)}"


def test_package_inits_reexport_nothing() -> None:
    """A package's __init__ holds its docstring (and, for bench/, the version): no imports that re-export."""
    offenders = []
    for init in sorted((REPO / "bench").rglob("__init__.py")):
        tree = ast.parse(init.read_text())
        if any(isinstance(node, ast.Import | ast.ImportFrom) for node in ast.walk(tree)):
            offenders.append(str(init.relative_to(REPO)))
    assert not offenders, f"package inits that import (re-export) names: {offenders}"


def test_no_late_import_escapes() -> None:
    """A late import hidden behind the E402 escape is how the old package-init cycles were kept alive."""
    files = [path for folder in ("bench", "tests") for path in sorted((REPO / folder).rglob("*"))
             if path.is_file() and "__pycache__" not in path.parts]
    offenders = [str(path.relative_to(REPO)) for path in files
                 if LATE_IMPORT_MARK in path.read_bytes().decode("utf-8", errors="replace")]
    assert not offenders, f"{LATE_IMPORT_MARK} in {offenders}: import at the top, or break the cycle"


# Runs in a fresh interpreter: records which module called Registry.add for every entry, after importing all
# of bench (so a unit registered from outside its package is seen too), then checks each entry's card type.
REGISTRATIONS = """
import importlib, inspect, json, pkgutil, sys
import bench
from bench.core import registry
from bench.core.registries import registries
seen = {}
original = registry.Registry.add
def add(self, name, obj, card, *, description=""):
    frame = inspect.currentframe().f_back
    while frame.f_globals.get("__name__") == "bench.core.registry":
        frame = frame.f_back
    seen.setdefault(self.what, {})[name] = frame.f_globals.get("__name__")
    return original(self, name, obj, card, description=description)
registry.Registry.add = add
for info in pkgutil.walk_packages(bench.__path__, "bench."):
    if info.name not in ("bench.__main__",):
        importlib.import_module(info.name)
out = {}
for kind, reg in registries().items():
    out[kind] = {"package": reg.package, "card_type": reg.card_type.__name__, "entries": {
        e.name: {"module": seen.get(reg.what, {}).get(e.name), "card": type(e.card).__name__,
                 "card_ok": isinstance(e.card, reg.card_type)} for e in reg}}
json.dump(out, sys.stdout)
"""


def test_every_unit_lives_in_its_package_with_its_card_type() -> None:
    result = subprocess.run([sys.executable, "-c", REGISTRATIONS], capture_output=True, text=True, timeout=300,
                            cwd=REPO, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout)
    assert set(found) == {"teachers", "students", "methods", "datasets"}
    problems = []
    for kind, registry in found.items():
        assert registry["entries"], f"no {kind} registered"
        for name, entry in registry["entries"].items():
            if not str(entry["module"]).startswith(registry["package"] + "."):
                problems.append(f"{kind} {name!r} is registered by {entry['module']}, not in {registry['package']}")
            if not entry["card_ok"]:
                problems.append(f"{kind} {name!r} has a {entry['card']} card, not a {registry['card_type']}")
    assert not problems, "\n".join(problems)


def test_architecture_doc_maps_every_module_and_package_and_the_readme_links_it() -> None:
    """docs/ARCHITECTURE.md names every module outside the unit packages and every package; the README links it."""
    doc = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    units = {"teachers", "students", "methods", "datasets"}
    modules = [path.relative_to(REPO).as_posix() for path in sorted((REPO / "bench").rglob("*.py"))
               if path.name != "__init__.py" and "migrations" not in path.parts
               and path.relative_to(REPO / "bench").parts[0] not in units]
    missing = [module for module in modules if f"`{module}`" not in doc]
    assert not missing, f"docs/ARCHITECTURE.md does not mention {missing}: add them to its module map"
    packages = [path.name for path in sorted((REPO / "bench").iterdir()) if (path / "__init__.py").exists()]
    unmapped = [package for package in packages if f"`bench/{package}/`" not in doc]
    assert not unmapped, f"docs/ARCHITECTURE.md's layer table does not name {unmapped}"
    assert "(docs/ARCHITECTURE.md)" in (REPO / "README.md").read_text()
