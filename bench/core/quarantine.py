"""Move a damaged cache or checkpoint file aside (never delete the evidence) and say so in one line."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger("bench")


def quarantine(path: Path, reason: str, consequence: str) -> Path | None:
    """Rename `path` to `<name>.corrupt-<UTC time>-<ns>` beside it, log why; None if it was already gone."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}-{time.time_ns() % 10**9:09d}")
    try:
        os.replace(path, target)
    except FileNotFoundError:  # another worker moved it first
        return None
    log.warning("%s: %s; moved aside to %s; %s", path, reason, target.name, consequence)
    return target
