"""What every section of docs/results.md is made with: the section table, safe look-ups into result files whose
shape nobody promised, number formats, Markdown tables, and the line naming the machine a file was measured on.

A section is one small function registered with `@section(glob, title, script, page)`; it gets the parsed files
its glob claims and returns a `Body` (Markdown lines, and optional headline rows for the README)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any


@dataclass(frozen=True)
class Loaded:
    name: str  # file name inside benchmarks/results/
    data: Any  # the parsed JSON; None when it could not be read
    problem: str | None = None  # why it could not be read


@dataclass
class Body:
    lines: list[str]
    headline: list[tuple[str, str]] = field(default_factory=list)  # (what, figure) rows for the README table


Renderer = Callable[[list[Loaded]], Body]


@dataclass(frozen=True)
class Section:
    pattern: str  # glob over file names; several globs joined by "|"
    title: str
    script: str  # the benchmarks/ script that writes the files
    page: str  # the docs/ page with the method and the discussion
    render: Renderer

    def claims(self, name: str) -> bool:
        return any(fnmatch(name, glob) for glob in self.pattern.split("|"))


SECTIONS: dict[str, Section] = {}  # in the order the document shows them


def section(pattern: str, title: str, script: str, page: str) -> Callable[[Renderer], Renderer]:
    def register(fn: Renderer) -> Renderer:
        SECTIONS[pattern] = Section(pattern, title, script, page, fn)
        return fn
    return register


def get(data: Any, path: str | tuple[str, ...], default: Any = None) -> Any:
    """`data["a"]["b"][0]` for path "a.b.0" (or ("a", "b", "0") where a key holds a dot), or `default` where
    any step is missing or of another type."""
    for key in (path.split(".") if path else []) if isinstance(path, str) else path:
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and key.isdigit() and int(key) < len(data):
            data = data[int(key)]
        else:
            return default
    return data


def first(data: Any, *paths: str) -> Any:
    """The value at the first of `paths` that holds something other than None."""
    for path in paths:
        value = get(data, path)
        if value is not None:
            return value
    return None


def num(value: Any, digits: int = 4) -> str:
    """A figure as the tables print it: `digits` significant digits, yes/no for booleans, "-" for nothing."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if abs(value) >= 10 ** digits:  # 1330, not 1.33e+03
            return f"{value:.0f}"
        return f"{value:.{digits}g}"
    return cell(value)


def times(value: Any) -> str:
    return f"{value:.2f}x" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def mb(size: Any) -> str:
    """Bytes as MB (or KB under a megabyte), three significant digits."""
    if not isinstance(size, (int, float)) or isinstance(size, bool):
        return "-"
    return f"{size / 1e6:.3g} MB" if size >= 1e6 else f"{size / 1e3:.3g} KB"


def pct(fraction: Any) -> str:
    return f"{100 * fraction:.1f}%" if isinstance(fraction, (int, float)) and not isinstance(fraction, bool) else "-"


def cell(value: Any, limit: int = 160) -> str:
    text = " ".join(str(value).split())
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return text.replace("|", "\\|")


def table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(c if isinstance(c, str) else num(c) for c in row) + " |" for row in rows]
    return out + [""]


def rows_of(data: Any, path: str) -> list[dict]:
    """The dicts of the list at `path` (others skipped): result files grow rows of several shapes."""
    value = get(data, path, [])
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def slug(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def _load(data: Any) -> str | None:
    load = first(data, "loadavg.start.0", "loadavg.0", "loadavg_before.0", "machine.loadavg_start.0",
                 "loadavg_mean", "bench_loadavg.start.0")
    return f"load {load:.1f}" if isinstance(load, (int, float)) else None


def machine(data: Any) -> str:
    """Which machine and conditions a file records: CPU model and flags, cores, threads, torch, date, load.
    Every result file spells these its own way; the paths below are the spellings in use."""
    cpu = first(data, "environment.cpu.model", "fingerprint.cpu.model", "cpu.model", "machine.cpu", "peak.cpu", "machine.final.cpu.model")
    cpu = cpu if isinstance(cpu, str) else first(data, "cpu", "machine")
    flags = first(data, "environment.cpu.flags", "fingerprint.cpu.flags", "cpu.flags", "machine.final.cpu.flags")
    cores = first(data, "environment.cpu.cores", "fingerprint.cpu.cores", "cpu.cpus", "cpus", "machine.cpus", "loadavg.cpus")
    threads = first(data, "threads", "environment.threads", "fingerprint.threads", "args.threads", "config.threads")
    torch = first(data, "environment.packages.torch", "environment.torch", "torch", "versions.torch")
    when = first(data, "created", "date", "environment.created", "previous_run.created")
    parts = [cpu if isinstance(cpu, str) else "CPU model not recorded"]
    if isinstance(flags, list) and flags:
        parts[0] += " (" + ", ".join(str(f) for f in flags) + ")"
    if isinstance(cores, int):
        parts.append(f"{cores} cores")
    if isinstance(threads, int):
        parts.append(f"{threads} thread" + ("s" if threads != 1 else ""))
    if isinstance(torch, str):
        parts.append(f"torch {torch}")
    if isinstance(when, str) and re.match(r"\d{4}-\d\d-\d\d", when):
        parts.append(when[:10])
    if load := _load(data):
        parts.append(load)
    return ", ".join(cell(p, 200) for p in parts)


def machine_short(data: Any) -> str:
    """CPU model and thread count, for the README's table."""
    full = machine(data).split(", ")
    keep = [full[0].split(" (")[0]] + [p for p in full[1:] if p.endswith(("cores", "thread", "threads"))]
    return ", ".join(keep)


def fallback(loaded: Loaded) -> list[str]:
    """Any result file no section claims: its top-level scalar figures, so none is silently left out."""
    data = loaded.data
    if not isinstance(data, dict):
        kind = f"a list of {len(data)} items" if isinstance(data, list) else f"a {type(data).__name__}"
        return [f"`{loaded.name}` holds {kind}, not an object of named figures.", ""]
    scalars = [[f"`{k}`", num(v)] for k, v in data.items()
               if v is None or isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= 160)]
    nested = [k for k, v in data.items() if isinstance(v, (dict, list))]
    lines = table(["figure", "value"], scalars) if scalars else [f"`{loaded.name}` has no top-level figures.", ""]
    if nested:
        lines += ["Nested fields (not shown): " + ", ".join(f"`{cell(k, 60)}`" for k in nested[:30]) + ".", ""]
    return lines
