"""The option sections of pipeline.toml: each is its stage's own Config (dlopt.contract.stage). No torch here.

A stage's `Section` names the Config fields its [table] takes (train, export, bench: what the pipeline exposes of
the command) or none (prune, quantize: every option of the command, kept as the dict the user wrote). The keys,
their defaults and their types are the Config's own, so there is no second dataclass to drift; TOML has no null,
so a field whose default is None is written 0 or "" and read back as None. `stage_config(name, cfg)` builds the
command's config from the pipeline config, with the command's own checks: that is the section's validation, and
the steps run that very object.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import types
import typing
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

PIPELINE_OWNED = {"name", "seed", "bench", "progress"}  # library config fields the pipeline sets itself
COMMON = ("arch", "seed", "tiny")  # pipeline-wide keys a stage's Config takes when it has such a field
EMPTY = {int: 0, float: 0.0, str: "", Path: "", bool: False}  # TOML's stand-in for None, by the field's type


def library_class(ref: tuple[str, str]) -> type | None:
    module, cls_name = ref
    try:
        return getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError):
        return None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def library_defaults(ref: tuple[str, str]) -> dict[str, Any]:
    """Field name -> default of a library config (minus the fields the pipeline sets itself)."""
    cls = library_class(ref)
    if cls is None:
        return {}
    return {f.name: _default(f) for f in dataclasses.fields(cls) if f.name not in PIPELINE_OWNED}


def _base_type(hint: Any) -> Any:
    """int for `int | None`, Path for `Path | None`; the hint itself otherwise."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _toml(value: Any, hint: Any) -> Any:
    """A Config default as TOML writes it: None as its type's empty value, enums as strings, tuples as lists."""
    if value is None:
        return EMPTY.get(_base_type(hint), "")
    if isinstance(value, (tuple, list)):
        return [_toml(v, None) for v in value]
    return value.value if isinstance(value, Enum) else value


@functools.cache
def section_class(config: type, keys: tuple[str, ...], defaults: tuple[tuple[str, Any], ...]) -> type:
    """The frozen dataclass of a [section] that takes `keys` of `config`: each field's default is the Config's (or
    the pipeline's, in `defaults`), as TOML writes it. Generated from the Config, never written out by hand."""
    hints, fields = typing.get_type_hints(config), {f.name: f for f in dataclasses.fields(config)}
    given = dict(defaults)
    rows = []
    for key in keys:
        value = _toml(given[key] if key in given else _default(fields[key]), hints.get(key))
        factory = (lambda v=value: list(v)) if isinstance(value, list) else None
        rows.append((key, type(value), dataclasses.field(default_factory=factory) if factory else
                     dataclasses.field(default=value)))
    name = config.__name__.removesuffix("Config").removesuffix("Options") + "Section"
    return dataclasses.make_dataclass(name, rows, frozen=True)


def section_factory(stage: Any) -> tuple[Callable[[], Any], tuple[str, str] | None]:
    """(the [section]'s defaults, the library config ref when the section takes every field) of a contract stage."""
    sec = stage.section
    if sec.keys is None:
        start = dict(sec.defaults)
        return (lambda: dict(start)), (stage.Config.__module__, stage.Config.__name__)
    defaults = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in sec.defaults.items()))
    return section_class(stage.Config, tuple(sec.keys), defaults), None  # hashable: the class is made once


def _value(value: Any, default: Any, hint: Any) -> Any:
    """A keyed section's value as the Config takes it: the empty stand-in of a None default back to None, lists to
    tuples, a path's string to a Path."""
    if default is None and not isinstance(value, bool) and value in (0, "") and not isinstance(value, list):
        return None
    if isinstance(value, list):
        return tuple(value)
    return Path(value) if _base_type(hint) is Path and isinstance(value, str) else value


def stage_config(name: str, cfg: Any, **extra: Any) -> Any:
    """The stage `name`'s own Config from the pipeline config `cfg`: its [section], the pipeline-wide keys the
    Config has (arch, seed, tiny), then `extra`. The Config's constructor checks it all (the command's rules)."""
    from dlopt.contract.stage import get_stage

    stage = get_stage(name)
    config = stage.Config
    section = getattr(cfg, name, None) or {}
    hints, fields = typing.get_type_hints(config), {f.name: f for f in dataclasses.fields(config)}
    if dataclasses.is_dataclass(section):  # a keyed section: every key written, 0 / "" standing for None
        kwargs = {k: _value(v, _default(fields[k]), hints.get(k)) for k, v in dataclasses.asdict(section).items()}
    else:  # the keys the user wrote, as written (prune's finetune_epochs = 0 means none, not the default)
        kwargs = dict(section)
    kwargs.update({k: getattr(cfg, k) for k in COMMON if k in fields and k not in kwargs})
    out = config(**{**kwargs, **extra})
    if (validate := getattr(stage, "validate", None)) is not None:  # a Config whose constructor does not check
        validate(out)
    return out


# What the pipeline itself decides of a stage's config: export verifies when `verify` is in `stages`; training
# draws no bars while validating (its step sets them, and the run it trains into).
EXTRA: dict[str, Callable[[Any], dict[str, Any]]] = {
    "export": lambda cfg: {"verify": cfg.has("verify")},
    "train": lambda cfg: {"progress": False},
}


def built(name: str, cfg: Any) -> Any:
    """The config the pipeline runs stage `name` with (validation builds this very object)."""
    return stage_config(name, cfg, **EXTRA.get(name, lambda _cfg: {})(cfg))
