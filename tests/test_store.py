"""Store round trip, re-run semantics and the Alembic migration."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest
import sqlalchemy as sa

from bench.store import EpochRecord, RunRecord, Store, migrate
from bench.store.models import Base
from bench.store.session import get_engine


def record(key: str = "k1", status: str = "done", **extra: object) -> RunRecord:
    values: dict[str, object] = dict(
        spec_key=key, study="s", teacher="t", student="resnet", student_kind="standalone",
        method="kd", dataset="digits", seed=0, epochs=2, hparams={"lr": 0.1, "alpha": 0.5},
        data_config={"image_size": 64}, status=status, test_acc=0.9, val_acc=0.8, params=123,
        size_mb=0.5, started_at=datetime(2026, 1, 1, 12), finished_at=datetime(2026, 1, 1, 13),
        epoch_records=(EpochRecord(0, 1.5, {"ce": 1.0, "kd": 2.0}, 0.5, 1.25),
                       EpochRecord(1, 1.0, {"ce": 0.7, "kd": 1.3}, 0.8, 1.5)),
    )
    return RunRecord(**{**values, **extra})  # type: ignore[arg-type]


def test_round_trip_returns_frozen_equal_records(db_url: str) -> None:
    store = Store(db_url)
    original = record()
    store.save_run(original)
    loaded = store.run("k1")
    assert loaded == original
    assert loaded.epoch_records == original.epoch_records
    with pytest.raises(AttributeError):
        loaded.test_acc = 1.0  # type: ignore[misc]
    assert store.done_keys() == {"k1"}
    assert store.runs(student="resnet") == [original] and store.runs(student="x") == []


def test_failed_run_is_replaced_by_a_later_success(db_url: str) -> None:
    store = Store(db_url)
    store.save_run(record(status="failed", error="boom"))
    assert store.done_keys() == set()
    store.save_run(record())
    runs = store.runs()
    assert len(runs) == 1 and runs[0].status == "done"
    with get_engine(db_url).connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM run_epochs")).scalar() == 2


def test_a_done_spec_cannot_be_written_twice(db_url: str) -> None:
    store = Store(db_url)
    assert store.save_run(record()) is True
    assert store.save_run(replace(record(), test_acc=0.1)) is False  # a second worker's copy is dropped
    assert store.run("k1").test_acc == 0.9 and len(store.runs()) == 1  # nothing half-written


def test_metrics_are_real_columns_for_plain_sql(db_url: str) -> None:
    store = Store(db_url)
    store.save_run(record("a", test_acc=0.5))
    store.save_run(record("b", test_acc=0.7))
    with get_engine(db_url).connect() as connection:
        value = connection.execute(sa.text("SELECT student, avg(test_acc) FROM runs GROUP BY student")).one()
    assert value[0] == "resnet" and value[1] == pytest.approx(0.6)


def test_migration_matches_models_and_downgrades(tmp_path) -> None:  # noqa: ANN001
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = get_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        differences = [d for d in compare_metadata(context, Base.metadata)
                       if not (d[0] == "remove_table" and d[1].name == "bench_alembic_version")]
        assert differences == []
        tables = set(sa.inspect(connection).get_table_names())
    assert {"runs", "run_epochs", "bench_alembic_version"} <= tables
    migrate.downgrade(engine, "base")
    assert not {"runs", "run_epochs"} & set(sa.inspect(engine).get_table_names())
    migrate.upgrade(engine)  # and back up again
    assert {"runs", "run_epochs"} <= set(sa.inspect(engine).get_table_names())


def test_optuna_tables_live_beside_ours(db_url: str) -> None:
    import optuna

    Store(db_url)
    optuna.create_study(study_name="x", storage=db_url)
    Store(db_url)  # re-opening migrates nothing and breaks nothing
    tables = set(sa.inspect(get_engine(db_url)).get_table_names())
    assert {"runs", "studies", "trials", "alembic_version", "bench_alembic_version"} <= tables
