"""`bench track mlflow|wandb`: log stored runs to MLflow or to offline W&B runs (optional extras)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli import checks
from bench.cli.common import DEFAULT_DB, DbOption, out, user_errors
from bench.core.errors import BenchError

TRACKERS = ("mlflow", "wandb")
URI_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def track(
    tracker: Annotated[str, typer.Argument(help="mlflow or wandb")],
    tracking_uri: Annotated[str | None, typer.Option(
        "--tracking-uri", help="MLflow tracking URI, e.g. sqlite:///mlflow.db or http://host:5000 (mlflow)")] = None,
    artifact_root: Annotated[Path | None, typer.Option(
        "--artifact-root", help="where new MLflow experiments keep artifacts [default: the server's]")] = None,
    wandb_dir: Annotated[Path, typer.Option("--wandb-dir", help="W&B offline runs directory (wandb only)")] = Path("."),
    where: Annotated[str | None, typer.Option(help="SQL filter on runs, e.g. \"study = 'demo'\"")] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Log every run (params = spec, per-epoch metrics, scores, tags, artifact) to MLflow or offline W&B; re-running
    updates the tracked runs, never duplicates them."""
    with user_errors():
        from bench.store.session import check_connection

        if tracker not in TRACKERS:
            raise BenchError(f"bench track {tracker!r}: expected one of {', '.join(TRACKERS)}")
        if tracker == "mlflow" and not tracking_uri:
            raise BenchError("bench track mlflow: --tracking-uri is required (e.g. --tracking-uri sqlite:///mlflow.db)")
        scheme = (tracking_uri or "").partition(":")[0]
        if tracking_uri is not None and scheme not in URI_SCHEMES:
            raise BenchError(f"--tracking-uri {checks.short_line(tracking_uri)!r}: expected a URI whose scheme is one "
                             f"of {', '.join(URI_SCHEMES)} (e.g. sqlite:///mlflow.db or http://host:5000)")
        checks.paths("track", artifact_root=artifact_root, wandb_dir=wandb_dir)
        check_connection(db)
        if tracker == "mlflow":
            from bench.track.mlflow_export import export_to_mlflow

            counts = export_to_mlflow(db, str(tracking_uri), where, artifact_root)
            out.print(counts.describe(f"MLflow at {tracking_uri}"), highlight=False, soft_wrap=True)
        else:
            from bench.track.wandb_export import export_to_wandb

            counts = export_to_wandb(db, wandb_dir, where)
            out.print(counts.describe(f"offline W&B runs under {wandb_dir / 'wandb'} (send them with `wandb sync`)"),
                      highlight=False, soft_wrap=True)
