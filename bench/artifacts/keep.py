"""Which trained students a sweep keeps (--keep): torch-free, so the CLI checks the option without loading torch."""

from __future__ import annotations

from bench.core.errors import BenchError

KEEP_CHOICES = ("all", "best", "none")


def check_keep(keep: str) -> str:
    """--keep must be one of best, all, none."""
    if keep not in KEEP_CHOICES:
        raise BenchError(f"--keep {keep!r}: expected one of {', '.join(KEEP_CHOICES)} (default all)")
    return keep
