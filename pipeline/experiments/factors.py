"""Factors of an experiment: ``params.yaml`` keys with the levels to try.

Levels come from ``--factor KEY=LEVEL,LEVEL`` arguments or from a YAML file. Each is
converted to the type of the key's current value in ``params.yaml``: ``1e-4`` becomes
a float for a float key, and ``64`` stays a string for a string key.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import ConfigError


@dataclass(frozen=True)
class Factor:
    """A params key varied in an experiment. The first level is the baseline."""

    key: str
    levels: tuple[Any, ...]

    @property
    def baseline(self) -> Any:
        return self.levels[0]

    def index_of(self, value: Any) -> int | None:
        """Return the position of ``value`` among the levels, or None if it is not one."""
        target = level_key(value)
        for index, level in enumerate(self.levels):
            if level_key(level) == target:
                return index
        return None


def level_key(value: Any) -> Hashable:
    """Return a hashable key under which equal levels compare equal (``1`` and ``1.0`` do)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", float(value))
    if isinstance(value, str):
        return ("str", value)
    if value is None:
        return ("null",)
    return ("json", json.dumps(value, sort_keys=True))


def format_level(value: Any) -> str:
    """Return a short human-readable form of a level for tables and logs."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def lookup_param(params: dict[str, Any], key: str, source: str = "params.yaml") -> Any:
    """Return the value at the dotted ``key``; raise ConfigError naming what exists instead."""
    node: Any = params
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            parent = ".".join(parts[:depth]) or "the top level"
            available = sorted(node) if isinstance(node, dict) else []
            raise ConfigError(
                f"params key {key!r} not found in {source}; keys under {parent}: {available}"
            )
        node = node[part]
    return node


def parse_factor_argument(text: str) -> tuple[str, list[str]]:
    """Split ``KEY=LEVEL,LEVEL,...`` into the key and the level strings."""
    key, sep, levels_text = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            f"invalid --factor {text!r}; expected KEY=LEVEL,LEVEL such as train.loss=bce,hinge"
        )
    levels = [level.strip() for level in levels_text.split(",")]
    if any(level == "" for level in levels):
        raise ConfigError(f"invalid --factor {text!r}: empty level; separate levels by commas")
    return key, levels


def load_factors_file(path: str | Path) -> list[tuple[str, list[Any]]]:
    """Read ``KEY: [LEVEL, LEVEL]`` pairs from a YAML file, optionally under ``factors:``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"factors file {str(path)!r} not found")
    with path.open(encoding="utf-8") as stream:
        data = yaml.safe_load(stream) or {}
    if isinstance(data, dict) and set(data) == {"factors"}:
        data = data["factors"]
    if not isinstance(data, dict) or not data:
        raise ConfigError(
            f"{str(path)!r} must map params keys to lists of levels, "
            "e.g. 'train.loss: [bce, hinge]'"
        )
    pairs = []
    for key, levels in data.items():
        if not isinstance(levels, list):
            raise ConfigError(f"{str(path)!r}: levels of {key} must be a list, got {levels!r}")
        pairs.append((str(key), levels))
    return pairs


def build_factors(
    specs: list[tuple[str, list[Any]]],
    params: dict[str, Any],
    source: str = "params.yaml",
) -> list[Factor]:
    """Check each key exists in ``params`` and convert its levels to the key's type."""
    factors: list[Factor] = []
    seen: set[str] = set()
    for key, raw_levels in specs:
        if key in seen:
            raise ConfigError(f"factor {key} is given twice; list all its levels once")
        seen.add(key)
        current = lookup_param(params, key, source)
        levels = tuple(coerce_level(raw, current, key) for raw in raw_levels)
        if len(levels) < 2:
            raise ConfigError(f"factor {key} needs at least two levels, got {list(levels)}")
        keys = [level_key(level) for level in levels]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"factor {key} lists a level twice: {list(levels)}")
        factors.append(Factor(key, levels))
    if not factors:
        raise ConfigError("no factors given; pass --factor KEY=LEVEL,LEVEL or --factors-file")
    return factors


def check_levels(
    levels_by_key: list[tuple[str, Sequence[Any]]],
    params: dict[str, Any],
    source: str = "params.yaml",
) -> None:
    """Raise ConfigError unless every level passes the checks of ``python -m pipeline validate``.

    Each level is set alone on a copy of ``params``. Errors that the unchanged params
    already have are not blamed on a level. The message names the key, the level and the
    schema's message, for every rejected level.
    """
    from pipeline.validate_params import validate_params_data

    baseline = set(validate_params_data(params, source))
    rejected = []
    for key, levels in levels_by_key:
        for level in levels:
            errors = validate_params_data(with_param(params, key, level), source)
            rejected += [
                f"{key}={format_level(level)}: {error}" for error in errors if error not in baseline
            ]
    if rejected:
        raise ConfigError(
            f"{len(rejected)} level(s) would be rejected by the stages:\n  " + "\n  ".join(rejected)
        )


def with_param(params: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Return a deep copy of ``params`` with the dotted ``key`` set to ``value``."""
    changed = copy.deepcopy(params)
    *parents, name = key.split(".")
    node = changed
    for part in parents:
        node = node[part]
    node[name] = value
    return changed


# PyYAML reads YAML 1.1, where "1e-4" is a string; DVC reads YAML 1.2, where it is a float.
_YAML12_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def coerce_level(raw: Any, current: Any, key: str) -> Any:
    """Convert one level, given as text or as a YAML value, to the type of ``current``."""
    if isinstance(current, str) and _YAML12_FLOAT.fullmatch(current):
        current = float(current)
    if isinstance(current, bool):
        return _to_bool(raw, key)
    if isinstance(current, (int, float)):
        return _to_number(raw, key, prefer_int=isinstance(current, int))
    if isinstance(current, str):
        if isinstance(raw, str):
            return raw
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return str(raw)
        raise ConfigError(f"level {raw!r} of {key} must be a string like the current {current!r}")
    # Lists, mappings and nulls: text levels are read as YAML.
    return yaml.safe_load(raw) if isinstance(raw, str) else raw


def _to_bool(raw: Any, key: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise ConfigError(f"level {raw!r} of {key} must be true or false")


def _to_number(raw: Any, key: str, prefer_int: bool) -> int | float:
    if isinstance(raw, bool):
        raise ConfigError(f"level {raw!r} of {key} must be a number")
    if isinstance(raw, (int, float)):
        value: int | float = raw
    else:
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"level {raw!r} of {key} must be a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"level {raw!r} of {key} must be a finite number")
    if not prefer_int:
        value = float(value)
    return value


# Strings that DVC's override grammar (Hydra's) reads back as the same plain string.
_PLAIN_STRING = re.compile(r"[A-Za-z_][A-Za-z0-9_\-./]*")
_RESERVED_WORDS = {"true", "false", "null", "none", "nan", "inf", "yes", "no", "on", "off"}


def format_override(value: Any) -> str:
    """Return ``value`` in the syntax of ``dvc exp run -S key=value`` (Hydra's grammar)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        if _PLAIN_STRING.fullmatch(value) and value.lower() not in _RESERVED_WORDS:
            return value
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        return f"'{escaped}'"
    if isinstance(value, list):
        return "[" + ",".join(format_override(item) for item in value) + "]"
    raise ConfigError(f"level {value!r} cannot be passed to dvc exp run -S; use a scalar or list")
