"""Store and read runs: typed SQLAlchemy models in, frozen records out (`Store`, `StorageError`)."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bench.store import migrate
from bench.store.models import Run, RunEpoch
from bench.store.records import EpochRecord, RunRecord
from bench.store.session import get_engine, session_scope

DEFAULT_DB_URL = "sqlite:///results.db"


class StorageError(Exception):
    """A run could not be stored (anything but "this spec is already stored"): the run fails loudly."""


def _reason(error: SQLAlchemyError) -> str:
    """The database's own one-line complaint (e.g. `NOT NULL constraint failed: run_epochs.train_loss`)."""
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _to_record(row: Run) -> RunRecord:
    values = {name: getattr(row, name) for name in RunRecord.column_names()}
    epochs = tuple(
        EpochRecord(e.epoch, e.train_loss, dict(e.loss_terms), e.val_acc, e.seconds, e.train_acc)
        for e in row.epoch_rows
    )
    return RunRecord(**values, epoch_records=epochs)


class Store:
    """Read and write runs at one database URL; the schema is migrated on open."""

    def __init__(self, url: str = DEFAULT_DB_URL, *, migrate_schema: bool = True) -> None:
        self.url = url
        self.engine: Engine = get_engine(url)
        if migrate_schema:
            migrate.upgrade(self.engine)

    def done_keys(self) -> set[str]:
        """Spec keys whose run finished (status 'done'): these are skipped on re-runs."""
        with session_scope(self.engine) as session:
            return set(session.scalars(select(Run.spec_key).where(Run.status == "done")))

    def save_run(self, record: RunRecord) -> bool:
        """Write one run and its epochs in one transaction, replacing an earlier unfinished try.

        Safe across workers: a spec already stored as done is never written again (False). Any other
        failure (a NaN or infinite number, a constraint, a lost connection) raises StorageError.
        """
        bad = record.non_finite_fields()
        if bad:
            raise StorageError(f"run {record.spec_key} not stored: non-finite {', '.join(bad)}")
        for attempt in range(2):
            try:
                return self._write(record)
            except IntegrityError as error:
                existing = self._status(record.spec_key)
                if existing == "done":  # another worker stored this spec between our read and our write
                    return False
                if existing is None or attempt == 1:  # not the spec's unique key: a real failure to store
                    raise StorageError(f"run {record.spec_key} not stored: {_reason(error)}") from error
                # another worker's unfinished row appeared meanwhile: the retry replaces it
            except SQLAlchemyError as error:
                raise StorageError(f"run {record.spec_key} not stored: {_reason(error)}") from error
        raise AssertionError("unreachable")  # pragma: no cover

    def _write(self, record: RunRecord) -> bool:
        """One transaction: drop an unfinished row of the spec, insert the run and its epochs."""
        values = {name: getattr(record, name) for name in RunRecord.column_names()}
        with session_scope(self.engine) as session:
            existing = session.scalar(select(Run).where(Run.spec_key == record.spec_key).with_for_update())
            if existing is not None and existing.status == "done":
                return False
            if existing is not None:
                session.delete(existing)
                session.flush()
            row = Run(**values)
            row.epoch_rows = [
                RunEpoch(
                    epoch=e.epoch, train_loss=e.train_loss, loss_terms=e.loss_terms,
                    val_acc=e.val_acc, seconds=e.seconds, train_acc=e.train_acc,
                )
                for e in record.epoch_records
            ]
            session.add(row)
        return True

    def _status(self, spec_key: str) -> str | None:
        """The stored status of a spec (None when it has no row)."""
        with session_scope(self.engine) as session:
            return session.scalar(select(Run.status).where(Run.spec_key == spec_key))

    def runs(self, **filters: object) -> list[RunRecord]:
        """Runs whose columns equal the given values (e.g. `study="demo"`), oldest first."""
        with session_scope(self.engine) as session:
            query = select(Run).order_by(Run.id)
            for name, value in filters.items():
                query = query.where(getattr(Run, name) == value)
            return [_to_record(row) for row in session.scalars(query)]

    def run(self, spec_key: str) -> RunRecord | None:
        """One run by spec key (or None)."""
        found = self.runs(spec_key=spec_key)
        return found[0] if found else None


__all__ = ["DEFAULT_DB_URL", "EpochRecord", "RunRecord", "StorageError", "Store"]
