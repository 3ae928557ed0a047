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
KeepOption = Annotated[str, typer.Option(
    "--keep", help="which trained students to keep: all, best (per setting, by val score) or none")]


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



def worker_options(run_dir: Path | None, heartbeat_interval: int, grace_period: int,  # noqa: ANN202
                    artifacts: Path | None = None, keep: str = "all"):
    from bench.artifacts.keep import check_keep
    from bench.sweep.queue import WorkerOptions

    if heartbeat_interval < 1 or grace_period <= heartbeat_interval:
        raise BenchError("--heartbeat-interval must be >= 1 and --grace-period larger than it")
    options = WorkerOptions(heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                            poll_seconds=min(5.0, heartbeat_interval),
                            artifacts_dir=artifacts.expanduser().resolve() if artifacts else None,
                            keep=check_keep(keep))
    return options if run_dir is None else replace(options, run_dir=run_dir)



def worker_threads(threads: int | None, workers: int = 1) -> int:
    """The thread count of each local worker (bench/core/threads.py), checked before anything runs."""
    from bench.core.threads import resolve_threads

    return resolve_threads(threads, workers)



def weights_map(items: list[str] | None) -> dict[str, str]:
    weights = {}
    for item in items or []:
        teacher, sep, path = item.partition("=")
        if not sep or not path:
            raise BenchError(f"--weights {item!r}: expected TEACHER=PATH")
        weights[teacher] = path
    return weights



def one_format(csv: bool, as_json: bool) -> None:
    """--csv and --json together is a user error, said before the database is touched."""
    if csv and as_json:
        raise BenchError("--csv and --json are exclusive; pick one")



def print_rows(columns: list[str], rows: list[tuple], csv: bool, as_json: bool, fit: bool = False) -> None:
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

