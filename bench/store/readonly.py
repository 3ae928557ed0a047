"""Whether a results database can be written at all, asked before anything tries: a read-only one is one line."""

from __future__ import annotations

import os

from bench.store.session import sqlite_path


def read_only_reason(db_url: str) -> str | None:
    """Why the SQLite file at `db_url` cannot be written (a read-only mount, no write permission on it or on
    its directory, where SQLite keeps its journal), or None; None for servers, whose grants decide per write."""
    path = sqlite_path(db_url)
    if path is None:
        return None
    where = path if path.exists() else path.parent
    if where.exists() and os.statvfs(where).f_flag & os.ST_RDONLY:
        return f"{path} is on a read-only file system"
    for target in (path, path.parent):
        if target.exists() and not os.access(target, os.W_OK):
            return f"{target} is not writable"
    return None
