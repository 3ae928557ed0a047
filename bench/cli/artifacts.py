"""`bench eval` and `bench export`: a run's kept student re-scored or written as a model that takes images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli import checks
from bench.cli.common import (
    DEFAULT_DB,
    CacheDirOption,
    DataRootOption,
    DbOption,
    DeviceOption,
    WeightsOption,
    err,
    out,
    user_errors,
)
from bench.core.errors import BenchError


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
        from bench.run.context import RunContext
        from bench.store.session import check_connection

        if split not in SPLITS:
            raise BenchError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
        checks.run_ref(run_ref)
        checks.paths("eval", cache_dir=cache_dir, data_root=data_root)
        checks.device(device)
        eval_weights = checks.weights(weights)
        check_connection(db)
        loaded = load_run(db, run_ref, RunContext(cache_dir, data_root, device), eval_weights)
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
        if run_ref is not None:
            checks.run_ref(run_ref)
        checks.paths("export", out_file=out_file)
        check_connection(db)
        chosen = best_run(db, where or "1 = 1") if best else str(run_ref)
        diff = export_run(db, chosen, fmt, out_file)  # type: ignore[arg-type]
        out.print(f"wrote {out_file} (run {chosen}, {fmt}; max abs diff vs PyTorch {diff:.2g})", highlight=False,
                  soft_wrap=True)

