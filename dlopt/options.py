"""Build options: `--set key=value` strings turned into a typed model config. No torch here."""

from __future__ import annotations

import ast
import dataclasses
from typing import Any

from dlopt.errors import ConfigError


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """["a=1", "b=[2,3]"] -> {"a": "1", "b": "[2,3]"}; values stay strings until typed."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r} (e.g. --set num_classes=5)")
        out[key.strip()] = value.strip()
    return out


def parse_int_list(text: str | None, flag: str) -> tuple[int, ...]:
    """'1,8' -> (1, 8); positive integers only."""
    if text is None or not text.strip():
        return ()
    try:
        values = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"{flag} {text!r} is not a comma-separated list of integers; use e.g. 1,8") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{flag} {text!r} needs positive integers, e.g. 1,8")
    return tuple(dict.fromkeys(values))


def _coerce(key: str, raw: Any, default: Any) -> Any:
    if not isinstance(raw, str):
        value = raw
    elif isinstance(default, str):
        return raw
    else:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            if isinstance(default, bool) and raw.lower() in {"true", "false", "yes", "no", "1", "0"}:
                return raw.lower() in {"true", "yes", "1"}
            raise ConfigError(f"{key}={raw!r} is not a valid value; expected {type(default).__name__}") from None
    return _check_type(key, value, default)


def _check_type(key: str, value: Any, default: Any) -> Any:
    expected = type(default).__name__
    if isinstance(default, bool):
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return _check_range(key, value, low=min(default, 1))  # sizes >= 1; ids defaulting to 0 may be 0
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _check_range(key, float(value), low=0.0, high=1.0 if "dropout" in key else None)
    elif isinstance(default, (tuple, list)):
        if isinstance(value, (tuple, list)) and value:
            proto = default[0] if default else value[0]
            return tuple(_check_type(f"{key}[{i}]", v, proto) for i, v in enumerate(value))
        expected = f"a non-empty list like {list(default)}"
    elif default is None:
        return value
    raise ConfigError(f"{key}={value!r} has the wrong type; expected {expected}")


def _check_range(key: str, value: float, low: float, high: float | None = None) -> float:
    import math

    if not math.isfinite(value) or value < low or (high is not None and value >= high):
        bound = f"in [{low:g}, {high:g})" if high is not None else f">= {low:g}"
        raise ConfigError(f"{key}={value!r} is out of range; expected a value {bound}")
    return value


def make_config(config_cls: type, overrides: dict[str, Any]) -> Any:
    """Instantiate a config dataclass with typed overrides; unknown keys name the valid ones."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    defaults = dataclasses.asdict(config_cls())
    typed: dict[str, Any] = {}
    for key, raw in overrides.items():
        if key not in fields:
            valid = ", ".join(sorted(fields))
            raise ConfigError(f"unknown build option {key!r}; valid options: {valid}")
        typed[key] = _coerce(key, raw, defaults[key])
    try:
        cfg = config_cls(**typed)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid build options: {exc}") from None
    check = getattr(cfg, "validate", None)
    if check is not None:
        problem = check()
        if problem:
            raise ConfigError(f"invalid build options: {problem}")
    return cfg


def config_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready dict of a config (tuples become lists)."""
    return dataclasses.asdict(cfg)
