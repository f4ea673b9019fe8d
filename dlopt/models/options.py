"""Build options: `--set key=value` strings turned into a typed model config. No torch here."""

from __future__ import annotations

import ast
import dataclasses
import math
import os
from collections.abc import Callable, Iterable
from typing import Any

from dlopt.core.errors import ConfigError

INT_CEILING = 2**63 - 1  # no option is a count larger than int64 (a 400-digit integer is a mistake, not a size)
SEED_MAX = 2**32 - 1  # numpy's legacy seeding takes [0, 2**32)
SET_VALUE_MAX_CHARS = 10_000  # a --set value longer than this is not a build option


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """["a=1", "b=[2,3]"] -> {"a": "1", "b": "[2,3]"}; values stay strings until typed."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {shown(item)} (e.g. --set num_classes=5)")
        out[key.strip()] = value.strip()
    return out


def parse_int_list(text: str | None, flag: str) -> tuple[int, ...]:
    """'1,8' -> (1, 8); positive integers only."""
    if text is None or not text.strip():
        return ()
    try:
        values = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"{flag} {shown(text)} is not a comma-separated list of integers; use e.g. 1,8") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{flag} {shown(text)} needs positive integers, e.g. 1,8")
    return tuple(dict.fromkeys(values))


def _coerce(key: str, raw: Any, default: Any) -> Any:
    if not isinstance(raw, str):
        value = raw
    elif isinstance(default, str):
        return raw
    else:
        if len(raw) > SET_VALUE_MAX_CHARS:
            raise ConfigError(f"{key}={shown(raw)} is too long for a build option "
                              f"(over {SET_VALUE_MAX_CHARS:,} characters)")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            if isinstance(default, bool) and raw.lower() in {"true", "false", "yes", "no", "1", "0"}:
                return raw.lower() in {"true", "yes", "1"}
            raise ConfigError(f"{key}={shown(raw)} is not a valid value; expected {type(default).__name__}") from None
    return _check_type(key, value, default)


def _check_type(key: str, value: Any, default: Any) -> Any:
    expected = type(default).__name__
    if isinstance(default, bool):
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            # sizes >= 1; ids defaulting to 0 may be 0
            return _check_range(key, value, low=min(default, 1), high=INT_CEILING + 1)
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
    raise ConfigError(f"{key}={shown(value)} has the wrong type; expected {expected}")


def _check_range(key: str, value: float, low: float, high: float | None = None) -> float:
    finite = isinstance(value, int) or math.isfinite(value)  # math.isfinite(10**400) would overflow
    if not finite or value < low or (high is not None and value >= high):
        bound = f"in [{low:g}, {high:g})" if high is not None else f">= {low:g}"
        raise ConfigError(f"{key}={shown(value)} is out of range; expected a value {bound}")
    return value


def make_config(config_cls: type, overrides: dict[str, Any]) -> Any:
    """Instantiate a config dataclass with typed overrides; unknown keys name the valid ones."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    defaults = dataclasses.asdict(config_cls())
    typed: dict[str, Any] = {}
    for key, raw in overrides.items():
        if key not in fields:
            valid = ", ".join(sorted(fields))
            raise ConfigError(f"unknown build option {shown(key)}; valid options: {valid}")
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


# -- one rule set per stage config: the CLI and pipeline.toml both build the config, so both get these messages --

