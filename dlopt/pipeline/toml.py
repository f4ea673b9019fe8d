"""TOML for `--print-config`, written with tomlkit (the standard library only reads TOML).

Every key is written; a key whose value is None (the library decides) becomes a commented line,
`# round_to = (none: default)`, since TOML has no null. The text loads back through `load_config`.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

NONE_NOTE = "(none: default)"


def _plain(v: Any) -> Any:
    """Values tomlkit can write: enums and paths as strings, tuples as lists (None is handled by the caller)."""
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items() if x is not None}
    return v


def _add(container: Any, key: str, value: Any) -> None:
    import tomlkit

    if value is None:
        container.add(tomlkit.comment(f"{key} = {NONE_NOTE}"))
    elif isinstance(value, dict):  # a top-level mapping such as `sets`: one line, as a user writes it
        inline = tomlkit.inline_table()
        inline.update(_plain(value))
        container.add(key, inline)
    else:
        container.add(key, _plain(value))


def dumps(data: dict[str, Any], comments: dict[str, str] | None = None,
          inline: tuple[str, ...] = ("sets",)) -> str:
    """Top-level scalars first, then one [table] per dict value (except `inline` keys); `comments` go above tables."""
    import tomlkit

    comments = comments or {}
    doc = tomlkit.document()
    for key, value in data.items():
        if not isinstance(value, dict) or key in inline:
            _add(doc, key, value)
    for key, section in data.items():
        if not isinstance(section, dict) or key in inline:
            continue
        doc.add(tomlkit.nl())
        for line in comments.get(key, "").splitlines():
            doc.add(tomlkit.comment(line))
        table = tomlkit.table()
        for k, v in section.items():
            _add(table, k, v)
        doc.add(key, table)
    return tomlkit.dumps(doc)
