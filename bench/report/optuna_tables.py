"""Optuna's own tables read with plain SQL (read-only): study kinds, attributes and best trials, no optuna import."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import inspect

from bench.core.names import KIND_ATTR, SEARCH_KIND
from bench.report.load import read_frame
from bench.store.sql import read_only_engine


@dataclass(frozen=True)
class BestTrial:
    """One best (or Pareto-optimal) trial: number, objective values, decoded parameters, its spec if stored."""

    number: int
    values: tuple[float, ...]
    params: dict[str, Any]
    spec: dict[str, Any]


def _json(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text


def study_attrs(db_url: str) -> dict[str, dict[str, Any]]:
    """Study name -> its user attributes (JSON-decoded); empty without Optuna's tables."""
    frame = _safe(db_url, "SELECT s.study_name, a.key, a.value_json FROM studies s "
                          "LEFT JOIN study_user_attributes a ON a.study_id = s.study_id ORDER BY s.study_name")
    attrs: dict[str, dict[str, Any]] = {}
    for row in frame.itertuples(index=False):
        found = attrs.setdefault(row.study_name, {})
        if isinstance(row.key, str):
            found[row.key] = _json(row.value_json)
    return attrs


def search_studies(db_url: str) -> set[str]:
    """Names of `bench study` searches (user attr bench_kind = 'study'): their runs are search trials."""
    return {name for name, attrs in study_attrs(db_url).items() if attrs.get(KIND_ATTR) == SEARCH_KIND}


def has_optuna_tables(db_url: str) -> bool:
    """Whether Optuna's tables exist (checked read-only, so a report never creates them)."""
    engine, _ = read_only_engine(db_url)
    try:
        with engine.connect() as connection:
            return inspect(connection).has_table("studies") and inspect(connection).has_table("trials")
    finally:
        engine.dispose()


def _safe(db_url: str, query: str, params: dict | None = None) -> pd.DataFrame:
    """A SELECT on Optuna's tables; an empty frame when they do not exist (a database of runs only)."""
    if not has_optuna_tables(db_url):
        return pd.DataFrame(columns=["study_name", "key", "value_json"])
    return read_frame(db_url, query, params)


def _param_value(value: float, distribution: str) -> Any:
    """Optuna stores a categorical as the index of its choice, an int as a float."""
    spec = _json(distribution) or {}
    name, attributes = spec.get("name", ""), spec.get("attributes", {})
    if name.startswith("Categorical"):
        return attributes["choices"][int(value)]
    if name.startswith("Int"):
        return int(value)
    return float(value)


def _complete_trials(db_url: str, name: str) -> pd.DataFrame:
    return _safe(db_url, "SELECT t.trial_id, t.number, v.objective, v.value FROM trials t "
                         "JOIN studies s ON s.study_id = t.study_id JOIN trial_values v ON v.trial_id = t.trial_id "
                         "WHERE s.study_name = :name AND t.state = 'COMPLETE' ORDER BY t.number, v.objective",
                 {"name": name})


def directions(db_url: str, name: str) -> list[str]:
    """'maximize'/'minimize' per objective."""
    frame = _safe(db_url, "SELECT d.direction FROM study_directions d JOIN studies s ON s.study_id = d.study_id "
                          "WHERE s.study_name = :name ORDER BY d.objective", {"name": name})
    return [str(d).lower() for d in frame.get("direction", [])]


def _front(values: dict[int, tuple[float, ...]], signs: list[int]) -> list[int]:
    """Trial ids no other trial beats or equals on every objective and beats on one (signs: +1 maximize)."""
    def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        pairs = [(s * x, s * y) for s, x, y in zip(signs, a, b, strict=True)]
        return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)

    return [i for i, v in values.items() if not any(dominates(w, v) for j, w in values.items() if j != i)]


def best_trials(db_url: str, name: str, top: int = 3) -> list[BestTrial]:
    """The best trial (one objective) or up to `top` Pareto-optimal trials, best first objective first."""
    signs = [1 if d == "maximize" else -1 for d in directions(db_url, name)]
    frame = _complete_trials(db_url, name)
    if frame.empty or not signs:
        return []
    values = {int(i): tuple(float(v) for v in g.sort_values("objective")["value"])
              for i, g in frame.groupby("trial_id")}
    values = {i: v for i, v in values.items() if len(v) == len(signs)}
    top = 1 if len(signs) == 1 else top
    chosen = sorted(_front(values, signs), key=lambda i: -signs[0] * values[i][0])[: max(top, 1)]
    numbers = dict(zip(frame["trial_id"].astype(int), frame["number"].astype(int), strict=False))
    return [BestTrial(numbers[i], values[i], _params(db_url, i), _trial_attr(db_url, i, "spec") or {})
            for i in chosen]


def _params(db_url: str, trial_id: int) -> dict[str, Any]:
    frame = _safe(db_url, "SELECT param_name, param_value, distribution_json FROM trial_params "
                          "WHERE trial_id = :id ORDER BY param_id", {"id": trial_id})
    return {row.param_name: _param_value(row.param_value, row.distribution_json) for row in frame.itertuples()}


def _trial_attr(db_url: str, trial_id: int, key: str) -> Any:
    frame = _safe(db_url, "SELECT value_json FROM trial_user_attributes WHERE trial_id = :id AND key = :key",
                  {"id": trial_id, "key": key})
    return _json(frame["value_json"].iloc[0]) if not frame.empty else None
