"""Per-run epoch checkpoints under a run directory: written atomically, sealed by a sha256, verified on load.

The file holds {"sha256", "payload"}: the torch.save bytes of the train state and their digest, so a reader
never sees a state and a hash from different writes. A checkpoint that is unreadable, fails its sha256,
belongs to another spec or claims an impossible epoch count is moved aside (`checkpoint.pt.corrupt-<time>`,
never deleted) and the run starts again from epoch 0. Both layers load with weights_only=True.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

from bench.core.quarantine import quarantine

CHECKPOINT_FILE = "checkpoint.pt"
RESTART = "the run restarts from epoch 0"


def default_run_dir() -> Path:
    """$BENCH_RUN_DIR, else ~/.cache/distill-bench/runs (put it on a shared disk in a cluster)."""
    env = os.environ.get("BENCH_RUN_DIR")
    return Path(env) if env else Path.home() / ".cache" / "distill-bench" / "runs"


def seal(state: dict[str, Any]) -> dict[str, Any]:
    """The state as torch.save bytes (a uint8 tensor) with their sha256: what a checkpoint file holds."""
    import torch  # here, not at the top: the queue reads `default_run_dir` in commands that never train

    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    return {"sha256": hashlib.sha256(payload).hexdigest(),
            "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8)}


def unseal(sealed: Any) -> Any:  # noqa: ANN401 - whatever the file held
    """The state inside a sealed checkpoint; ValueError when the seal is missing or broken."""
    import torch

    if not isinstance(sealed, dict) or not isinstance(sealed.get("payload"), torch.Tensor):
        raise ValueError("no sealed payload (written by an older version, or not a checkpoint)")
    payload = sealed["payload"].numpy().tobytes()
    if hashlib.sha256(payload).hexdigest() != sealed.get("sha256"):
        raise ValueError("its sha256 does not match its contents")
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)


class Checkpointer:
    """The last finished epoch of one run (keyed by spec key): train state plus epoch records."""

    def __init__(self, run_dir: Path, spec_key: str, epochs: int | None = None) -> None:
        self.directory = Path(run_dir).expanduser() / spec_key
        self.path = self.directory / CHECKPOINT_FILE
        self.spec_key = spec_key
        self.epochs = epochs  # the spec's epochs: a checkpoint claiming more is rejected

    def load(self) -> LoadedCheckpoint | None:
        """The verified state, or None when there is none or it was rejected (moved aside, logged)."""
        if not self.path.is_file():
            return None
        import torch

        try:
            state = unseal(torch.load(self.path, map_location="cpu", weights_only=True))
        except Exception as error:  # noqa: BLE001 - format, unpickling or hash errors: never trusted, never fatal
            return self.reject(f"unreadable ({type(error).__name__}: {str(error).split('. ')[0][:160]})")
        problem = self._problem(state)
        return self.reject(problem) if problem else LoadedCheckpoint(state, self)

    def _problem(self, state: Any) -> str | None:  # noqa: ANN401 - whatever the file held
        """Why a readable checkpoint cannot belong to this run, or None."""
        if not isinstance(state, dict):
            return f"it holds a {type(state).__name__}, not a state dict"
        if state.get("spec_key") != self.spec_key:
            return f"it belongs to spec {state.get('spec_key')!r}, not {self.spec_key!r}"
        epoch, records = state.get("epoch"), state.get("records")
        if type(epoch) is not int or epoch < 0 or (self.epochs is not None and epoch > self.epochs):
            return f"it claims epoch {epoch!r} of a {self.epochs}-epoch run"
        if not isinstance(records, list) or len(records) != epoch:
            return f"it claims {epoch} epochs but holds {len(records) if isinstance(records, list) else 0} records"
        if [record.get("epoch") if isinstance(record, dict) else None for record in records] != list(range(epoch)):
            return f"its epoch records are not epochs 0..{epoch - 1}"
        return None

    def reject(self, reason: str) -> None:
        """Move the checkpoint aside (evidence is kept) and say why in one line; returns None."""
        quarantine(self.path, f"checkpoint rejected: {reason}", RESTART)

    def save(self, state: dict[str, Any]) -> None:
        """Seal the state (with its spec key), write a temp file, fsync, os.replace: never half a file. The bytes
        are made in memory and written by Python, so a full disk is the OSError it is (torch.save to a file says
        only `unexpected pos`), and the run fails with that reason."""
        import torch

        buffer = io.BytesIO()
        torch.save(seal({**state, "spec_key": self.spec_key}), buffer)
        self.directory.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=self.directory, prefix=".checkpoint-", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(buffer.getbuffer())
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def saved_epoch(self) -> int | None:
        """How many epochs the checkpoint holds (None without a valid one)."""
        state = self.load()
        return None if state is None else int(state["epoch"])

    def clear(self) -> None:
        """Remove the run's checkpoint once its row is stored; rejected files stay as evidence."""
        if not self.directory.is_dir():
            return
        for path in [self.path, *self.directory.glob(".checkpoint-*.tmp")]:
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # still holding rejected files
            self.directory.rmdir()


class LoadedCheckpoint(dict):
    """A verified checkpoint's state; `reject(reason)` moves the file aside when it does not fit the run."""

    def __init__(self, state: dict[str, Any], owner: Checkpointer) -> None:
        super().__init__(state)
        self._owner = owner

    def reject(self, reason: str) -> None:
        """Move the checkpoint aside: the run will not resume from it (see Checkpointer.reject)."""
        self._owner.reject(reason)
