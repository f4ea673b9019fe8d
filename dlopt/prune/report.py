"""What a structured prune did to each layer and why, for prune_report.json and the CLI table.

`explain(info, cfg)` turns `prune_model`'s info (widths before / after, the width plan, the layers kept whole)
into: the ratio asked for against the share achieved (channels over the pruned layers, and parameters),
one row per layer (before, after, share removed, reason), and notes (which layers were left whole and why).
"""

from __future__ import annotations

from typing import Any

from dlopt.prune.config import PruneConfig
from dlopt.prune.widths import ALIGN, MAX_SHIFT, MIN_ROUNDED


def channels(width: dict[str, int]) -> int | None:
    """A layer's prunable width in `layer_widths`: out channels / features, or a recurrent hidden size."""
    return width.get("out", width.get("hidden"))


def _layer_rows(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    before, after = info["widths"]["before"], info["widths"]["after"]
    plan, kept = info.get("width_plan", {}), info.get("kept_layers", {})
    heads = {n for n, w in before.items() if "heads" in w}
    dropped = (info.get("blocks") or {}).get("dropped", [])
    rows: dict[str, dict[str, Any]] = {}
    for name, w in before.items():
        block = next((b for b in dropped if name.startswith(b + ".")), None)
        if block is not None:
            unit = "heads" if name in heads else "channels"
            b = w["heads"] if name in heads else channels(w)
            rows[name] = {"unit": unit, "before": b, "after": 0, "why": f"removed with its residual block {block}"}
            continue
        if name in heads:
            b, a = w["heads"], after.get(name, w)["heads"]
            rows[name] = {"unit": "heads", "before": b, "after": a, "why": "whole attention heads at the ratio"}
            continue
        b, a = channels(w), channels(after.get(name, w))
        if name in plan:
            why = plan[name]["why"]
            extra = {"requested_ratio": info.get("ratio"),
                     **{k: plan[name][k] for k in ("candidates_ms", "rule_width") if k in plan[name]}}
            if "planned" in plan[name] and a != plan[name]["planned"]:
                why += f" (planned {plan[name]['planned']}; a coupled layer's plan set the group's width)"
        elif name in kept:
            why, extra = f"kept whole: {kept[name]}", {}
        elif name.rpartition(".")[0] in heads:
            why, extra = "attention projection: follows its module's heads", {}
        else:
            continue
        rows[name] = {"unit": "channels", "before": b, "after": a, "why": why, **extra}
    for row in rows.values():
        row["removed"] = round(1 - row["after"] / row["before"], 4) if row["before"] else 0.0
    return rows


def explain(info: dict[str, Any], cfg: PruneConfig) -> dict[str, Any]:
    """The report's `achieved`, `layers` and `notes` for a structured prune."""
    rows = _layer_rows(info)
    pruned = [r for n, r in rows.items() if r["unit"] == "channels" and n in info.get("width_plan", {})]
    total = sum(r["before"] for r in pruned)
    achieved = round(1 - sum(r["after"] for r in pruned) / total, 4) if total else 0.0
    left = info.get("kept_layers", {})
    out = {"achieved": {"requested_ratio": cfg.ratio, "channels": achieved, "params": info["params"]["removed"],
                        "macs": info["macs"]["removed"],
                        "meaning": "channels: share of the pruned layers' channels removed (all layers together); "
                                   "params and macs fall by more, since a layer loses inputs as well as outputs"},
           "layers": rows, "notes": []}
    table = next((p["table"] for p in info.get("width_plan", {}).values() if "table" in p), None)
    if table is not None:
        out["achieved"]["width_table"] = table
        out["notes"].append(_table_note(table, rows))
    note = _width_note(cfg, pruned)
    if note:
        out["notes"].append(note)
    blocks = info.get("blocks")
    if blocks:
        out["notes"].append(f"{len(blocks['dropped'])} of {blocks['found']} residual blocks removed whole, each now "
                            f"passing its input through: {', '.join(blocks['dropped'])} ({blocks['why']})")
    if left:
        reasons = sorted(set(left.values()))
        out["notes"].append(f"{len(left)} layer(s) left whole ({'; '.join(reasons)}): see kept_layers")
    return out


def _table_note(table: dict[str, Any], rows: dict[str, dict[str, Any]]) -> str:
    """Which widths the measured table moved away from the nearest-multiple rule, and what measuring cost."""
    moved = [f"{n} {r['rule_width']} -> {r['after']}" for n, r in rows.items()
             if "rule_width" in r and r["rule_width"] != r["after"]]
    shown = ", ".join(moved[:6]) + (", ..." if len(moved) > 6 else "") if moved else "none moved"
    cost = (f"{table['calls_measured']} calls measured in {table['seconds']:g} s, {table['calls_from_cache']} "
            "from the cache")
    return (f"widths chosen inside the window from a measured latency table ({table['runtime']}, batch "
            f"{table['batch']}, one thread; {cost}): rule width -> chosen: {shown}; see layers[*].candidates_ms"
            + (f"; {'; '.join(table['notices'])}" if table["notices"] else ""))


def _width_note(cfg: PruneConfig, pruned: list[dict[str, Any]]) -> str | None:
    """Say when the widths chosen are ones CPU kernels run slowly, and what would change that."""
    odd = sorted({r["after"] for r in pruned if r["after"] % ALIGN and r["after"] >= MIN_ROUNDED})
    if not odd:
        return None
    shown = ", ".join(map(str, odd[:5])) + (", ..." if len(odd) > 5 else "")
    why = (f"kept widths {shown} are not multiples of {ALIGN}, which CPU convolution / matmul kernels run on "
           "slower paths")
    if cfg.global_pruning and not cfg.round_to:
        return f"{why}; with --global the widths come from the ranking: add --round-to {ALIGN} to round them down"
    if cfg.round_to == 1:
        return f"{why}; without --round-to 1 (the default) they are rounded to the nearest multiple of {ALIGN}"
    if cfg.round_to:
        return f"{why} (--round-to {cfg.round_to})"
    if any(r["why"].startswith("exact ratio: the nearest multiple") for r in pruned if r["after"] in odd):
        return (f"{why}; kept at the exact ratio on purpose: the nearest multiple would move the layer's share "
                f"removed more than {MAX_SHIFT * 100:g} points from the ratio (see layers)")
    return why


def speedup_line(result: dict[str, Any]) -> str | None:
    """How the report's speed-up was measured, for the summary: the default quick timing says so and what gives more
    (--bench), or why there is none (--no-speedup)."""
    latency, cfg = result.get("latency") or {}, result.get("config") or {}
    if latency.get("method"):
        return (f"speed-up measured {latency['method']}" + "".join(f"; {p}" for p in latency.get("problems") or [])
                + "; --bench times eager, ONNX Runtime and OpenVINO at batch 1 and 8")
    if not latency and not cfg.get("speedup", True) and not cfg.get("target_speedup"):
        return "speed-up not measured (--no-speedup)"
    return None
