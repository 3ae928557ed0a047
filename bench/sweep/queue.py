"""The Optuna queue many workers share: storage and study, enqueued cells, atomic claims, heartbeats, stale trials."""

from __future__ import annotations

import logging
import os
import socket
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from bench.core.errors import BenchError
from bench.core.names import LABEL_ATTR, SPEC_ATTR, SPEC_KEY_ATTR, WORKER_ATTR, WORKER_JOB_ATTR, WORKER_PROCESS_ATTR
from bench.core.spec import ExperimentSpec, setting_labels
from bench.store.lock import SCHEMA_LOCK, database_lock
from bench.store.reader import grant_reader
from bench.store.session import connect_sqlite_read_only, driver_url
from bench.sweep.checkpoint import default_run_dir
from bench.sweep.optuna_private import STUDIES_TABLE, STUDY_NAMES_SQL, set_state_if, stale_trial_ids, trial_id

log = logging.getLogger(__name__)
SQLITE_TIMEOUT_S = 60


@dataclass(frozen=True)
class WorkerOptions:
    """How a process takes part in a shared study: checkpoints, heartbeat, grace period, polling."""

    run_dir: Path = field(default_factory=default_run_dir)
    heartbeat_interval: int = 30  # seconds between a running trial's heartbeats
    grace_period: int = 120  # a running trial without a heartbeat this long belongs to a dead worker
    poll_seconds: float = 5.0  # how often an idle worker looks for new or stale cells
    max_retry: int = 3  # how often a dead worker's trial is handed on
    artifacts_dir: Path | None = None  # --artifacts: the trained students' store [default: beside the database]
    keep: str = "all"  # --keep: all, best (per setting, by val score) or none
    storage: str | None = None  # --storage grpc://HOST:PORT: a study's Optuna traffic through a GrpcStorageProxy
    bundle: str = "auto"  # --bundle: auto (compatible head-student cells train together, bench/run/bundle.py) | off


GRPC_PREFIX = "grpc://"
PROXY_WAIT_S = 20.0  # how long a worker waits for the proxy to answer before one line says none does


def grpc_address(value: str) -> tuple[str, int]:
    """`--storage grpc://HOST:PORT` -> (host, port), or one line saying the form."""
    rest = value[len(GRPC_PREFIX):] if value.startswith(GRPC_PREFIX) else None
    host, sep, port = (rest or "").rpartition(":")
    if rest is None or not sep or not host or "/" in rest or not port.isdigit() or not 0 < int(port) < 65536:
        raise BenchError(f"--storage {value!r}: expected grpc://HOST:PORT, the address of an Optuna gRPC proxy "
                         "(optuna.storages.run_grpc_proxy_server) in front of --db")
    return host.strip("[]"), int(port)


def open_proxy(address: str):  # noqa: ANN201 - optuna GrpcStorageProxy
    """A GrpcStorageProxy to `--storage grpc://HOST:PORT`, once the proxy answers (else one line)."""
    import optuna

    host, port = grpc_address(address)
    try:
        import grpc  # noqa: F401 - Optuna's proxy client needs grpcio
    except ImportError:
        raise BenchError(f"--storage {address}: the gRPC proxy needs grpcio (pip install grpcio)") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        proxy = optuna.storages.GrpcStorageProxy(host=host, port=port)
    try:
        proxy.wait_server_ready(timeout=PROXY_WAIT_S)
    except ConnectionError:
        proxy.close()
        raise BenchError(f"--storage {address}: no gRPC proxy answered within {PROXY_WAIT_S:.0f} s (start one with "
                         "optuna.storages.run_grpc_proxy_server in front of --db)") from None
    return proxy


