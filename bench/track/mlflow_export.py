"""`bench track mlflow`: every run of a query as an MLflow run of an experiment named after its study.

params = the resolved spec (teacher, student, method, dataset, seed, epochs, hparams.*, data.*), metrics = scores,
size, cost and the per-epoch history (step = epoch, from 1), tags = spec key, study, status, device, git commit;
the run's artifact file as an MLflow artifact. The spec key (tag `bench.spec_key`) is the join: a run already
exported is updated in place (new tags, status, metrics it lacks), never duplicated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import BenchError
from bench.track.rows import SPEC_KEY_TAG, TrackedRun, tracked_runs


@dataclass
class ExportCounts:
    created: int = 0
    updated: int = 0

    def describe(self, where: str) -> str:
        return f"{self.created} runs created, {self.updated} updated in {where}"


def _client(tracking_uri: str):  # noqa: ANN202 - an MlflowClient
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise BenchError("bench track mlflow needs MLflow: pip install 'distill-bench[mlflow]'") from None
    return MlflowClient(tracking_uri=tracking_uri)


def _experiment_id(client, study: str, artifact_root: Path | None) -> str:  # noqa: ANN001
    found = client.get_experiment_by_name(study)
    if found is not None:
        return found.experiment_id
    location = (artifact_root / study.replace("/", "_")).resolve().as_uri() if artifact_root else None
    return client.create_experiment(study, artifact_location=location)


def _existing_run(client, experiment_id: str, spec_key: str):  # noqa: ANN001, ANN202
    found = client.search_runs([experiment_id], filter_string=f"tags.`{SPEC_KEY_TAG}` = '{spec_key}'", max_results=2)
    return found[0] if found else None


def _logged_steps(client, run_id: str, keys: set[str]) -> set[tuple[str, int]]:  # noqa: ANN001
    return {(key, metric.step) for key in keys for metric in client.get_metric_history(run_id, key)}


def export_run(client, experiment_id: str, run: TrackedRun) -> bool:  # noqa: ANN001
    """Log one run; True when it was created, False when an existing one was updated."""
    from mlflow.entities import Metric, Param, RunTag

    existing = _existing_run(client, experiment_id, run.spec_key)
    if existing is None:
        run_id = client.create_run(experiment_id, run_name=run.name, tags={SPEC_KEY_TAG: run.spec_key}).info.run_id
        logged: set[tuple[str, int]] = set()
        params = [Param(k, v[:6000]) for k, v in run.params.items()]
    else:
        run_id = existing.info.run_id
        logged = _logged_steps(client, run_id, set(existing.data.metrics))
        params = [Param(k, v[:6000]) for k, v in run.params.items() if k not in existing.data.params]
    final_step = max((step for step, _ in run.history), default=0)
    metrics = [Metric(k, v, 0, final_step) for k, v in run.metrics.items() if (k, final_step) not in logged]
    metrics += [Metric(k, v, 0, step) for step, values in run.history for k, v in values.items()
                if (k, step) not in logged]
    for start in range(0, max(len(metrics), 1), 1000):  # MLflow takes at most 1000 metrics per batch
        client.log_batch(run_id, metrics=metrics[start:start + 1000], params=params if start == 0 else [],
                         tags=[RunTag(k, v) for k, v in run.tags.items()] if start == 0 else [])
    if run.artifact is not None and run.artifact.name not in {a.path for a in client.list_artifacts(run_id)}:
        client.log_artifact(run_id, str(run.artifact))
    status = {"done": "FINISHED", "failed": "FAILED"}.get(run.tags.get("status", ""), "RUNNING")
    if status != "RUNNING":
        client.set_terminated(run_id, status)
    return existing is None


def export_to_mlflow(db_url: str, tracking_uri: str, where: str | None = None,
                     artifact_root: Path | None = None) -> ExportCounts:
    """Every run of `where` to the tracking server or store at `tracking_uri` (one experiment per study)."""
    client = _client(tracking_uri)
    counts = ExportCounts()
    experiments: dict[str, str] = {}
    for run in tracked_runs(db_url, where):
        if run.study not in experiments:
            experiments[run.study] = _experiment_id(client, run.study, artifact_root)
        if export_run(client, experiments[run.study], run):
            counts.created += 1
        else:
            counts.updated += 1
    return counts
