"""Read a W&B offline run file (`run-<id>.wandb`) back: its config, history rows, summary and artifacts.

The file is W&B's record log: a 7-byte header (`:W&B`, a 2-byte magic, a version byte), then 32 KiB blocks of
LevelDB-log chunks (crc32c, length, type FULL/FIRST/MIDDLE/LAST), each record a `wandb_internal_pb2.Record`.
W&B ships no reader any more; `bench track wandb` tests (and users checking an export before `wandb sync`) use this.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[bytes]:
    """The raw records of one .wandb file, chunks reassembled."""
    data = path.read_bytes()
    if not data.startswith(b":W&B"):
        raise ValueError(f"{path}: not a W&B run file")
    offset, pending = HEADER, b""
    while offset + 7 <= len(data):
        room = BLOCK - offset % BLOCK
        if room < 7:  # the block's tail is padding
            offset += room
            continue
        _, length, kind = struct.unpack("<IHB", data[offset:offset + 7])
        chunk = data[offset + 7:offset + 7 + length]
        offset += 7 + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""
        elif kind == 0 and length == 0:
            offset += room - 7 if room > 7 else 0  # zero padding
        else:
            raise ValueError(f"{path}: chunk type {kind} at {offset}")


@dataclass
class OfflineRun:
    """What an offline run file says: run id, project, config, history rows, summary, artifact names."""

    run_id: str = ""
    project: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)


def read_offline_run(path: Path) -> OfflineRun:
    """Parse one `run-<id>.wandb` file."""
    from wandb.proto import wandb_internal_pb2

    def key(item: Any) -> str:  # newer files spell a key as its nested path
        return item.key or ".".join(item.nested_key)

    run = OfflineRun()
    for raw in records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.project, run.tags = record.run.run_id, record.run.project, list(record.run.tags)
            run.config |= {key(item): json.loads(item.value_json) for item in record.run.config.update}
        elif kind == "config":
            run.config |= {key(item): json.loads(item.value_json) for item in record.config.update}
        elif kind == "history":
            run.history.append({key(item): json.loads(item.value_json) for item in record.history.item})
        elif kind == "summary":
            run.summary |= {key(item): json.loads(item.value_json) for item in record.summary.update}
        elif kind == "artifact":
            run.artifacts.append(record.artifact.name)
    return run
