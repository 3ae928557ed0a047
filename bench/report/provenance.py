"""Where the reported runs came from: studies, commits, versions, devices, dates, cache, teacher passes."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from importlib import metadata

import pandas as pd
from sqlalchemy.engine import make_url

REPORT_PACKAGES = ("pandas", "matplotlib", "scipy", "sqlalchemy", "optuna")


def _joined(values: pd.Series) -> str:
    found = sorted({str(v) for v in values.dropna() if str(v)})
    return ", ".join(found) if found else "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def safe_url(db_url: str) -> str:
    """The database URL with any password hidden."""
    return make_url(db_url).render_as_string(hide_password=True)


def _teacher_passes(done: pd.DataFrame) -> list[tuple[str, str]]:
    passes = done.dropna(subset=["teacher_pass_s"]).groupby(["teacher", "dataset"])["teacher_pass_s"].max()
    return [(f"teacher pass {teacher} on {dataset}", f"{seconds:.1f} s (train+val+test features, max over runs)")
            for (teacher, dataset), seconds in passes.items()]


def _data_configs(runs: pd.DataFrame) -> list[tuple[str, str]]:
    items = []
    for dataset, group in runs.groupby("dataset", sort=True):
        configs = {tuple(sorted((k, v) for k, v in c.items() if v is not None)) for c in group["data_config"]}
        text = "; ".join(", ".join(f"{k}={v}" for k, v in c) or "defaults" for c in sorted(configs))
        items.append((f"data {dataset}", text))
    return items


def provenance(runs: pd.DataFrame, db_url: str, where: str | None) -> list[tuple[str, str]]:
    """(label, value) pairs for the provenance section."""
    done = runs[runs["status"] == "done"]
    hits = int(pd.to_numeric(done["cache_hits"]).fillna(0).sum())
    misses = int(pd.to_numeric(done["cache_misses"]).fillna(0).sum())
    started, finished = runs["started_at"].min(), runs["finished_at"].max()
    items = [
        ("database", safe_url(db_url)),
        ("filter", where or "none (all runs)"),
        ("grids / studies", _joined(runs["study"])),
        ("runs", ", ".join(f"{n} {s}" for s, n in runs["status"].value_counts().sort_index().items())),
        ("git commit", _joined(runs["git_commit"])),
        ("torch", _joined(runs["torch_version"])),
        ("device", _joined(runs["device"])),
        ("dates", f"first started {started if pd.notna(started) else '?'}, "
                  f"last finished {finished if pd.notna(finished) else '?'} (UTC)"),
        ("feature cache", f"{hits} hits, {misses} misses over {len(done)} runs"),
        *_teacher_passes(done),
        *_data_configs(runs),
        ("report written", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("report versions", f"python {platform.python_version()}, "
                            + ", ".join(f"{p} {_version(p)}" for p in REPORT_PACKAGES)),
    ]
    return items
