"""A small TOML writer for `--print-config` (the standard library only reads TOML)."""

from __future__ import annotations

import json
from typing import Any


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    if v is None:
        return '""'
    return json.dumps(str(v))  # a TOML basic string is a JSON string


def dumps(data: dict[str, Any], comments: dict[str, str] | None = None) -> str:
    """Top-level scalars first, then one [table] per dict value; `comments` go above tables."""
    comments = comments or {}
    lines = [f"{k} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict) or k == "sets"]
    for key, table in data.items():
        if not isinstance(table, dict) or key == "sets":
            continue
        lines += ["", *(f"# {c}" for c in comments.get(key, "").splitlines()), f"[{key}]"]
        lines += [f"{k} = {_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"