def shown(value: Any, limit: int = 48) -> str:
    """repr() cut to one short line: a 400-digit integer or a 300-character name stays readable."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 8]}... ({len(text)} characters)"


def _flag(key: str, flag: str | None) -> str:
    return flag or "--" + key.replace("_", "-")


def where(section: str, key: str) -> str:
    """`prune.ratio`; a top-level pipeline.toml key (seed) is its bare name."""
    return f"{section}.{key}" if section else key


def check_int(section: str, key: str, value: Any, low: int, high: int = INT_CEILING, *, flag: str | None = None,
              optional: bool = False) -> None:
    """`prune.iterative_steps = 0 is out of range: --iterative-steps must be at least 1 and at most 1,000`."""
    if value is None and optional:
        return
    rule = f"{_flag(key, flag)} must be at least {low} and at most {high:,} (an integer)"
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{where(section, key)} = {shown(value)} has the wrong type: {rule}")
    if not low <= value <= high:
        raise ConfigError(f"{where(section, key)} = {shown(value)} is out of range: {rule}")


def check_float(section: str, key: str, value: Any, low: float, high: float = math.inf, *, low_open: bool = False,
                flag: str | None = None, optional: bool = False, rule: str | None = None) -> None:
    """Finite numbers in [low, high] (or (low, high] with low_open); NaN and infinities never pass."""
    if value is None and optional:
        return
    above = f"above {low:g}" if low_open else f"at least {low:g}"
    rule = rule or f"{_flag(key, flag)} must be a finite number, {above}" + (
        f" and at most {high:g}" if math.isfinite(high) else "")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(f"{where(section, key)} = {shown(value)} has the wrong type: {rule}")
    finite = isinstance(value, int) or math.isfinite(value)
    ok = finite and value <= high and (value > low if low_open else value >= low)
    if not ok:
        raise ConfigError(f"{where(section, key)} = {shown(value)} is out of range: {rule}")


def check_choice(section: str, key: str, value: Any, choices: Iterable[str], *, flag: str | None = None) -> None:
    choices = [str(c) for c in choices]
    if str(value) not in choices or not isinstance(value, str):
        raise ConfigError(f"unknown {_flag(key, flag)} {shown(value)}; choose one of {', '.join(choices)} "
                          f"({where(section, key)})")


def check_seed(section: str, value: Any) -> None:
    check_int(section, "seed", value, 0, SEED_MAX)


# -- a ceiling on model size, checked on the meta device before any memory is spent --------------------------------

MAX_PARAMS_ENV = "DLOPT_MAX_PARAMS"  # `dlopt --max-params N` sets it
DEFAULT_MAX_PARAMS = 2_000_000_000  # 8 GB of float32 weights; above this a --set typo is likelier than a real model


def _ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


_override: list[str] = []  # `dlopt --max-params N`, for the current command only


def set_max_params(value: float | None) -> None:
    """The ceiling given on the command line (None: back to DLOPT_MAX_PARAMS or the default)."""
    _override.clear()
    if value is not None and not (math.isfinite(value) and value >= 1):
        raise ConfigError(f"--max-params {shown(value)} is not allowed: give a finite number of parameters >= 1, "
                          "e.g. 5e9")
    if value is not None:
        _override.append(repr(value))


def _ceiling() -> tuple[int, int | None, str]:
    """(max elements, max bytes or None, how to raise it)."""
    how = f"raise the ceiling with `dlopt --max-params N COMMAND ...` (or {MAX_PARAMS_ENV}=N)"
    given = (_override or [os.environ.get(MAX_PARAMS_ENV, "")])[0].strip()
    if given:
        try:
            limit = int(float(given))
        except (ValueError, OverflowError):
            raise ConfigError(f"--max-params / {MAX_PARAMS_ENV} = {shown(given)} is not a finite number; "
                              "use e.g. 5e9") from None
        if limit < 1:
            raise ConfigError(f"--max-params / {MAX_PARAMS_ENV} = {shown(given)} must be at least 1")
        return limit, None, how  # the user's explicit ceiling replaces both defaults
    ram = _ram_bytes()
    return DEFAULT_MAX_PARAMS, (ram // 2 if ram else None), how


def estimate_size(builder: Callable[[Any], Any], cfg: Any) -> tuple[int, int] | None:
    """(elements, bytes) of parameters and buffers, built on the meta device (no memory); None if it cannot."""
    import torch

    try:
        with torch.device("meta"):
            model = builder(cfg)
        tensors = [*model.parameters(), *model.buffers()]
    except Exception:  # noqa: BLE001 - a builder that cannot run on meta is built for real, as before
        return None
    return sum(t.numel() for t in tensors), sum(t.numel() * t.element_size() for t in tensors)


def check_model_size(name: str, builder: Callable[[Any], Any], cfg: Any) -> None:
    """Refuse, in one line, a model whose weights alone pass the ceiling (e.g. --set hidden_sizes=[100000000])."""
    limit, max_bytes, how = _ceiling()
    size = estimate_size(builder, cfg)
    if size is None:
        return
    count, nbytes = size
    if count > limit or (max_bytes is not None and nbytes > max_bytes):
        memory = f" or {max_bytes / 1e9:.3g} GB (half this machine's memory)" if max_bytes is not None else ""
        size_text = f"{nbytes / 1e9:.3g} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.3g} MB"
        raise ConfigError(f"{name} with these build options has {count:.3g} parameters ({size_text}), above "
                          f"the ceiling of {limit:.3g}{memory}; lower the sizes (--set, a pipeline's sets, or the "
                          f"checkpoint record's config), or {how}")
