"""Paths the tests share (the repository root, for `python -m bench` subprocesses and example files)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
