"""`bench plan --jobs/--workers-per-device`: the student epochs' wall time over several workers, as the queue deals
the cells (each worker takes the next waiting cell when it frees up)."""

from __future__ import annotations

import pytest

from bench.cli.plan import plan_workers
from bench.core.errors import BenchError
from bench.plan.packing import packed_seconds, packing_line


def test_cells_are_dealt_longest_first_to_the_next_free_worker() -> None:
    assert packed_seconds([10, 10, 10, 10], 2) == 20
    assert packed_seconds([30, 10, 10, 10], 2) == 30  # one long cell sets the wall time
    assert packed_seconds([1, 1, 1, 1, 4], 2) == 4  # longest first: 4 | 1+1+1+1, not 6 in the file order
    assert packed_seconds([7, 1], 8) == 7 and packed_seconds([], 3) == 0.0


def test_the_plan_line_gives_both_bounds_and_says_when_a_rate_is_missing() -> None:
    line = packing_line([60.0] * 8, 8, 2, "2 h200(s)")
    assert line == ("  8 workers on 2 h200(s): student epochs about 60 s wall if they do not slow each other "
                    "(small students), 4 min if the workers on a device share it fully")
    assert packing_line([60.0] * 8, 1, 1, "1 device(s)") is None
    assert "? (no throughput" in packing_line([60.0, None], 2, 1, "1 device(s)")


def test_plan_counts_workers_as_run_would_start_them() -> None:
    assert plan_workers(None, 1, "h200") == (1, 1)
    assert plan_workers(None, 4, "h200") == (4, 1)  # one named GPU, K = 4
    assert plan_workers(3, 4, "h100") == (3, 1)
    with pytest.raises(BenchError, match="take at most 4"):
        plan_workers(5, 4, "h100")
