"""pytest plugin: a real one-node SLURM (munged + slurmctld + slurmd, Debian's slurm-wlm) on 127.0.0.1 for the session,
configured in a temp dir and stopped after; without it the SLURM tests fail in CI (CI=true) and skip loudly here."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scancel", "scontrol")
NODE = "benchnode"
CPUS = 8  # more than the machine has (config_overrides): three 1-CPU array tasks run at once on a 2-core box
KILL_WAIT_S = 10  # SIGTERM, then SIGKILL this much later (as a preempted or cancelled job gets)

CONF = """\
ClusterName=bench
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmdParameters=config_overrides
ReturnToService=2
KillWait={kill_wait}
SchedulerParameters=sched_interval=1,bf_interval=1
MessageTimeout=30
NodeName={node} NodeHostname=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


@dataclass(frozen=True)
class Slurm:
    """A running SLURM: its config (clients read it through $SLURM_CONF) and its directory."""

    conf: Path
    root: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *command: str, timeout: float = 60) -> str:
        result = subprocess.run(list(command), env=self.env(), capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
        return result.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _why_not() -> str:
    """Why this machine cannot start SLURM, or ''."""
    missing = [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name) is None
               and not Path(f"/usr/sbin/{name}").exists()]
    if missing:
        return (f"SLURM is not installed ({', '.join(missing)} missing): `make bench-slurm` or "
                "apt-get install slurm-wlm munge to run the live-SLURM tests")
    if os.geteuid() != 0:
        return "the live-SLURM tests start munged, slurmctld and slurmd as root; run them as root (as CI does)"
    return ""


def _refuse(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"SLURM tests cannot run: {message}")
    pytest.skip(f"SLURM TESTS NOT RUN: {message}")


def _daemon(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _start(root: Path, conf: Path) -> list[subprocess.Popen]:
    """munged with its own key and socket, then slurmctld and slurmd in the foreground (children of pytest)."""
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    logs = (root / "daemons.log").open("a")
    munge = subprocess.Popen([_daemon("munged"), "--foreground", "--force", f"--key-file={key}",
                              f"--socket={root}/munge.socket", f"--pid-file={root}/munged.pid",
                              f"--log-file={root}/munged.log", f"--seed-file={root}/munged.seed"],
                             stdout=logs, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while not (root / "munge.socket").exists():
        if munge.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"munged did not start: {_log_tail(root)}")
        time.sleep(0.1)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    ctld = subprocess.Popen([_daemon("slurmctld"), "-D", "-i", "-f", str(conf)], env=env, stdout=logs,
                            stderr=subprocess.STDOUT)
    node = subprocess.Popen([_daemon("slurmd"), "-D", "-N", NODE, "-f", str(conf)], env=env, stdout=logs,
                            stderr=subprocess.STDOUT)
    return [munge, ctld, node]


def _wait_idle(slurm: Slurm, daemons: list[subprocess.Popen], limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    state = ""
    while time.monotonic() < deadline:
        dead = [p.args[0] for p in daemons if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited: {_log_tail(slurm.root)}")
        try:
            state = slurm.run("sinfo", "-h", "-n", NODE, "-o", "%T", timeout=20).strip()
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            state = str(error)
        if state.startswith("idle"):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the SLURM node is not idle after {limit_s:.0f} s ({state}): {_log_tail(slurm.root)}")


def _log_tail(root: Path) -> str:
    tails = []
    for name in ("slurmctld.log", "slurmd.log", "daemons.log", "munged.log"):
        path = root / name
        if path.exists():
            tails.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:]))
    return "\n".join(tails)


@contextmanager
def running_slurm() -> Iterator[Slurm]:
    """munged + slurmctld + slurmd, one node `benchnode` on 127.0.0.1, configured in a temp dir; stopped after.
    Raises RuntimeError when SLURM cannot start (benchmarks/bench_preemption.py uses it outside pytest)."""
    message = _why_not()
    if message:
        raise RuntimeError(message)
    root = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    (root / "state").mkdir()
    (root / "spool").mkdir()
    conf = root / "slurm.conf"
    conf.write_text(CONF.format(root=root, ctld_port=_free_port(), d_port=_free_port(), node=NODE, cpus=CPUS,
                                kill_wait=KILL_WAIT_S))
    slurm = Slurm(conf, root)
    daemons: list[subprocess.Popen] = []
    try:
        try:
            daemons = _start(root, conf)
            _wait_idle(slurm, daemons)
        except OSError as error:
            raise RuntimeError(str(error)) from error
        yield slurm
    finally:
        for process in reversed(daemons):
            process.terminate()
        for process in reversed(daemons):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Slurm]:
    """The session's live SLURM; a test that needs it fails in CI and skips loudly here when it cannot start."""
    try:
        context = running_slurm()
        slurm = context.__enter__()
    except RuntimeError as error:
        _refuse(f"SLURM did not start: {error}")
    try:
        yield slurm
    finally:
        context.__exit__(None, None, None)
