"""Where bench keeps its files by default (torch-free): the cache root, `$BENCH_CACHE` or ~/.cache/distill-bench."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CACHE_DIR = Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "distill-bench"))
