"""`bench` command line: run grids, list registries, query results, write reports."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from bench.core.errors import BenchError

DEFAULT_DB = "sqlite:///results.db"
DEFAULT_GRID = Path("studies/demo.yaml")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,  # help text is plain: Rich markup would eat "[default: ...]"
    help="Sweep teachers x students x distillation methods x datasets; keep every run in SQL.",
)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")

DbOption = Annotated[str, typer.Option("--db", help="results database URL (sqlite:///... or postgresql://...)")]
RunDirOption = Annotated[Path | None, typer.Option(
    "--run-dir", help="epoch checkpoints, shared by workers [default: $BENCH_RUN_DIR or ~/.cache/distill-bench/runs]")]
HeartbeatOption = Annotated[int, typer.Option(help="seconds between a running trial's heartbeats")]
GraceOption = Annotated[int, typer.Option(help="seconds without a heartbeat before a trial is dead and retried")]
CacheDirOption = Annotated[Path | None, typer.Option(help="feature cache directory [default: ~/.cache/distill-bench]")]
DataRootOption = Annotated[Path | None, typer.Option(help="where datasets live [default: $BENCH_DATA, system paths]")]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")]
WeightsOption = Annotated[list[str] | None, typer.Option(help="TEACHER=PATH weights file (repeatable)")]
AllowDownloadOption = Annotated[bool, typer.Option(
    "--allow-download", help="let teachers fetch missing weights and torchvision missing data")]
SkipBadOption = Annotated[bool, typer.Option(
    "--skip-bad", help="leave corrupt images out (counted per run) instead of stopping")]
ArtifactsOption = Annotated[Path | None, typer.Option(
    "--artifacts", help="where trained students are kept [default: <SQLite file's directory>/artifacts; "
    "for PostgreSQL $BENCH_ARTIFACTS or ~/.cache/distill-bench/artifacts, which every worker must share]")]
KeepOption = Annotated[str, typer.Option(
    "--keep", help="which trained students to keep: all, best (per setting, by val score) or none")]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            out.print(f"distill-bench {version('distill-bench')}", highlight=False)
        except PackageNotFoundError:  # run from a checkout that was never installed
            out.print("distill-bench (not installed)", highlight=False)
        raise typer.Exit(0)


@app.callback()
def main_options(
    show_version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help="print the version and exit")] = False,
) -> None:
    """Sweep teachers x students x distillation methods x datasets; keep every run in SQL."""


@contextmanager
def user_errors() -> Iterator[None]:
    """A BenchError ends the command with one line on stderr and exit code 2; Ctrl-C with exit code 130."""
    try:
        yield
    except BenchError as error:
        err.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:  # Ctrl-C: what was running says how to resume it; no traceback
        err.print("interrupted", highlight=False)
        raise typer.Exit(130) from None


@app.command()
def run(
    grid_file: Annotated[Path | None, typer.Argument(help=f"grid YAML [default: {DEFAULT_GRID}]")] = None,
    grid: Annotated[Path | None, typer.Option("--grid", help="grid YAML (the same as the FILE argument)")] = None,
    db: DbOption = DEFAULT_DB,
    cache_dir: CacheDirOption = None,
    data_root: DataRootOption = None,
    device: DeviceOption = "auto",
    weights: WeightsOption = None,
    allow_download: AllowDownloadOption = False,
    skip_bad: SkipBadOption = False,
    run_dir: RunDirOption = None,
    artifacts: ArtifactsOption = None,
    keep: KeepOption = "all",
    enqueue_only: Annotated[bool, typer.Option(help="only enqueue the cells; `bench worker`s run them")] = False,
    heartbeat_interval: HeartbeatOption = 30,
    grace_period: GraceOption = 120,
) -> None:
    """Run every cell of a grid not already in the database (re-running is a no-op)."""
    with user_errors():
        from bench.config.grid import load_grid
        from bench.run.workbench import RunContext
        from bench.store.session import check_connection
        from bench.sweep.grid import run_grid

        if grid is not None and grid_file is not None and grid != grid_file:
            raise BenchError(f"two grid files given ({grid_file} and --grid {grid}); give one: bench run FILE")
        options = _worker_options(run_dir, heartbeat_interval, grace_period, artifacts, keep)
        check_connection(db)
        loaded = load_grid(grid or grid_file or DEFAULT_GRID)
        loaded.weights.update(_weights_map(weights))
        context = RunContext(cache_dir, data_root, device, allow_download=allow_download, skip_bad=skip_bad)
        summary = run_grid(loaded, db, context, err, options, enqueue_only)
        out.print(
            f"grid {summary.study}: {summary.total} cells, {summary.skipped} already done, "
            f"{summary.done} run now, {summary.failed} failed; results in {db}",
            highlight=False,
            soft_wrap=True,
        )
        if summary.failed:
            raise typer.Exit(1)


def _worker_options(run_dir: Path | None, heartbeat_interval: int, grace_period: int,  # noqa: ANN202
                    artifacts: Path | None = None, keep: str = "all"):
    from bench.artifacts.store import check_keep
    from bench.sweep.queue import WorkerOptions

    if heartbeat_interval < 1 or grace_period <= heartbeat_interval:
        raise BenchError("--heartbeat-interval must be >= 1 and --grace-period larger than it")
    options = WorkerOptions(heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                            poll_seconds=min(5.0, heartbeat_interval),
                            artifacts_dir=artifacts.expanduser().resolve() if artifacts else None,
                            keep=check_keep(keep))
    return options if run_dir is None else replace(options, run_dir=run_dir)


def _weights_map(items: list[str] | None) -> dict[str, str]:
    weights = {}
    for item in items or []:
        teacher, sep, path = item.partition("=")
        if not sep or not path:
            raise BenchError(f"--weights {item!r}: expected TEACHER=PATH")
        weights[teacher] = path
    return weights


@app.command()
def worker(
    study: Annotated[str, typer.Option("--study", help="name of the grid or study to join")],
    db: DbOption = DEFAULT_DB,
    cache_dir: CacheDirOption = None,
    data_root: DataRootOption = None,
    device: DeviceOption = "auto",
    weights: WeightsOption = None,
    allow_download: AllowDownloadOption = False,
    skip_bad: SkipBadOption = False,
    run_dir: RunDirOption = None,
    artifacts: ArtifactsOption = None,
    keep: KeepOption = "all",
    heartbeat_interval: HeartbeatOption = 30,
    grace_period: GraceOption = 120,
    max_cells: Annotated[int | None, typer.Option(help="stop after this many cells/trials")] = None,
) -> None:
    """Join a grid or study in the database from any machine; take cells until none are left."""
    with user_errors():
        from bench.run.workbench import RunContext
        from bench.store.session import check_connection
        from bench.sweep.worker import run_worker

        check_connection(db)
        options = _worker_options(run_dir, heartbeat_interval, grace_period, artifacts, keep)
        summary = run_worker(study, db, RunContext(cache_dir, data_root, device, allow_download, skip_bad), options,
                             err, _weights_map(weights), max_cells)
        counts = summary.counts
        out.print(f"worker on {summary.kind} {study}: {counts.done} done, {counts.failed} failed, "
                  f"{counts.skipped} already stored", highlight=False, soft_wrap=True)
        if counts.failed:
            raise typer.Exit(1)


@app.command("study")
def study_command(
    study_file: Annotated[Path, typer.Argument(help="study YAML (search space, sampler, pruner, objectives)")],
    trials: Annotated[int | None, typer.Option("--trials", help="trials in the study [default: the file's]")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="stop starting trials after S seconds")] = None,
    db: DbOption = DEFAULT_DB,
    cache_dir: CacheDirOption = None,
    data_root: DataRootOption = None,
    device: DeviceOption = "auto",
    weights: WeightsOption = None,
    allow_download: AllowDownloadOption = False,
    skip_bad: SkipBadOption = False,
    run_dir: RunDirOption = None,
    artifacts: ArtifactsOption = None,
    keep: KeepOption = "all",
    heartbeat_interval: HeartbeatOption = 30,
    grace_period: GraceOption = 120,
) -> None:
    """Search hyperparameters with Optuna on val, then re-run the best trial(s) on test over several seeds."""
    with user_errors():
        from bench.config.study import load_study_file
        from bench.run.workbench import RunContext
        from bench.store.session import check_connection
        from bench.sweep.search import run_study

        if trials is not None and trials < 1:
            raise BenchError(f"--trials {trials}: must be at least 1 (leave it out to use the file's trials)")
        if timeout is not None and not timeout > 0:
            raise BenchError(f"--timeout {timeout:g}: must be more than 0 seconds")
        check_connection(db)
        config = load_study_file(study_file)
        options = _worker_options(run_dir, heartbeat_interval, grace_period, artifacts, keep)
        context = RunContext(cache_dir, data_root, device, allow_download, skip_bad)
        summary = run_study(config, db, context, options, err,
                            trials=trials, timeout=timeout, weights=_weights_map(weights))
        out.print(summary.describe(), highlight=False, soft_wrap=True)


@app.command("list")
def list_entries(
    what: Annotated[str | None, typer.Argument(help="teachers, students, methods or datasets")] = None,
) -> None:
    """Print every registry (or one): name, kind and a one-line description."""
    with user_errors():
        from bench.cli.listing import REGISTRY_NAMES, listing_rows
        from bench.core.registry import Registry

        if what is not None and what not in REGISTRY_NAMES:
            names = Registry[object]("registry")
            for name in REGISTRY_NAMES:
                names.add(name, name, "registry")
            names.check(what)
        rows = listing_rows()
        for name in REGISTRY_NAMES:
            if what in (None, name):
                wide = Console(width=max(out.width, 160)) if name in ("students", "methods") else out
                wide.print(_registry_table(name, rows[name]))
                if name == "teachers":
                    from bench.core.registries import GENERIC_TEACHER_NAMES

                    out.print(f"also any of: {', '.join(GENERIC_TEACHER_NAMES)}", highlight=False, markup=False)
                if name == "students":
                    from bench.core.registries import GENERIC_STUDENT_NAMES

                    out.print(f"also any of: {', '.join(GENERIC_STUDENT_NAMES)}", highlight=False, markup=False)


def _registry_table(name: str, rows: list[list[str]]):  # noqa: ANN202 - a rich Table
    """name, kind, description; students and methods add their hyperparameters with defaults and ranges."""
    from rich.table import Table

    knobs = name in ("students", "methods")
    table = Table(title=name, title_justify="left")
    for column in ("name", "kind", "description"):
        table.add_column(column)
    if knobs:
        table.add_column("hyperparameters (default, valid range)", overflow="fold")
    for entry_name, label, description, hyperparameters in rows:
        table.add_row(entry_name, label, description, *([hyperparameters] if knobs else []))
    return table


@app.command()
def teachers(
    names: Annotated[list[str] | None, typer.Argument(help="teachers to check [default: every registered one]")] = None,
    weights: Annotated[list[str] | None, typer.Option(help="TEACHER=PATH weights file or dir (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON records")] = False,
    all_paper: Annotated[bool, typer.Option("--all-paper", help="with `fetch`: every teacher of studies/paper-*")
                         ] = False,
) -> None:
    """Each teacher's family, params, embedding dim, input, normalisation, taps and whether its weights are here.

    `bench teachers fetch NAME... [--all-paper]` downloads weights into the hub caches and loads each once.
    """
    with user_errors():
        if names and names[0] == "fetch":
            _fetch_teachers(names[1:], all_paper)
            return
        from bench.teachers.inventory import inventory, inventory_table

        explicit = dict(item.partition("=")[::2] for item in weights or [])
        with err.status("teachers") as status:  # one line per teacher while each is looked at (terminals only)

            def progress(index: int, total: int, name: str) -> None:
                status.update(f"teacher {index + 1}/{total}: {name} (weights, architecture on the meta device)")

            infos = inventory(names, explicit, progress)
        if as_json:
            sys.stdout.write(json.dumps([info.as_dict() for info in infos]) + "\n")
            return
        Console(width=max(out.width, 150)).print(inventory_table(infos))  # taps and paths need the room
        for info in infos:
            if info.missing:
                out.print(f"{info.name}: {info.missing}", highlight=False, soft_wrap=True, markup=False)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="one SELECT, WITH ... SELECT, EXPLAIN, VALUES, TABLE or SHOW")],
    db: DbOption = DEFAULT_DB,
    csv: Annotated[bool, typer.Option("--csv", help="print CSV")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON records")] = False,
    allow_superuser: Annotated[bool, typer.Option(
        "--allow-superuser", help="let a PostgreSQL superuser (or server-file/signal role) run the query")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.001, help="seconds a PostgreSQL statement may run")
                       ] = 300.0,
) -> None:
    """Query results with one read-only SQL statement (anything that could write or has side effects is refused)."""
    with user_errors():
        from bench.store.session import check_connection
        from bench.store.sql import read_only_query

        _one_format(csv, as_json)
        check_connection(db)
        columns, rows = read_only_query(db, query, allow_superuser=allow_superuser, timeout_s=timeout)
        _print_rows(columns, rows, csv, as_json)


def _one_format(csv: bool, as_json: bool) -> None:
    """--csv and --json together is a user error, said before the database is touched."""
    if csv and as_json:
        raise BenchError("--csv and --json are exclusive; pick one")


def _print_rows(columns: list[str], rows: list[tuple], csv: bool, as_json: bool, fit: bool = False) -> None:
    """JSON, CSV or a table; `fit` keeps each cell on one line (bench runs picks columns that fit the terminal),
    otherwise long cells wrap so that no column is ever hidden."""
    if as_json:
        sys.stdout.write(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=str) + "\n")
    elif csv:
        import csv as csv_module

        writer = csv_module.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        from rich import box
        from rich.table import Table

        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)  # light borders: more room for the figures
        for column in columns:
            table.add_column(column, no_wrap=fit, overflow="ellipsis" if fit else "fold")
        for row in rows:
            table.add_row(*("" if value is None else str(value) for value in row))
        out.print(table)


@app.command()
def report(
    db: DbOption = DEFAULT_DB,
    out_dir: Annotated[Path, typer.Option("--out", help="output directory")] = Path("reports"),
    where: Annotated[str | None, typer.Option(help="SQL filter on runs, e.g. \"dataset = 'digits'\"")] = None,
    formats: Annotated[str, typer.Option("--format", help="comma-separated: md, html, csv, tex")] = "md,html,csv",
) -> None:
    """Write comparison tables (student x teacher per epoch budget), gains over scratch, plots and provenance."""
    with user_errors():
        from bench.report.write import parse_formats, write_report
        from bench.store.session import check_connection

        check_connection(db)

        chosen = parse_formats(formats)
        if out_dir.exists() and not out_dir.is_dir():
            raise BenchError(f"--out {out_dir}: exists and is not a directory; give a directory for the report")
        paths = write_report(db, out_dir, where, chosen)
        for path in paths:
            out.print(f"wrote {path}", highlight=False)


@app.command()
def runs(
    db: DbOption = DEFAULT_DB,
    where: Annotated[str | None, typer.Option(help="SQL filter on runs, e.g. \"status != 'done'\"")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="print CSV")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON records")] = False,
    columns: Annotated[str | None, typer.Option(
        "--columns", help="comma-separated run columns to show, e.g. id,method,seed,test_acc,val_acc "
        "[default: what fits the terminal]")] = None,
) -> None:
    """List runs (id, short spec key, what ran, the hyperparameters that differ, status, scores)."""
    with user_errors():
        from bench.report.runs import run_table
        from bench.store.session import check_connection

        _one_format(csv, as_json)
        check_connection(db)
        names, rows = run_table(db, where, columns, screen=not (csv or as_json), width=out.width)
        _print_rows(names, rows, csv, as_json, fit=columns is None)


@app.command()
def show(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="run id or spec key prefix")],
    db: DbOption = DEFAULT_DB,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show one run: every column, then its epochs (loss terms, val accuracy, seconds)."""
    with user_errors():
        from bench.report.runs import epoch_table, find_run
        from bench.store.session import check_connection

        check_connection(db)

        run_row = find_run(db, run_ref)
        epochs = epoch_table(db, int(run_row["id"]))
        if as_json:
            record = {k: (None if _is_missing(v) else v) for k, v in run_row.items()}
            record["epoch_rows"] = json.loads(epochs.to_json(orient="records"))
            sys.stdout.write(json.dumps(record, default=str) + "\n")
            return
        _print_rows(["column", "value"], [(k, _show_value(v)) for k, v in run_row.items()], False, False)
        out.print(f"epochs ({len(epochs)})", highlight=False)
        _print_rows(list(epochs.columns), [tuple(_show_value(v) for v in row) for row in epochs.itertuples(False)],
                    False, False)


