"""`bench track wandb`: every run of a query as a W&B run in offline mode, synced later by the user (`wandb sync`).

One W&B project per study ('/' becomes '-'), the run id derived from the spec key (so a sync of a re-export resumes
the same run), config = the resolved spec, history = per-epoch metrics (step = epoch, from 1), summary = the scores,
tags = status and device, the artifact file as a `model` artifact. `<dir>/bench-exported.json` records what was
exported (spec key -> the row's status and finish time): a re-export skips unchanged runs and re-logs changed ones.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from bench.core.errors import BenchError
from bench.track.mlflow_export import ExportCounts
from bench.track.rows import TrackedRun, tracked_runs

LEDGER = "bench-exported.json"


def wandb_id(spec_key: str) -> str:
    """A W&B run id (letters and digits) that is the same for the same spec."""
    return "bench-" + re.sub(r"[^a-z0-9]", "", spec_key.lower())[:40]


def project_name(study: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", study)[:128] or "bench"


def _fingerprint(run: TrackedRun) -> str:
    return json.dumps([run.tags.get("status"), sorted(run.metrics.items()), len(run.history)], default=str)


def export_one(run: TrackedRun, directory: Path) -> None:
    import wandb

    session = wandb.init(mode="offline", dir=str(directory), project=project_name(run.study), name=run.name,
                         id=wandb_id(run.spec_key), config=dict(run.params), resume="allow",
                         tags=[f"status:{run.tags.get('status', '')}", f"study:{run.study}"[:64]],
                         settings=wandb.Settings(silent=True, console="off"))
    try:
        for step, values in run.history:
            session.log(values, step=step)
        session.summary.update({**run.metrics, **{f"tag.{k}": v for k, v in run.tags.items()}})
        if run.artifact is not None:
            artifact = wandb.Artifact(f"student-{run.spec_key[:16]}", type="model")
            artifact.add_file(str(run.artifact))
            session.log_artifact(artifact)
    finally:
        session.finish()


def export_to_wandb(db_url: str, directory: Path, where: str | None = None) -> ExportCounts:
    """Every run of `where` into offline W&B runs under `directory`; unchanged runs already exported are skipped."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise BenchError("bench track wandb needs wandb: pip install 'distill-bench[wandb]'") from None
    directory.mkdir(parents=True, exist_ok=True)
    ledger_path = directory / LEDGER
    ledger = json.loads(ledger_path.read_text()) if ledger_path.is_file() else {}
    counts = ExportCounts()
    os.environ.setdefault("WANDB_SILENT", "true")
    for run in tracked_runs(db_url, where):
        fingerprint = _fingerprint(run)
        if ledger.get(run.spec_key) == fingerprint:
            continue
        export_one(run, directory)
        counts.created += run.spec_key not in ledger
        counts.updated += run.spec_key in ledger
        ledger[run.spec_key] = fingerprint
        temporary = ledger_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(ledger, indent=1, sort_keys=True))
        os.replace(temporary, ledger_path)
    return counts
