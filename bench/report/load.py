"""Runs and epochs from the database as pandas DataFrames, over a read-only connection."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pandas as pd
from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError

from bench.core.errors import BenchError
from bench.store.reader import set_reader_role
from bench.store.sql import read_only_engine
from bench.store.sqlcheck import StatementRefused, check_statement

JSON_COLUMNS = ("hparams", "data_config", "loss_terms")
DATE_COLUMNS = ("started_at", "finished_at")
ID_CHUNK = 500  # bound the number of bound parameters per query


def _first_line(error: Exception) -> str:
    if not isinstance(error, SQLAlchemyError) and isinstance(error.__cause__, SQLAlchemyError):
        error = error.__cause__  # pandas wraps the driver's error in its own DatabaseError
    cause = getattr(error, "orig", None) or error
    return str(cause).splitlines()[0]


def _decode(frame: pd.DataFrame) -> pd.DataFrame:
    """JSON text columns to dicts and date text to timestamps (SQLite returns both as text)."""
    for column in JSON_COLUMNS:
        if column in frame:
            frame[column] = [json.loads(v) if isinstance(v, str) else (v or {}) for v in frame[column]]
    for column in DATE_COLUMNS:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], errors="coerce")
    return frame


def read_frame(db_url: str, query: str, params: dict | None = None, where: str | None = None) -> pd.DataFrame:
    """Run one SELECT on a read-only connection; a bad `where` is a one-line BenchError. A `where` is user SQL: on
    PostgreSQL it runs as `bench_reader` (SELECT on bench's and Optuna's tables only), as `bench sql` does, so a
    side-effecting function in it fails for lack of privilege."""
    engine, _ = read_only_engine(db_url)
    try:
        check_statement(query, engine.dialect.name)  # a --where is user SQL too: one read-only statement
        with engine.connect() as connection:
            if not inspect(connection).has_table("runs"):
                return pd.DataFrame()
            if where and engine.dialect.name == "postgresql":  # user SQL: as bench sql runs it
                set_reader_role(connection, f"--where {where!r}")  # until this read-only transaction ends
            return _decode(pd.read_sql(text(query), connection, params=params))
    except StatementRefused as refused:
        raise BenchError(f"--where {where!r}: refused: {refused.reason}" if where else str(refused)) from None
    except (SQLAlchemyError, pd.errors.DatabaseError) as error:
        label = f"--where {where!r}" if where else "SQL error"
        raise BenchError(f"{label}: {_first_line(error)}") from None
    finally:
        engine.dispose()


def load_runs(db_url: str, where: str | None = None) -> pd.DataFrame:
    """All rows of `runs` (filtered by the SQL `where`); an empty frame if there are none."""
    if where is not None and ";" in where:
        raise BenchError(f"--where {where!r}: one condition only (no ';')")
    query = "SELECT * FROM runs" + (f" WHERE {where}" if where else "") + " ORDER BY id"
    return read_frame(db_url, query, where=where)


TRAINED_RUN_PREFIX = "run:"  # a trained-run teacher's name: `run:<12 characters of its run's spec key>`


def trained_run_students(db_url: str, teachers: Iterable[str]) -> dict[str, str]:
    """The architecture of each trained-run teacher (`run:<key>` -> its run's student), read from the teacher run's
    own row in the same database whatever --where kept; a run not found there is left out."""
    keys = sorted({name[len(TRAINED_RUN_PREFIX):] for name in teachers
                   if isinstance(name, str) and name.startswith(TRAINED_RUN_PREFIX)})
    found: dict[str, str] = {}
    for start in range(0, len(keys), ID_CHUNK):
        chunk = keys[start:start + ID_CHUNK]
        clauses = " OR ".join(f"substr(spec_key, 1, {len(key)}) = :k{i}" for i, key in enumerate(chunk))
        frame = read_frame(db_url, f"SELECT spec_key, student FROM runs WHERE {clauses} ORDER BY id",
                           params={f"k{i}": key for i, key in enumerate(chunk)})
        for key in chunk:
            students = {row.student for row in frame.itertuples() if str(row.spec_key).startswith(key)}
            if len(students) == 1:
                found[TRAINED_RUN_PREFIX + key] = students.pop()
    return found


def load_epochs(db_url: str, run_ids: Iterable[int]) -> pd.DataFrame:
    """The `run_epochs` rows of the given runs, ordered by run and epoch."""
    ids = sorted({int(i) for i in run_ids})
    if not ids:
        return pd.DataFrame(columns=["run_id", "epoch", "train_loss", "loss_terms", "val_acc", "seconds"])
    frames = []
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start:start + ID_CHUNK]
        placeholders = ", ".join(f":id{i}" for i in range(len(chunk)))
        query = f"SELECT * FROM run_epochs WHERE run_id IN ({placeholders}) ORDER BY run_id, epoch"
        frames.append(read_frame(db_url, query, params={f"id{i}": v for i, v in enumerate(chunk)}))
    return pd.concat(frames, ignore_index=True)