@app.command("eval")
def eval_command(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="run id or spec key prefix")],
    split: Annotated[str, typer.Option("--split", help="test, val or train")] = "test",
    db: DbOption = DEFAULT_DB,
    cache_dir: CacheDirOption = None,
    data_root: DataRootOption = None,
    device: DeviceOption = "auto",
    weights: WeightsOption = None,
) -> None:
    """Load a run's kept student from its artifact (sha256 checked) and recompute its stored metric; exit 1 if
    they differ."""
    with user_errors():
        from bench.artifacts.store import evaluate_run, load_run, stored_metric
        from bench.core.names import SPLITS
        from bench.run.workbench import RunContext
        from bench.store.session import check_connection

        if split not in SPLITS:
            raise BenchError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
        check_connection(db)
        loaded = load_run(db, run_ref, RunContext(cache_dir, data_root, device), _weights_map(weights))
        stored, recomputed = stored_metric(loaded, split), evaluate_run(loaded, split)
        shown = "none" if stored is None else f"{stored:.6f}"
        out.print(f"run {loaded.record.spec_key[:12]} {split}: stored {shown}, recomputed {recomputed:.6f} "
                  f"({loaded.record.device or 'unknown device'} then, {loaded.bench.device} now)",
                  highlight=False, soft_wrap=True)
    if stored is not None and stored != recomputed:
        err.print(f"error: run {loaded.record.spec_key[:12]}: the artifact scores {recomputed!r} on {split}, the row "
                  f"says {stored!r} (another device or library version?)", markup=False, highlight=False,
                  soft_wrap=True)
        raise typer.Exit(1)


