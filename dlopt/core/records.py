"""The machinery under dlopt.core.results: frozen dataclasses that read and write themselves as JSON, type-checked.

`Record.from_json(data)` checks each declared field's type (dataclasses from objects, tuples from lists),
defaults a missing optional field, and ignores unknown keys (an older or newer file still reads);
`strict=True` refuses unknown keys too (what a writer must meet). `to_json()` writes every field, except one
declared `optional()` while it holds its default: a key its writer only writes sometimes stays absent then.
`checked_json(record)` is what a writer puts on disk: the record as JSON, refused (RecordWriteError) unless it
reads back as the same record.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import field
from typing import Any, TypeVar

from dlopt.core.errors import InputFileError, OutputError

T = TypeVar("T")


class ResultError(InputFileError):
    """A result file of the right name whose content is not what its stage writes."""


class RecordWriteError(OutputError):
    """A stage built a result record that does not read back as itself (a bug in dlopt): nothing is written."""


def optional(default: Any = None, key: str | None = None) -> Any:
    """A field whose key is left out of the JSON while it holds `default` (its writer writes it only sometimes)."""
    meta = {"omit": True, **({"key": key} if key else {})}
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _check(tp: Any, value: Any, where: str, strict: bool) -> Any:
    """`value` decoded as `tp` (dataclasses from dicts, tuples from lists), or ResultError naming `where`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check(inner[0] if len(inner) == 1 else Any, value, where, strict)
    if dataclasses.is_dataclass(tp):
        return tp.from_json(value, where, strict=strict)
    if origin is dict:
        if not isinstance(value, dict):
            raise ResultError(f"{where}: expected an object, got {type(value).__name__}")
        return {str(k): _check(args[1], v, f"{where}.{k}", strict) for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ResultError(f"{where}: expected a list, got {type(value).__name__}")
        return tuple(_check(args[0], v, f"{where}[{i}]", strict) for i, v in enumerate(value))
    ok = {float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          bool: lambda v: isinstance(v, bool), str: lambda v: isinstance(v, str)}[tp]
    if not ok(value):
        raise ResultError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {str(value)[:40]!r}")
    return float(value) if tp is float else value


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


class Record:
    """from_json / to_json for the frozen dataclasses of dlopt.core.results."""

    @classmethod
    def from_json(cls: type[T], data: Any, where: str = "", strict: bool = False) -> T:
        if not isinstance(data, dict):
            raise ResultError(f"{where or 'the top level'}: expected an object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        values, keys = {}, set()
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            key = f.metadata.get("key", f.name)
            keys.add(key)
            path = f"{where}.{key}" if where else key
            if key in data:
                values[f.name] = _check(hints[f.name], data[key], path, strict)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ResultError(f"{path}: missing")
        unknown = [k for k in data if k not in keys]
        if strict and unknown:
            where_ = f" in {where}" if where else ""
            raise ResultError(f"key {unknown[0]!r}{where_} is not a field of {cls.__name__} (dlopt/core/results.py)")
        return cls(**values)

    @classmethod
    def of(cls: type[T], data: dict[str, Any]) -> T:
        """The record of a dict a writer assembled: RecordWriteError names an undeclared key or a wrong type."""
        try:
            return cls.from_json(as_json(data), strict=True)  # type: ignore[attr-defined]
        except ResultError as exc:
            raise RecordWriteError(f"dlopt built the {cls.__name__} record that it cannot write ({exc}); nothing "
                                   "was written -- this is a bug in dlopt, please report it") from None

    def to_json(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.metadata.get("omit") and value == _default(f):
                continue
            out[f.metadata.get("key", f.name)] = _plain(value)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _jsonable(value: Any) -> Any:
    """A numpy or torch scalar as its Python number; anything else JSON cannot hold (a Path, ...) as its text."""
    item = getattr(value, "item", None)
    if callable(item) and tuple(getattr(value, "shape", (None,))) == ():
        return item()
    return str(value)


def as_json(data: Any) -> Any:
    """`data` as it reads back from a JSON file."""
    return json.loads(json.dumps(data, default=_jsonable))


def difference(a: Any, b: Any, where: str = "") -> str | None:
    """Where two JSON values differ (numbers by value, NaN equal to NaN), or None when they are the same."""
    here = where or "the top level"
    if isinstance(a, dict) and isinstance(b, dict):
        for k in dict.fromkeys([*a, *b]):
            if k not in a or k not in b:
                return f"{where}.{k}: {'added' if k not in a else 'lost'} on reading back".lstrip(".")
            d = difference(a[k], b[k], f"{where}.{k}" if where else str(k))
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{here}: {len(a)} items written, {len(b)} read back"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := difference(x, y, f"{where}[{i}]"))), None)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    if numbers and (a == b or (math.isnan(a) and math.isnan(b))):
        return None
    if not numbers and type(a) is type(b) and a == b:
        return None
    return f"{here}: {str(a)[:40]!r} written, {str(b)[:40]!r} read back"


def checked_json(record: Record, what: str) -> dict[str, Any]:
    """`record` as the JSON a file will hold, after checking that it reads back (strictly) as the same record."""
    data = as_json(record.to_json())
    try:
        problem = difference(data, type(record).from_json(data, strict=True).to_json())
    except ResultError as exc:
        problem = str(exc)
    if problem:
        raise RecordWriteError(f"dlopt built a {what} it cannot write ({problem}); nothing was written "
                               "-- this is a bug in dlopt, please report it")
    return data
