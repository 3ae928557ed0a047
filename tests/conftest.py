"""Shared fixtures: temp databases and caches; nothing touches the network."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest_plugins = ["tests.support.postgres",  # the session's PostgreSQL server (issue 6)
                  "tests.support.slurm"]  # the session's live SLURM (issue 24)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'results.db'}"


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def effnet():
    """The real embedded teacher, loaded once per session."""
    from bench.core.registries import TEACHERS

    return TEACHERS.get("effnet-lite0")(None)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models train faster on one thread than on two contended ones."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
