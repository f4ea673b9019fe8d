"""Kept widths chosen from a MEASURED per-layer latency table of the target runtime (HALP / NetAdapt-like).

The rule in `widths.choose` gives each wide layer the multiple of 16 or 8 nearest to its exact kept width. That
is a guess about the hardware; here the guess is checked. For every group of coupled layers (one Torch-Pruning
dependency group: the layers whose outputs share the channels, e.g. a ResNet stage's residual stream, and the
layers reading them), a handful of candidate widths (multiples of 8 that move the layer's share removed at most
`MAX_SHIFT` from the ratio; for a layer under 64 channels whose window holds no multiple of 16, also the nearest
multiples of 16: width_groups.candidates) are timed as the single Conv / Linear calls that width makes --
producers with that many outputs, readers with that many inputs -- on the target runtime (eager torch or ONNX
Runtime, one thread) at the target batch size, interleaved, a few rounds, fastest sample. The choice over all
groups minimises the summed time while the overall share of channels removed stays within `OVERALL_SHIFT` of
the ratio (a small knapsack; equal times go to the widths nearest the rule's), so a fast width in one layer is
paid for by a slower one elsewhere, never by pruning much more than asked. Narrow layers, single-candidate
windows and layers that cannot be timed alone (recurrent, attention heads, grouped convs) keep the rule's width.

Times are cached per machine and runtime in `<DLOPT_CACHE_DIR or ~/.cache/dlopt>/width-table-*.json`, keyed by
CPU model, runtime and version, thread count and each call's geometry (batch included). The cache is read as
untrusted input: bounded in size, schema-checked; a file that fails is ignored with a notice and rewritten.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from dlopt.core.errors import ConfigError
from dlopt.prune.config import PruneConfig
from dlopt.prune.layers import width
from dlopt.prune.op_calls import THREADS, Op, measure_ops
from dlopt.prune.width_groups import Group, candidates, groups_of
from dlopt.prune.widths import ALIGN, MAX_SHIFT, SMALL_ALIGN, WidthChoice, choose

SCHEMA = 2  # 2: CPU time (1 held wall-clock times)
OVERALL_SHIFT = 0.02  # the chosen widths together remove the ratio +- this share of the planned channels
PARAM_SHIFT = 0.04  # ... and a share of the model's parameters within this of what the rule's widths remove
MAX_CACHE_BYTES = 2 << 20
MAX_ENTRIES = 20_000
MAX_KEY_CHARS = 200

Measure = Callable[[list[Op]], dict[str, float]]  # geometries -> {key: ms per call}


@dataclass
class TableInfo:
    """What the table did in one prune, for the report (shared by every layer it chose)."""

    runtime: str
    batch: int
    cache: str
    measured: int = 0
    cached: int = 0
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "batch": self.batch, "threads": THREADS, "cache": self.cache,
                "calls_measured": self.measured, "calls_from_cache": self.cached,
                "seconds": round(self.seconds, 3), "notices": list(self.notices)}


def runtime_version(runtime: str) -> str:
    if runtime == "eager":
        import torch

        return f"torch-{torch.__version__}"
    import onnxruntime

    return f"onnxruntime-{onnxruntime.__version__}"


def cache_path(runtime: str) -> Path:
    from dlopt.bench.roofline import cache_dir
    from dlopt.core.environment import cpu_info
    from dlopt.core.fileio import safe_name

    return cache_dir() / f"width-table-{safe_name(cpu_info()['model'])}-{safe_name(runtime_version(runtime))}" \
                         f"-t{THREADS}.json"


def _header(runtime: str) -> dict[str, Any]:
    from dlopt.core.environment import cpu_info

    return {"schema": SCHEMA, "cpu": cpu_info()["model"], "runtime": runtime_version(runtime), "threads": THREADS}


def _valid_ms(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 < v < 1e7


def read_cache(path: Path, runtime: str, notices: list[str]) -> dict[str, float]:
    """The cached {geometry key: ms}; {} (and a notice) for a missing header, a foreign machine, or a bad file."""
    from dlopt.core.errors import InputFileError
    from dlopt.core.fileio import read_json

    if not path.exists():
        return {}
    try:
        data = read_json(path, "width-table cache", limit=MAX_CACHE_BYTES)
    except InputFileError as exc:
        return _ignored(path, str(exc), notices)
    want = _header(runtime)
    if not isinstance(data, dict) or any(data.get(k) != v for k, v in want.items()):
        return _ignored(path, "its header is not this table's (schema, CPU, runtime version, threads)", notices)
    entries = data.get("entries")
    if not isinstance(entries, dict) or len(entries) > MAX_ENTRIES:
        return _ignored(path, f"'entries' is not a table of at most {MAX_ENTRIES} timings", notices)
    bad = [k for k, v in entries.items() if len(k) > MAX_KEY_CHARS or not _valid_ms(v)]
    if bad:
        return _ignored(path, f"{len(bad)} entries are not a geometry and a positive time in ms", notices)
    return {k: float(v) for k, v in entries.items()}


def _ignored(path: Path, why: str, notices: list[str]) -> dict[str, float]:
    why = why.removeprefix(f"width-table cache {path} ")
    line = f"width-table cache {path} ignored: {why[:240]}; its timings are measured again and the file rewritten"
    notices.append(line)
    print(f"dlopt: note: {line}", file=sys.stderr)
    return {}


def write_cache(path: Path, runtime: str, entries: dict[str, float], notices: list[str]) -> None:
    """Keep the newest MAX_ENTRIES; a cache that cannot be written costs a re-measure next time, not the prune."""
    from dlopt.core.fileio import write_json_atomic

    kept = dict(list(entries.items())[-MAX_ENTRIES:])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {**_header(runtime), "entries": kept})
    except OSError as exc:
        notices.append(f"width-table cache {path} not written ({exc.strerror or exc})")


class LatencyTable:
    """ms per call geometry on one runtime: served from the cache, the rest measured (all at once) and saved."""

    def __init__(self, runtime: str, batch: int, measure: Measure | None = None, path: Path | None = None):
        self.runtime, self.batch = runtime, batch
        self.path = path or cache_path(runtime)
        self.info = TableInfo(runtime, batch, str(self.path))
        self._measure = measure or (lambda ops: measure_ops(ops, runtime))
        self._entries: dict[str, float] | None = None

    def times(self, ops: list[Op]) -> dict[str, float]:
        t0 = time.perf_counter()
        if self._entries is None:
            self._entries = read_cache(self.path, self.runtime, self.info.notices)
        unique = {op.key: op for op in ops}
        missing = [op for k, op in unique.items() if k not in self._entries]
        self.info.cached += len(unique) - len(missing)
        if missing:
            got = self._measure(missing)
            self._entries.update({k: float(v) for k, v in got.items() if _valid_ms(v)})
            self.info.measured += len(missing)
            write_cache(self.path, self.runtime, self._entries, self.info.notices)
        self.info.seconds += time.perf_counter() - t0
        return {k: self._entries[k] for k in unique}


def knapsack(plan: dict[str, WidthChoice], groups: list[Group], cost: list[dict[int, float]],
             ratio: float, shift: float = OVERALL_SHIFT) -> tuple[int, ...]:
    """Each group's width, minimising the summed time with the overall share removed within `shift` of the
    ratio (or of the rule's own share, where that is further): exact over kept-channel totals."""
    grouped = {n for g in groups for n in g.names}
    total = sum(c.before for c in plan.values())
    # kept-channel total -> (summed time, channels away from the rule's widths: ties go to the rule, picks)
    states: dict[int, tuple[float, int, tuple[int, ...]]] = {
        sum(c.kept for n, c in plan.items() if n not in grouped): (0.0, 0, ())}
    for g, cst in zip(groups, cost, strict=True):
        rule_width = plan[g.names[0]].kept
        nxt: dict[int, tuple[float, int, tuple[int, ...]]] = {}
        for kept, (t, away, picks) in states.items():
            for c in g.cands:
                key, val = kept + c * len(g.names), (t + cst[c], away + abs(c - rule_width), (*picks, c))
                if key not in nxt or val[:2] < nxt[key][:2]:
                    nxt[key] = val
        states = nxt
    rule = 1 - sum(c.kept for c in plan.values()) / total
    lo, hi = min(ratio - shift, rule) - 1e-9, max(ratio + shift, rule) + 1e-9
    ok = [(t, abs(1 - k / total - ratio), away, picks) for k, (t, away, picks) in states.items()
          if lo <= 1 - k / total <= hi]
    return min(ok)[3]  # ties: the share nearest the ratio, then the widths nearest the rule's


def _params_moved(plan: dict[str, WidthChoice], groups: list[Group], picks: tuple[int, ...]) -> int:
    """Parameters the picks keep beyond the rule's widths (summed per group: exact where a layer is touched by
    one timed group, first-order where by two)."""
    rule = [plan[g.names[0]].kept for g in groups]
    return sum(sum(op.params for op in g.ops[c]) - sum(op.params for op in g.ops[k])
               for g, c, k in zip(groups, picks, rule, strict=True))


def _within_params(plan: dict[str, WidthChoice], groups: list[Group], cost: list[dict[int, float]], ratio: float,
                   total: int) -> tuple[int, ...]:
    """The knapsack's picks, its channel budget narrowed until the parameters removed move at most PARAM_SHIFT
    from the rule's widths (a layer loses inputs too, so 2 points of channels can move 4-5 points of parameters:
    the cnn's 1152 x 512 Linear); at worst the rule's own widths."""
    for shift in (OVERALL_SHIFT, OVERALL_SHIFT / 2, OVERALL_SHIFT / 4, 0.0):
        picks = knapsack(plan, groups, cost, ratio, shift)
        if abs(_params_moved(plan, groups, picks)) <= PARAM_SHIFT * total:
            return picks
    return tuple(plan[g.names[0]].kept for g in groups)


def _single(choice: WidthChoice, ratio: float) -> WidthChoice:
    """A rounded width that is the window's only multiple of ALIGN says so: there was nothing to measure."""
    if "rounded to the nearest" in choice.why and candidates(choice, ratio) == [choice.kept]:
        return replace(choice, why=f"{choice.why}; the only multiple of {ALIGN} in the window, so not timed")
    return choice


def _outside(before: int, kept: int, ratio: float) -> str:
    """The reason a chosen width lies outside the 10-point window (a multiple of SMALL_ALIGN: width_groups)."""
    removed = 1 - kept / before
    if abs(removed - ratio) <= MAX_SHIFT + 1e-9:
        return ""
    return (f"; removes {removed:.0%} of this layer, outside the {MAX_SHIFT * 100:g}-point window: a multiple of "
            f"{SMALL_ALIGN}, the AVX-512 channel block, timed faster, the overall share held near the ratio")


def refine(plan: dict[str, WidthChoice], module: nn.Module, example: tuple[Any, ...], runtime: str, batch: int,
           ratio: float, table: LatencyTable | None = None) -> tuple[dict[str, WidthChoice], dict[str, Any] | None]:
    """The plan with each timeable group's width chosen from the table; and what the table did (None: no group
    had a choice to make, nothing was measured)."""
    plan = {n: _single(c, ratio) for n, c in plan.items()}
    groups = groups_of(module, example, plan, ratio, batch)
    if not groups:
        return plan, None
    table = table or LatencyTable(runtime, batch)
    cost, timed, failed = [], [], {}
    for g in groups:  # one group at a time: its candidates interleaved, the memory of one group's tensors
        try:
            ms = table.times([op for calls in g.ops.values() for op in calls])
        except Exception as exc:  # noqa: BLE001 -- a runtime refusing a call (ORT raises its own types): the
            # group keeps the rule's width and its row says why; a prune never fails over a measurement
            failed.update({n: f"{type(exc).__name__}: {str(exc)[:120]}" for n in g.names})
            continue
        timed.append(g)
        cost.append({c: sum(ms[op.key] for op in g.ops[c]) for c in g.cands})
    info = table.info.to_json()
    new = {n: replace(c, why=f"{c.why}; not timed on {runtime} ({failed[n]})", detail={"table": info})
           if n in failed else c for n, c in plan.items()}
    groups = timed
    if not groups:
        return new, info
    picks = _within_params(plan, groups, cost, ratio, sum(p.numel() for p in module.parameters()))
    for g, cst, kept in zip(groups, cost, picks, strict=True):
        fastest = min(cst, key=lambda c: cst[c])
        shown = ", ".join(f"{c}: {cst[c]:.3g} ms" for c in g.cands)
        how = "fastest in the window" if kept == fastest else \
            f"in the window, for the lowest total time with the overall share within {OVERALL_SHIFT * 100:g} " \
            f"points of the ratio (fastest alone: {fastest})"
        why = f"{how} on {runtime} at batch {batch} (measured {shown}){_outside(g.before, kept, ratio)}"
        detail = {"requested_ratio": ratio, "candidates_ms": {str(c): round(cst[c], 4) for c in g.cands},
                  "chosen_by": "measured latency table", "rule_width": plan[g.names[0]].kept}
        for name in g.names:
            new[name] = replace(plan[name], kept=kept, why=why, detail={**detail, "table": info})
    return new, info


def plan_widths(prunable: list[tuple[str, nn.Module]], heads: dict[nn.Module, int], cfg: PruneConfig,
                module: nn.Module | None = None, example: tuple[Any, ...] | None = None) -> dict[str, WidthChoice]:
    """Layer name -> plan, for the prunable layers that are not attention projections (those lose whole heads).
    A plan that would leave a layer or an attention module with nothing is refused. Given the module and its
    example input, and at the default widths (`cfg.width_table`, no --round-to, no --global), each wide layer's
    width inside the window is then chosen from a measured latency table of cfg.target_runtime at
    cfg.target_batch (dlopt.prune.width_table)."""
    plan: dict[str, WidthChoice] = {}
    for name, m in prunable:
        if m in heads:
            if int(heads[m] * (1 - cfg.ratio)) < 1:
                _refuse(name.rpartition(".")[0], heads[m], "heads", cfg, None)
            continue
        choice = choose(width(m), cfg)
        if choice.kept < 1:
            _refuse(name, choice.before, "channels", cfg, choice)
        plan[name] = choice
    if module is not None and example is not None and cfg.width_table and not cfg.round_to \
            and not cfg.global_pruning:
        plan, _ = refine(plan, module, example, cfg.target_runtime, cfg.target_batch, cfg.ratio)
    return plan


def _refuse(where: str, count: int, unit: str, cfg: PruneConfig, choice: WidthChoice | None) -> None:
    kept = int(count * (1 - cfg.ratio))
    hint = f"a --round-to of at most {kept}" if choice is not None and cfg.round_to and kept >= 1 else \
        f"a ratio of at most {math.floor((1 - 1 / count) * 100) / 100:.2f}"
    raise ConfigError(f"--ratio {cfg.ratio:g} would remove every one of the {count} {unit} of {where}; use {hint}")
