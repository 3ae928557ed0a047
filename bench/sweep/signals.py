"""SIGTERM stops a worker like Ctrl-C: a preempted, cancelled or timed-out SLURM job (SIGTERM, then SIGKILL after
`KillWait`) marks its cell interrupted and re-enqueues it first, so another worker resumes its checkpoint at once
instead of after the heartbeat grace period."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)  # scancel / preemption; submitit's timeout and requeue signal


class Preempted(KeyboardInterrupt):
    """The process got a stop signal; handled where Ctrl-C is, and remembers the signal and the handler it replaced."""

    def __init__(self, signum: int, previous: Any = None) -> None:
        super().__init__(f"interrupted ({signal.Signals(signum).name}); its epoch checkpoint is kept and the next "
                         "worker resumes it")
        self.signum = signum
        self.previous = previous  # submitit's requeue handler for SIGUSR2, called once the cell is handed back


@contextmanager
def stop_signals_interrupt(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """While the block runs, each stop signal raises Preempted in the main thread (once: a second one during the
    clean-up is ignored); the former handlers come back after it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Python delivers signals to the main thread only; a worker in a thread keeps the defaults
        return
    previous = {signum: signal.getsignal(signum) for signum in signals}

    def stop(signum: int, _frame: Any) -> None:
        for other in signals:
            signal.signal(other, signal.SIG_IGN)  # let the interrupted cell be handed back undisturbed
        raise Preempted(signum, previous[signum])

    for signum in signals:
        signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
