"""Progress of a sweep where no terminal shows bars (nohup, SLURM logs, CI): plain lines, at most one per task
every `interval` seconds and one when a task completes, so a log shows life within a long cell."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Console


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0
    started: float = field(default_factory=time.monotonic)
    said: float = float("-inf")  # the first update always prints


class PlainProgress:
    """The part of rich's Progress the sweep uses (add_task, advance, update, remove_task), printing plain lines."""

    def __init__(self, console: Console, interval: float = 30.0) -> None:
        self.console = console
        self.interval = interval
        self.tasks: dict[int, _Task] = {}

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, completed: float = 0.0) -> int:
        task_id = len(self.tasks)
        self.tasks[task_id] = _Task(description.strip(), total, completed)
        return task_id

    def advance(self, task_id: int, advance: float = 1.0) -> None:
        self.update(task_id, completed=self.tasks[task_id].completed + advance)

    def update(self, task_id: int, *, completed: float | None = None, description: str | None = None,
               total: float | None = None) -> None:
        task = self.tasks[task_id]
        task.completed = task.completed if completed is None else completed
        task.description = task.description if description is None else description.strip()
        task.total = task.total if total is None else total
        now = time.monotonic()
        finished = task.total is not None and task.completed >= task.total
        if finished or now - task.said >= self.interval:
            task.said = now
            total_text = f"/{task.total:g}" if task.total is not None else ""
            self.console.print(f"progress: {task.description}: {task.completed:g}{total_text} "
                               f"({now - task.started:.0f} s)", highlight=False, markup=False, soft_wrap=True)

    def remove_task(self, task_id: int) -> None:
        self.tasks.pop(task_id, None)
