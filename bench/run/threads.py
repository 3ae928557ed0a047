"""Apply a worker's thread count (bench/core/threads.py) to torch's intra-op pool and the BLAS pools in-process."""

from __future__ import annotations

import os

import torch

from bench.core.threads import thread_environment


def apply_threads(threads: int) -> int:
    """Set torch's intra-op threads, the loaded BLAS/OpenMP pools (threadpoolctl) and the environment (libraries
    loaded later, child processes) to `threads`; returns what torch now uses."""
    os.environ.update(thread_environment(threads))
    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # numpy's BLAS then keeps the pool the environment gave it when it loaded
        pass
    else:
        threadpool_limits(limits=threads)
    return torch.get_num_threads()
