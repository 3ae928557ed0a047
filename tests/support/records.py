"""Run record builders: a complete `done` RunRecord with two epochs, any field overridden by keyword."""

from __future__ import annotations

from datetime import datetime

from bench.store.records import EpochRecord, RunRecord


def record(key: str = "k1", status: str = "done", **extra: object) -> RunRecord:
    """A stored-run record under spec key `key` (resnet + kd on digits, two epochs); `extra` replaces fields."""
    values: dict[str, object] = dict(
        spec_key=key, study="s", teacher="t", student="resnet", student_kind="standalone",
        method="kd", dataset="digits", seed=0, epochs=2, hparams={"lr": 0.1, "alpha": 0.5},
        data_config={"image_size": 64}, status=status, test_acc=0.9, val_acc=0.8, params=123,
        size_mb=0.5, started_at=datetime(2026, 1, 1, 12), finished_at=datetime(2026, 1, 1, 13),
        epoch_records=(EpochRecord(0, 1.5, {"ce": 1.0, "kd": 2.0}, 0.5, 1.25, train_acc=0.4),
                       EpochRecord(1, 1.0, {"ce": 0.7, "kd": 1.3}, 0.8, 1.5, train_acc=0.7)),
    )
    return RunRecord(**{**values, **extra})  # type: ignore[arg-type]