def _is_missing(value: object) -> bool:
    try:
        return bool(value is None or value != value)  # NaN/NaT are not equal to themselves
    except (TypeError, ValueError):
        return False


def _show_value(value: object) -> str:
    if _is_missing(value):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)


@app.command("export")
def export_command(
    run_ref: Annotated[str | None, typer.Argument(metavar="RUN", help="run id or spec key prefix")] = None,
    out_file: Annotated[Path, typer.Option("--out", help="file to write (required)")] = None,  # type: ignore[assignment]
    fmt: Annotated[str, typer.Option("--format", help="safetensors, torchscript or onnx")] = "onnx",
    best: Annotated[bool, typer.Option("--best", help="export the best done student run of --where")] = False,
    where: Annotated[str | None, typer.Option(help="SQL condition on runs for --best, e.g. \"dataset = 'digits'\"")
                     ] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Write a run's trained student as one model that takes images (a head student with its teacher backbone)."""
    with user_errors():
        from bench.artifacts.export import FORMATS, best_run, export_run
        from bench.store.session import check_connection

        if best == (run_ref is not None):
            raise BenchError("bench export: give a RUN or --best (with --where), not both and not neither")
        if out_file is None:
            raise BenchError("bench export: --out FILE is required (e.g. --out student.onnx)")
        if fmt not in FORMATS:
            raise BenchError(f"--format {fmt!r} is not an export format; use one of {', '.join(FORMATS)}")
        check_connection(db)
        chosen = best_run(db, where or "1 = 1") if best else str(run_ref)
        diff = export_run(db, chosen, fmt, out_file)  # type: ignore[arg-type]
        out.print(f"wrote {out_file} (run {chosen}, {fmt}; max abs diff vs PyTorch {diff:.2g})", highlight=False,
                  soft_wrap=True)


@app.command("plan")
def plan_command(
    plan_file: Annotated[Path, typer.Argument(metavar="FILE", help="grid or study YAML")],
    gpu: Annotated[str | None, typer.Option(help="estimate for this GPU from the cited table (h200, h100, a100, "
                                                 "rtx4090) instead of timing batches here")] = None,
    db: DbOption = DEFAULT_DB,
    data_root: DataRootOption = None,
    weights: WeightsOption = None,
) -> None:
    """Dry run: the cells, which are done, missing weights and data (and the fix), estimated time per phase."""
    with user_errors():
        from bench.plan.dry_run import make_plan

        plan = make_plan(plan_file, db, gpu, _weights_map(weights), data_root)
        for line in plan.lines:
            out.print(line, highlight=False, markup=False, soft_wrap=True)
        if not plan.runnable:
            out.print(f"not runnable yet: missing {', '.join(plan.missing)}", highlight=False, markup=False,
                      soft_wrap=True)
            raise typer.Exit(2)
        out.print("runnable: every weight and dataset is present", highlight=False)


def _fetch_teachers(names: list[str], all_paper: bool) -> None:
    """`bench teachers fetch`: one line per teacher fetched; exit 2 with one line per teacher that was not."""
    from bench.teachers.fetch import PAPER_TEACHERS, fetch_all

    chosen = list(dict.fromkeys([*names, *(PAPER_TEACHERS if all_paper else ())]))
    if not chosen:
        raise BenchError("bench teachers fetch: name the teachers to fetch, or pass --all-paper")
    fetched, failed = fetch_all(chosen)
    for item in fetched:
        out.print(f"{item.name}: {item.origin} {item.path} (loads: {item.params / 1e6:.1f}M parameters)",
                  highlight=False, markup=False, soft_wrap=True)
    for line in failed:
        err.print(f"error: {line}", highlight=False, markup=False, soft_wrap=True)
    if failed:
        raise typer.Exit(2)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv, prog_name="bench")


_: Callable[..., object] = main
