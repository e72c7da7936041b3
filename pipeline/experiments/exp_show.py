"""Experiments as ``dvc exp show --json`` reports them (checked against dvc 3.67).

The output is a list of commits. The first is usually ``{"rev": "workspace", ...}``;
each baseline commit has ``experiments``, a list of groups::

    {"name": "exp-a", "executor": {"state": "success", ...} | null,
     "revs": [{"rev": SHA, "name": "exp-a", "error": null | {"msg": ...},
               "data": {"params": {"params.yaml": {"data": {...}}},
                        "metrics": {"metrics/evaluate.json": {"data": {...}}
                                                           | {"error": {...}}}}}]}

``executor.state`` is ``queued``, ``running``, ``success`` or ``failed``, and null for a
run made with plain ``dvc exp run``. A failed queued run reports ``error`` and the
baseline's metrics, and a queued one reports empty metrics, so only successful runs
carry metrics of their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipeline.config import ConfigError

DEFAULT_PARAMS_FILE = "params.yaml"


class MetricError(ValueError):
    """The requested metric is missing or not a finite number in one experiment."""


@dataclass
class Experiment:
    name: str
    rev: str
    baseline: str
    state: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    error: str | None = None

    def metric(self, spec: str) -> float:
        """Return the metric ``FILE:KEY.PATH`` (or ``KEY.PATH`` if unique) as a float."""
        file_name, _, key_path = spec.rpartition(":")
        if file_name:
            if file_name not in self.metrics:
                raise MetricError(f"metrics file {file_name} not reported")
            candidates = {file_name: self.metrics[file_name]}
        else:
            candidates = self.metrics
        found = []
        for name, data in candidates.items():
            value = _lookup(data, key_path)
            if value is not _MISSING:
                found.append((name, value))
        if not found:
            raise MetricError(f"{spec} not found in {sorted(candidates)}")
        if len(found) > 1:
            raise MetricError(
                f"{key_path} is in several metrics files {[name for name, _ in found]}; "
                "write the metric as FILE:KEY"
            )
        value = found[0][1]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MetricError(f"{spec} is {value!r}, not a number")
        if not math.isfinite(value):
            raise MetricError(f"{spec} is {value}")
        return float(value)


_MISSING = object()


def _lookup(data: Any, key_path: str) -> Any:
    # A key may itself contain dots, so try the whole path before splitting it.
    if not isinstance(data, dict):
        return _MISSING
    if key_path in data:
        return data[key_path]
    head, dot, rest = key_path.partition(".")
    if not dot or head not in data:
        return _MISSING
    return _lookup(data[head], rest)


def parse_exp_show(commits: list[dict[str, Any]]) -> list[Experiment]:
    """Return every experiment of every baseline commit in ``dvc exp show --json`` output."""
    if not isinstance(commits, list):
        raise ConfigError("dvc exp show --json output must be a list of commits")
    experiments = []
    for commit in commits:
        baseline = commit.get("rev", "")
        for group in commit.get("experiments") or []:
            revs = group.get("revs") or []
            if not revs:
                continue
            experiments.append(_parse_experiment(group, revs[0], baseline))
    return experiments


def _parse_experiment(group: dict[str, Any], rev: dict[str, Any], baseline: str) -> Experiment:
    executor = group.get("executor") or {}
    state = executor.get("state") or "success"
    error = rev.get("error")
    if error:
        state = "failed"
    data = rev.get("data") or {}
    metrics = {}
    for file_name, entry in (data.get("metrics") or {}).items():
        if isinstance(entry, dict) and "data" in entry:
            metrics[file_name] = entry["data"]
    return Experiment(
        name=group.get("name") or rev.get("name") or rev.get("rev", "")[:7],
        rev=rev.get("rev", ""),
        baseline=baseline,
        state=state,
        params=flatten_params(data.get("params") or {}),
        metrics=metrics,
        error=(error or {}).get("msg") if isinstance(error, dict) else error,
    )


def flatten_params(params: dict[str, Any]) -> dict[str, Any]:
    """Flatten ``{file: {"data": nested}}`` into dotted keys.

    Keys of ``params.yaml`` read ``train.seed``; keys of any other file read
    ``FILE:train.seed``, as in ``dvc exp run -S``.
    """
    flat: dict[str, Any] = {}
    for file_name, entry in params.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("data"), dict):
            continue
        prefix = "" if file_name == DEFAULT_PARAMS_FILE else f"{file_name}:"
        _flatten_into(flat, entry["data"], prefix)
    return flat


def _flatten_into(flat: dict[str, Any], data: dict[str, Any], prefix: str) -> None:
    for key, value in data.items():
        if isinstance(value, dict) and value:
            _flatten_into(flat, value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
