"""Typed, validated stage parameters read from ``params.yaml``.

Each stage declares its section as a dataclass whose fields carry their limits
through :func:`param`. :func:`parse_section` rejects unknown keys, wrong types and
out-of-range values with an error that names the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """Invalid parameter: unknown key, wrong type or value out of range."""


def param(
    default: Any = dataclasses.MISSING,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: typing.Iterable[Any] | None = None,
    help: str = "",
) -> Any:
    """Declare a dataclass field with validation limits.

    ``min`` and ``max`` are inclusive. ``choices`` applies to a scalar or to every
    element of a list. Mutable defaults (lists, dicts) are copied per instance.
    """
    metadata = {"min": min, "max": max, "help": help}
    metadata["choices"] = tuple(choices) if choices is not None else None
    if isinstance(default, (list, dict)):
        return dataclasses.field(
            default_factory=lambda: type(default)(default), metadata=metadata
        )
    if dataclasses.is_dataclass(default) and isinstance(default, type):
        return dataclasses.field(default_factory=default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read the whole parameters file as a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameters file {str(path)!r} not found; pass --params PATH")
    with path.open(encoding="utf-8") as stream:
        try:
            data = yaml.safe_load(stream) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{str(path)!r} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{str(path)!r} must contain a mapping of stage sections")
    return data


def load_section(cls: type[T], section: str, path: str | Path = "params.yaml") -> T:
    """Read, validate and return one stage's section of the parameters file."""
    data = load_params(path)
    if section not in data:
        raise ConfigError(
            f"section {section!r} missing from {str(path)!r}; "
            f"sections present: {sorted(data)}"
        )
    return parse_section(cls, data[section], section)


def parse_section(cls: type[T], values: Any, prefix: str) -> T:
    """Build ``cls`` from a mapping, validating every key against its field."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix} must be a mapping, got {values!r}")

    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}.{unknown[0]} (value {values[unknown[0]]!r}); "
            f"allowed keys in {prefix}: {sorted(fields)}"
        )

    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        key = f"{prefix}.{name}"
        if name not in values:
            if field.default is dataclasses.MISSING and (
                field.default_factory is dataclasses.MISSING
            ):
                raise ConfigError(f"missing required key {key}")
            continue
        kwargs[name] = _coerce(hints[name], values[name], key, field.metadata)
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """Return a dataclass config as plain data, ready for JSON or YAML."""
    return dataclasses.asdict(config)


def _coerce(hint: Any, value: Any, key: str, limits: typing.Mapping[str, Any]) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    # Optional[X] and X | None accept null.
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"unsupported annotation {hint!r} for {key}")
        return _coerce(inner[0], value, key, limits)

    if dataclasses.is_dataclass(hint):
        return parse_section(hint, value, key)

    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce(args[0], item, f"{key}[{i}]", limits) for i, item in enumerate(value)]

    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}", {}) for k, v in value.items()}

    if hint is typing.Any:
        return value

    return _check_scalar(hint, value, key, limits)


def _check_scalar(hint: Any, value: Any, key: str, limits: typing.Mapping[str, Any]) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        value = float(value)
        if value != value:
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
    else:
        raise TypeError(f"unsupported annotation {hint!r} for {key}")

    choices = limits.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key} = {value!r} is not allowed; choose one of {list(choices)}")
    low, high = limits.get("min"), limits.get("max")
    if low is not None and value < low:
        raise ConfigError(f"{key} = {value!r} is below the minimum {low}")
    if high is not None and value > high:
        raise ConfigError(f"{key} = {value!r} is above the maximum {high}")
    return value
