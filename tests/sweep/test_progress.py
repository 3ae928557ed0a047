"""Plain progress lines for logs: throttled per task, always at a task's end, never silent for a whole cell."""

from __future__ import annotations

import io

from rich.console import Console

from bench.sweep.cell import cell_progress
from bench.sweep.progress import PlainProgress


def test_a_console_that_is_no_terminal_gets_plain_lines_throttled_per_task() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=200)
    progress = cell_progress(console)
    assert isinstance(progress, PlainProgress)
    quiet = PlainProgress(console, interval=3600.0)
    cell = quiet.add_task("  cell resnet/kd seed=0", total=3)
    for _ in range(3):
        quiet.advance(cell)
    lines = buffer.getvalue().splitlines()
    assert lines[0].startswith("progress: cell resnet/kd seed=0: 1/3") and lines[-1].startswith(
        "progress: cell resnet/kd seed=0: 3/3")
    assert len(lines) == 2  # the first update, then nothing until the end: 2/3 stays quiet within the interval
    chatty = PlainProgress(console, interval=0.0)
    grid = chatty.add_task("grid demo", total=2)
    chatty.update(grid, completed=1, description="grid demo (1 failed)")
    assert buffer.getvalue().splitlines()[-1].startswith("progress: grid demo (1 failed): 1/2")
    chatty.remove_task(grid)
    assert not chatty.tasks
