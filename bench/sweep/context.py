"""The one context every sweep loop shares, instead of six arguments threaded through each call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console

from bench.artifacts.store import ArtifactStore, default_artifact_dir
from bench.run.workbench import Workbench
from bench.store.results import Store
from bench.sweep.queue import WorkerOptions


@dataclass(frozen=True)
class Sweep:
    """A grid or study being worked on: its Optuna study and storage, the workbench, the results store, options."""

    study: Any  # optuna.Study (optuna is imported lazily)
    storage: Any  # optuna.storages.RDBStorage, with heartbeats
    bench: Workbench
    store: Store
    options: WorkerOptions
    console: Console

    @property
    def name(self) -> str:
        """The study's name, which is also runs.study of every row it stores."""
        return str(self.study.study_name)

    @property
    def artifacts(self) -> ArtifactStore:
        """Where this sweep's trained students go (--artifacts, else beside the database) and which it keeps."""
        directory = self.options.artifacts_dir or default_artifact_dir(self.store.url)
        return ArtifactStore(directory, self.options.keep)