def open_storage(db_url: str, options: WorkerOptions):  # noqa: ANN201 - optuna RDBStorage, imported lazily
    """An RDBStorage with heartbeats (a dead worker's trial is failed and re-enqueued, same user attrs), or the
    gRPC proxy of `--storage` (no heartbeats through it)."""
    import optuna

    if options.storage is not None:
        return open_proxy(options.storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    new_api = hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback")  # optuna >= 4.9
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback if new_api else optuna.storages.RetryFailedTrialCallback
    callback_name = "heartbeat_stale_trial_callback" if new_api else "failed_trial_callback"
    engine_kwargs: dict[str, Any] = {}
    if db_url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    with warnings.catch_warnings(), database_lock(db_url, SCHEMA_LOCK):  # one process creates Optuna's schema
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: what we need
        storage = optuna.storages.RDBStorage(
            driver_url(db_url), engine_kwargs=engine_kwargs, heartbeat_interval=options.heartbeat_interval,
            grace_period=options.grace_period, **{callback_name: retry(max_retry=options.max_retry)},
        )
    grant_reader(storage.engine)  # PostgreSQL: bench sql's read-only role may SELECT Optuna's new tables too
    return storage


def open_study(name: str, storage, directions: list[str] | None = None):  # noqa: ANN001, ANN201 - optuna types
    """Create or open the study `name` (a database URL or an RDBStorage)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=name, storage=storage, directions=directions or ["maximize"],
                               load_if_exists=True)


def enqueue_cells(study, cells: Iterable[ExperimentSpec], done_keys: Callable[[], set[str]]) -> int:  # noqa: ANN001
    """Enqueue every cell not done, not waiting and not running; returns how many are open now.

    Call it under the database's enqueue lock: two processes reading the open trials at once would both
    enqueue a missing cell. The open trials are read before the done keys, so a cell finished in between
    (its row is stored before its trial completes) is seen in one or the other.
    """
    from optuna.trial import TrialState

    open_states = (TrialState.WAITING, TrialState.RUNNING)
    queued = {t.user_attrs.get(SPEC_KEY_ATTR) for t in study.get_trials(deepcopy=False, states=open_states)}
    cells = list(cells)
    labels = setting_labels(cells)  # the progress line names the hparams that tell the grid's cells apart
    done = done_keys()
    for spec in cells:
        if spec.key not in done and spec.key not in queued:
            attrs = {SPEC_KEY_ATTR: spec.key, SPEC_ATTR: spec.to_dict(), LABEL_ATTR: labels[spec.key]}
            study.enqueue_trial({}, user_attrs=attrs)
            queued.add(spec.key)
    return len(queued)


def open_specs(study) -> list[ExperimentSpec]:  # noqa: ANN001
    """The specs of the study's waiting and running cells (from their user attrs)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    return [ExperimentSpec.from_dict(t.user_attrs[SPEC_ATTR]) for t in trials if SPEC_ATTR in t.user_attrs]


def study_names(db_url: str) -> list[str]:
    """The studies in the database, read without creating anything (no file, no table, no schema)."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:" or not Path(url.database).expanduser().is_file():
            return []
        path = Path(url.database).expanduser().resolve()  # read-only, no file beside it (a read-only disk works)
        engine = create_engine("sqlite://", creator=lambda: connect_sqlite_read_only(path), poolclass=NullPool)
    else:
        engine = create_engine(driver_url(db_url), poolclass=NullPool)
    try:
        if not inspect(engine).has_table(STUDIES_TABLE):
            return []
        with engine.connect() as connection:
            return list(connection.execute(text(STUDY_NAMES_SQL)).scalars())
    except OperationalError as error:
        reason = str(error.orig or error).strip().splitlines()[0]
        raise BenchError(f"--db {url.render_as_string()}: cannot read the database ({reason})") from None
    finally:
        engine.dispose()


def require_study(name: str, db_url: str) -> None:
    """Stop with one line, before any schema is created, when the study is not in the database."""
    names = study_names(db_url)
    if name not in names:
        known = f"studies: {', '.join(names)}" if names else "the database has no studies"
        raise BenchError(f"--study {name!r}: no such study; {known} (start one with `bench run` or `bench study`)")


def load_bench_study(name: str, storage):  # noqa: ANN001, ANN201 - optuna types, imported lazily
    """Open an existing study, or say which studies the database has."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
        raise BenchError(f"--study {name!r}: no such study in this database; studies: {', '.join(names) or 'none'}"
                         ) from None


def worker_id() -> str:
    """host:pid of this process, kept on each trial it takes (to find the process a cell belongs to)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def slurm_job() -> str | None:
    """This process's SLURM job as `squeue` names it (`<array job>_<task>` in an array), None outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def _pid_namespace() -> tuple[str, str] | None:
    """This machine's boot id and this process's pid namespace: pids compare only where both match."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip(), os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a live pid from /proc/<pid>/stat, None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # the name may hold spaces
    except FileNotFoundError:
        return None
    return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)


def worker_process(trial_id: int) -> dict[str, Any] | None:
    """Who runs `trial_id` here, precisely enough to tell later that this process died (and its pid was reused)."""
    namespace, stat = _pid_namespace(), _proc_stat(os.getpid())
    if namespace is None or stat is None:
        return None  # no /proc: a dead worker is found by its missing heartbeat alone
    return {"trial_id": trial_id, "host": socket.gethostname(), "boot_id": namespace[0], "pid_ns": namespace[1],
            "pid": os.getpid(), "start": stat[1]}


def is_dead_here(record: dict[str, Any] | None, trial_id: int) -> bool:
    """True only when the trial's worker ran on this machine, in our pid namespace, and that process is gone."""
    here = _pid_namespace()
    if not isinstance(record, dict) or record.get("trial_id") != trial_id or here is None:
        return False  # no record, or one copied from the trial this retry replaced
    if (record.get("host"), record.get("boot_id"), record.get("pid_ns")) != (socket.gethostname(), *here):
        return False  # another machine or container: only its heartbeat can tell
    try:
        os.kill(int(record["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's: compare its start time
    stat = _proc_stat(int(record["pid"]))
    return stat is None or stat[0] in ("Z", "X") or stat[1] != record.get("start")  # exited, zombie or pid reused


RESUMES_ATTR = "resumes_trial"  # user attr of a cell re-enqueued after Ctrl-C: the trial number it resumes


def is_resumed(trial) -> bool:  # noqa: ANN001 - optuna FrozenTrial
    """A retry of a dead worker's trial (Optuna's `failed_trial`) or a cell re-enqueued after Ctrl-C."""
    return "failed_trial" in trial.system_attrs or RESUMES_ATTR in trial.user_attrs


def claim_order(trial) -> tuple[int, int]:  # noqa: ANN001 - optuna FrozenTrial
    """Retried and interrupted cells first (their checkpoints resume at once), then the rest by number."""
    return (0 if is_resumed(trial) else 1, trial.number)


def claim_waiting(study, storage):  # noqa: ANN001, ANN201
    """Take a WAITING trial atomically (no two workers get the same one), or None: a retried or interrupted cell
    before any fresh one (a priority, not the back of the queue), otherwise the lowest-numbered."""
    claimed = claim_matching(study, storage, lambda _frozen: True, 1)
    return claimed[0] if claimed else None


def claim_matching(study, storage, fits: Callable[[Any], bool], limit: int) -> list:  # noqa: ANN001
    """Take up to `limit` WAITING trials that `fits` accepts (claim_waiting's one, a bundle's companions), each
    atomically (no two workers get the same trial), in claim order."""
    from optuna.trial import TrialState

    claimed = []
    for frozen in sorted(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)), key=claim_order):
        if len(claimed) >= limit:
            break
        if fits(frozen):
            trial = _claim(study, storage, frozen)
            if trial is not None:
                claimed.append(trial)
    return claimed


def _claim(study, storage, frozen):  # noqa: ANN001, ANN202 - optuna types
    """The trial, now RUNNING under this worker with a first heartbeat, or None if another worker took it first."""
    import optuna

    if not set_state_if(storage, trial_id(frozen), "WAITING", "RUNNING"):
        return None
    storage.record_heartbeat(trial_id(frozen))  # stale from now on if this process dies
    trial = optuna.Trial(study, trial_id(frozen))
    trial.set_user_attr(WORKER_ATTR, worker_id())
    trial.set_user_attr(WORKER_JOB_ATTR, slurm_job())  # `bench status` says which job runs it
    trial.set_user_attr(WORKER_PROCESS_ATTR, worker_process(trial_id(frozen)))  # a re-run here sees it die
    return trial


def dead_trial_ids(study, storage) -> list[int]:  # noqa: ANN001
    """RUNNING trials whose worker stopped beating, or whose worker process on this machine is gone."""
    from optuna.trial import TrialState

    stale = set(stale_trial_ids(storage, study))  # the heartbeat check (bench/sweep/optuna_private.py says why)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if is_dead_here(trial.user_attrs.get(WORKER_PROCESS_ATTR), trial_id(trial)):
            stale.add(trial_id(trial))
    return sorted(stale)


def fail_stale_trials(study, storage) -> int:  # noqa: ANN001
    """Fail each trial whose worker died (once, even with many workers looking) and retry it; nothing through a
    gRPC proxy, which records no heartbeats."""
    if not has_heartbeats(storage):
        return 0
    failed = 0
    for dead in dead_trial_ids(study, storage):
        if set_state_if(storage, dead, "RUNNING", "FAIL"):
            callback = storage.get_heartbeat_stale_trial_callback() if hasattr(
                storage, "get_heartbeat_stale_trial_callback") else storage.get_failed_trial_callback()
            if callback is not None:
                callback(study, storage.get_trial(dead))
            failed += 1
    return failed


def has_heartbeats(storage) -> bool:  # noqa: ANN001
    """Whether the storage records heartbeats (an RDBStorage from `open_storage`; not a gRPC proxy)."""
    getter = getattr(storage, "get_heartbeat_interval", None)
    return bool(getter and getter())


@contextmanager
def heartbeat(storage, trial_id: int) -> Iterator[None]:  # noqa: ANN001
    """Record the trial's heartbeat every interval in a daemon thread while the block runs."""
    interval = storage.get_heartbeat_interval()
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            try:
                storage.record_heartbeat(trial_id)
            except Exception as error:  # noqa: BLE001 - a missed beat is retried next interval
                log.warning("heartbeat for trial %s failed: %s", trial_id, error)
            stop.wait(interval)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval + 5)
