"""Store round trip, re-run semantics and the Alembic migration."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import sqlalchemy as sa

from bench.store import migrate
from bench.store.models import Base, Run
from bench.store.records import EpochRecord, RunRecord
from bench.store.results import StorageError, Store
from bench.store.session import get_engine
from tests.support.records import record


def test_round_trip_returns_frozen_equal_records(db_url: str) -> None:
    store = Store(db_url)
    original = record()
    store.save_run(original)
    loaded = store.run("k1")
    assert loaded == original
    assert loaded.epoch_records == original.epoch_records
    assert [e.train_acc for e in loaded.epoch_records] == [0.4, 0.7]
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


def nan_epoch(epoch: int = 0, **changes: object) -> EpochRecord:
    return replace(EpochRecord(epoch, 1.0, {"ce": 1.0}, 0.5, 1.0), **changes)


@pytest.mark.parametrize(("epoch", "field"), [
    (nan_epoch(train_loss=float("nan")), "epoch_records[0].train_loss"),
    (nan_epoch(loss_terms={"ce": float("inf")}), "epoch_records[0].loss_terms.ce"),
    (nan_epoch(train_acc=float("nan")), "epoch_records[0].train_acc"),
])
def test_a_non_finite_epoch_is_refused_loudly_not_dropped(db_url: str, epoch: EpochRecord, field: str) -> None:
    """A NaN loss broke run_epochs.train_loss NOT NULL and the IntegrityError read as 'already stored'."""
    store = Store(db_url)
    with pytest.raises(StorageError, match=f"run k1 not stored: non-finite {re.escape(field)}"):
        store.save_run(record(epoch_records=(epoch,)))
    assert store.runs() == []


def test_a_non_finite_run_metric_is_refused(db_url: str) -> None:
    store = Store(db_url)
    with pytest.raises(StorageError, match="non-finite val_acc"):
        store.save_run(record(val_acc=float("nan")))
    assert store.runs() == []


def test_a_constraint_violation_other_than_the_spec_key_raises(db_url: str) -> None:
    """Only the unique spec_key conflict may mean 'another worker stored it'; a NOT NULL one is a real failure."""
    store = Store(db_url)
    with pytest.raises(StorageError, match="run k1 not stored: .*NOT NULL.*train_loss"):
        store.save_run(record(epoch_records=(nan_epoch(train_loss=None),)))
    with pytest.raises(StorageError, match="run k2 not stored: .*NOT NULL.*student"):
        store.save_run(record("k2", student=None))
    assert store.runs() == []


def test_a_done_row_written_by_another_worker_mid_save_is_already_stored(db_url: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The race the IntegrityError path is for: the other worker inserts after our read, before our insert."""
    store, other = Store(db_url), Store(db_url)
    real_write = Store._write

    def racing_write(self: Store, mine: RunRecord) -> bool:
        if self is store:
            real_write(other, replace(mine, test_acc=0.5))  # the other worker's done row lands first
            with get_engine(db_url).begin() as connection:  # then our insert hits the unique key
                connection.execute(sa.insert(Run.__table__).values(
                    {name: getattr(mine, name) for name in RunRecord.column_names()}))
        return real_write(self, mine)

    monkeypatch.setattr(Store, "_write", racing_write)
    assert store.save_run(record()) is False
    assert [run.test_acc for run in store.runs()] == [0.5]


def test_store_errors_on_postgres_are_loud(postgres_url: str) -> None:
    """PostgreSQL rejects NaN in JSON and NULL in NOT NULL alike: both raise, a duplicate done spec does not."""
    store = Store(postgres_url)
    with pytest.raises(StorageError, match="non-finite epoch_records\\[0\\].loss_terms.ce"):
        store.save_run(record(epoch_records=(nan_epoch(loss_terms={"ce": float("nan")}),)))
    with pytest.raises(StorageError, match="run k1 not stored: .*train_loss"):
        store.save_run(record(epoch_records=(nan_epoch(train_loss=None),)))
    assert store.save_run(record()) is True and store.save_run(record()) is False
    assert len(store.runs()) == 1
