"""Wall time of a sweep's cells over several workers (`bench plan --jobs`, `--workers-per-device`): each worker
claims the next waiting cell when it frees up, as the database queue deals them."""

from __future__ import annotations

import heapq


def packed_seconds(cell_seconds: list[float], workers: int) -> float:
    """The last worker's finish time when `workers` take the cells longest first, each the next free one (no two
    workers slow each other: an upper bound on the speed-up)."""
    loads = [0.0] * max(1, workers)
    for seconds in sorted(cell_seconds, reverse=True):
        heapq.heapreplace(loads, loads[0] + seconds)
    return max(loads)


def packing_line(cell_seconds: list[float | None], workers: int, devices: int, where: str) -> str | None:
    """`bench plan`'s line for more than one worker: the student epochs' wall time if the workers do not slow each
    other (small students leave a device idle) and if the workers on a device share it fully (big students)."""
    if workers < 2:
        return None
    if any(seconds is None for seconds in cell_seconds):
        return f"  {workers} workers on {where}: ? (no throughput for some cells)"
    known = [float(seconds) for seconds in cell_seconds if seconds is not None]
    apart, shared = packed_seconds(known, workers), max(packed_seconds(known, devices), max(known, default=0.0))
    return (f"  {workers} workers on {where}: student epochs about {_short(apart)} wall if they do not slow each other "
            f"(small students), {_short(shared)} if the workers on a device share it fully")


def _short(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
