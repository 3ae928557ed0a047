"""How tests bound their subprocesses (issue 28): by their work (images, epochs, cells), with wall-clock limits
only as generous safety nets against a hang, and with bench's own thread default (bench/core/threads.py).

A fresh clone's `make test` failed on a loaded box because a CLI test gave its subprocess a hard 300 s limit
while the teacher ran at 2-3 images/s: a limit that measures the machine's load, not the code, is a flaky test.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from bench.core.threads import THREADS_ENV, resolve_threads, thread_environment
from tests.support.paths import REPO

SAFETY_NET_S = 3600.0  # only a hang takes this long: every test's work is a few cells of tiny data


def bench_env(workers: int = 1, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a `python -m bench` subprocess: PYTHONPATH at this checkout and $BENCH_THREADS (with the
    OpenMP/BLAS variables) at bench's default for `workers` processes started together, capped by an explicit
    $OMP_NUM_THREADS of the test run."""
    env = dict(os.environ if base is None else base)
    threads = resolve_threads(None, workers, env)
    return {**env, "PYTHONPATH": str(REPO), THREADS_ENV: str(threads), **thread_environment(threads)}
