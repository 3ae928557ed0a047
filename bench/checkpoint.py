"""Per-run epoch checkpoints under a run directory: written atomically, loaded with weights_only=True."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "checkpoint.pt"


def default_run_dir() -> Path:
    """$BENCH_RUN_DIR, else ~/.cache/distill-bench/runs (put it on a shared disk in a cluster)."""
    env = os.environ.get("BENCH_RUN_DIR")
    return Path(env) if env else Path.home() / ".cache" / "distill-bench" / "runs"


class Checkpointer:
    """The last finished epoch of one run (keyed by spec key): train state plus epoch records."""

    def __init__(self, run_dir: Path, spec_key: str) -> None:
        self.directory = Path(run_dir).expanduser() / spec_key
        self.path = self.directory / CHECKPOINT_FILE

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when this run has no checkpoint yet."""
        if not self.path.is_file():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=True)

    def save(self, state: dict[str, Any]) -> None:
        """Write to a temp file in the same directory, then os.replace: a kill never leaves half a file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=self.directory, prefix=".checkpoint-", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(state, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def saved_epoch(self) -> int | None:
        """How many epochs the checkpoint holds (None without one)."""
        state = self.load()
        return None if state is None else int(state["epoch"])

    def clear(self) -> None:
        """Remove the run's checkpoint once its row is stored."""
        shutil.rmtree(self.directory, ignore_errors=True)
