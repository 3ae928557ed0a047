"""What every command shares: the consoles, the common options, one-line user errors, worker options, row
printing."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bench.cli.checks import short_line
from bench.core.errors import BenchError

DEFAULT_DB = "sqlite:///results.db"
DEFAULT_GRID = Path("studies/demo.yaml")

out = Console()
err = Console(stderr=True)

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
ThreadsOption = Annotated[int | None, typer.Option(
    "--threads", help="torch and BLAS threads per worker [default: $BENCH_THREADS, else the CPUs this process may "
    "use (affinity, SLURM_CPUS_PER_TASK, cgroup quota) less other processes' load, capped by $OMP_NUM_THREADS]")]
JobsOption = Annotated[int | None, typer.Option(
    "--jobs", help="local worker processes sharing the grid on this machine, the CPUs divided among them "
    "[default: 1; on CUDA with --workers-per-device, GPUs x K]")]
WorkersPerDeviceOption = Annotated[int, typer.Option(
    "--workers-per-device", help="worker processes per CUDA GPU (K small students fill one device); "
    "each local worker sees only its GPU")]
StorageOption = Annotated[str | None, typer.Option(
    "--storage", help="a study's Optuna storage through a gRPC proxy, grpc://HOST:PORT "
    "(optuna.storages.run_grpc_proxy_server in front of --db) [default: --db itself]")]
KeepOption = Annotated[str, typer.Option(
    "--keep", help="which trained students to keep: all, best (per setting, by val score) or none")]
BundleOption = Annotated[str, typer.Option(
    "--bundle", help="auto: train compatible head-student grid cells together in one stacked model (same teacher, "
    "data, student shape, method, epochs, batch size; results equal separate runs up to float rounding); off: "
    "every cell alone")]


@contextmanager
def user_errors() -> Iterator[None]:
    """A BenchError ends the command with one line on stderr and exit code 2; Ctrl-C with exit code 130."""
    try:
        yield
    except BenchError as error:
        err.print(f"error: {short_line(str(error))}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:  # Ctrl-C: what was running says how to resume it; no traceback
        err.print("interrupted", highlight=False)
        raise typer.Exit(130) from None



def check_bundle(bundle: str) -> str:
    """--bundle's value, or one line saying what it accepts."""
    from bench.run.bundle import BUNDLE_MODES

    if bundle not in BUNDLE_MODES:
        raise BenchError(f"--bundle {bundle!r}: expected {' or '.join(BUNDLE_MODES)}")
    return bundle


def worker_options(run_dir: Path | None, heartbeat_interval: int, grace_period: int,  # noqa: ANN202
                    artifacts: Path | None = None, keep: str = "all", storage: str | None = None,
                    bundle: str = "auto"):
    from bench.artifacts.keep import check_keep
    from bench.sweep.queue import WorkerOptions, grpc_address

    check_bundle(bundle)

    if storage is not None:
        grpc_address(storage)  # the form, said before anything is opened

    if heartbeat_interval < 1 or grace_period <= heartbeat_interval:
        raise BenchError("--heartbeat-interval must be >= 1 and --grace-period larger than it")
    options = WorkerOptions(heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                            poll_seconds=min(5.0, heartbeat_interval),
                            artifacts_dir=artifacts.expanduser().resolve() if artifacts else None,
                            keep=check_keep(keep), storage=storage, bundle=bundle)
    return options if run_dir is None else replace(options, run_dir=run_dir)



def worker_threads(threads: int | None, workers: int = 1) -> int:
    """The thread count of each local worker (bench/core/threads.py), checked before anything runs."""
    from bench.core.threads import resolve_threads

    return resolve_threads(threads, workers)



def local_workers(workers: int | None, per_device: int, device: str) -> list:
    """Each local worker's device (bench/sweep/devices.py) for --jobs/--workers and --workers-per-device."""
    import os

    from bench.sweep.devices import cuda_gpu_count, worker_devices

    return worker_devices(workers, per_device, device, os.environ.get("CUDA_VISIBLE_DEVICES"),
                          cuda_gpu_count(device) if device != "cpu" else 0)



def one_format(csv: bool, as_json: bool) -> None:
    """--csv and --json together is a user error, said before the database is touched."""
    if csv and as_json:
        raise BenchError("--csv and --json are exclusive; pick one")



_CONTROL = {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7f, 0xa0)]}  # C0, DEL and C1: \x1b, ...
_CONTROL.update({0x09: "\\t", 0x0a: "\\n", 0x0d: "\\r"})


def shown(value: object) -> str:
    """A value as table text: control characters (ANSI escapes, bells, carriage returns) escaped, never sent
    to the terminal raw; None is empty."""
    return "" if value is None else str(value).translate(_CONTROL)


def print_rows(columns: list[str], rows: list[tuple], csv: bool, as_json: bool, fit: bool = False) -> None:
    """JSON, CSV or a table that fits the terminal: `fit` (bench runs) shortens only the widest column, with an
    ellipsis; a table that still does not fit is printed one record per block, never as one-letter columns."""
    if as_json:
        sys.stdout.write(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=str) + "\n")
    elif csv:
        import csv as csv_module

        writer = csv_module.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        cells = [[shown(value) for value in row] for row in rows]
        widths = [max([len(shown(column)), *(len(row[i]) for row in cells)]) for i, column in enumerate(columns)]
        room = out.width - 3 * max(len(columns) - 1, 0)  # padding and the divider between columns
        squeezed = _squeeze(widths, room) if fit else None
        if sum(widths) <= room or squeezed is not None:
            _print_table(columns, cells, squeezed)
        else:
            _print_records(columns, cells)
            err.print(f"({len(columns)} columns do not fit {out.width} characters: one record per block; "
                      "--columns picks fewer, --csv or --json suit other tools)", highlight=False, markup=False)


def _squeeze(widths: list[int], room: int) -> list[int] | None:
    """Widths that fit `room` by shortening the widest column alone (to no less than 12), else None."""
    if sum(widths) <= room:
        return widths
    widest = max(range(len(widths)), key=widths.__getitem__)
    left = room - (sum(widths) - widths[widest])
    return None if left < 12 else [left if i == widest else w for i, w in enumerate(widths)]


def _print_table(columns: list[str], cells: list[list[str]], widths: list[int] | None) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)  # light borders: more room for the figures
    for index, column in enumerate(columns):
        table.add_column(shown(column), no_wrap=widths is not None, overflow="ellipsis" if widths else "fold",
                         max_width=widths[index] if widths else None, min_width=widths[index] if widths else None)
    for row in cells:
        table.add_row(*(Text(value) for value in row))  # Text: no markup either
    out.print(table)


def _print_records(columns: list[str], cells: list[list[str]]) -> None:
    """psql's expanded display: each row as `column  value` lines under a `-[ RECORD n ]-` rule."""
    label = max(len(shown(column)) for column in columns)
    for number, row in enumerate(cells, 1):
        out.print(f"-[ RECORD {number} ]" + "-" * max(0, min(out.width, 40) - 14 - len(str(number))),
                  highlight=False, markup=False)
        for column, value in zip(columns, row, strict=True):
            out.print(f"{shown(column):<{label}}  {value}", highlight=False, markup=False, soft_wrap=True)
