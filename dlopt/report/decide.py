"""The ship pick: the fastest file within the accuracy budget of fp32 eager whose timing can be trusted.

`decide(data)` returns the pick (the file relative to the run, its runtime and bench settings, speed-up and
accuracy drop against fp32 eager, the noise of its timing) and every row left out, each with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ABSOLUTE_METRICS = {"accuracy", "exact_match"}  # fractions: a "point" is 0.01
KEPT = ("variant", "runtime", "label", "file")  # also at the top of report.json's "ship" (None without a pick)


def budget(data: dict[str, Any]) -> dict[str, Any] | None:
    """The accuracy budget against fp32 eager: its size, unit and the worst metric still inside it."""
    base = next((r for r in data["rows"] if (r["variant"], r["runtime"]) == ("fp32", "eager")), None)
    if base is None or base["metric"] is None:
        return None
    absolute = data.get("metric") in ABSOLUTE_METRICS
    size = 0.01 if absolute else 0.01 * abs(base["metric"])
    higher = data.get("higher_is_better", True)
    return {"base": base["metric"], "size": size, "unit": "1 point" if absolute else "1%",
            "floor": base["metric"] - size if higher else base["metric"] + size, "higher_is_better": higher}


def drop(data: dict[str, Any], value: float, base: float) -> str:
    """The accuracy drop against fp32 eager as people say it: points for fractions, percent otherwise."""
    d = (base - value) if data.get("higher_is_better", True) else (value - base)
    if data.get("metric") in ABSOLUTE_METRICS:
        return f"{100 * d:+.2f} points".replace("+-", "-").replace("+", "") if d else "0.00 points"
    return f"{100 * d / abs(base):.2f}%" if base else f"{d:.4g}"


def _excluded(r: dict[str, Any], batch: int, b: dict[str, Any]) -> str | None:
    if batch not in r["latency"]:
        return f"not timed at batch {batch}"
    if not r["path"]:
        return "timed on a conversion made at bench time (no file in the run); export it to ship it"
    if r["noisy"]:
        return r["noisy"]
    speedup = r["speedup"].get(batch)
    if (r["variant"], r["runtime"]) != ("fp32", "eager") and speedup is not None and speedup < 1:
        return f"slower than fp32 eager at batch {batch} ({speedup:.2f}x): nothing to gain by shipping it"
    if "FAIL" in r["parity"]:
        return f"its parity check failed ({r['parity']})"
    if r["metric"] is None:
        return "no measured metric for this file"
    if (r["metric"] < b["floor"]) if b["higher_is_better"] else (r["metric"] > b["floor"]):
        return f"metric {r['metric']:.4g} is outside the {b['unit']} budget (limit {b['floor']:.4g})"
    return None


def companions(run: str, rel: str) -> list[str]:
    """Files that ship with `rel` (relative to the run): an IR's weights, a record's tensors, ONNX external data."""
    from dlopt.runtime.formats import find_format

    p, rec = Path(rel), find_format(rel)
    names = rec.sidecar_paths(p) if rec else [p.with_suffix(".safetensors")] if p.suffix == ".json" else []
    return [str(n) for n in names if (Path(run) / n).is_file()]


def decide(data: dict[str, Any]) -> dict[str, Any]:
    """{"pick": {...} | None, "rule": str, "excluded": [{label, reason}], "budget": {...} | None}."""
    batch, b = data.get("pareto_batch"), budget(data)
    if batch is None or b is None:
        return {"pick": None, "excluded": [], "budget": b, **dict.fromkeys(KEPT),
                "rule": "no recommendation: the run lacks a benchmark or a measured fp32 metric"}
    rule = (f"fastest at batch {batch} whose test {data.get('metric')} is within {b['unit']} of fp32 eager, not "
            "slower than it, whose parity check did not fail and whose timing is not too noisy to compare")
    excluded, ok = [], []
    for r in data["rows"]:
        why = _excluded(r, batch, b)
        (excluded.append({"label": r["label"], "reason": why}) if why else ok.append(r))
    best = min(ok, key=lambda r: r["latency"][batch]["p50"], default=None)
    if best is None:
        noisy = any(e["reason"].startswith("timing too noisy") for e in excluded)
        advice = ("; the timings were too noisy: rerun `dlopt bench RUN --threads 1` on a quieter machine, then "
                  "`dlopt report RUN`") if noisy else ""
        return {"pick": None, "excluded": excluded, "budget": b, **dict.fromkeys(KEPT),
                "rule": f"no recommendation: no row passes ({rule}){advice}"}
    base_noise = next((r["iqr"].get(batch) for r in data["rows"] if (r["variant"], r["runtime"]) == ("fp32", "eager")),
                      None)
    pick = {"file": best["path"], "with": companions(data["run"], best["path"]), "variant": best["variant"],
            "runtime": best["runtime"], "label": best["label"],
            "threads": (data.get("bench") or {}).get("threads"), "batch": batch,
            "p50_ms": best["latency"][batch]["p50"], "speedup": best["speedup"].get(batch),
            "metric": best["metric"], "metric_source": best["metric_source"],
            "drop": drop(data, best["metric"], b["base"]),
            "iqr_pct": None if best["iqr"].get(batch) is None else 100 * best["iqr"][batch],
            "baseline_iqr_pct": None if base_noise is None else 100 * base_noise}
    return {"pick": pick, "excluded": excluded, "budget": b, "rule": rule, **{k: pick[k] for k in KEPT}}


def banner(ship: dict[str, Any]) -> str:
    """One sentence: what to ship, how to run it, what it gains and costs, how sure the timing is."""
    p = ship["pick"]
    if p is None:
        return ship["rule"]
    speed = f"{p['speedup']:.2f}x" if p["speedup"] is not None else "speed-up unknown"
    noise = f"IQR {p['iqr_pct']:.0f}%" if p["iqr_pct"] is not None else "IQR not recorded"
    base = f", fp32 eager IQR {p['baseline_iqr_pct']:.0f}%" if p["baseline_iqr_pct"] is not None else ""
    threads = f"{p['threads']} thread{'s' if p['threads'] != 1 else ''}" if p["threads"] else "default threads"
    extra = f" (+ {', '.join(p['with'])})" if p.get("with") else ""
    return (f"{p['file']}{extra} on {p['runtime']} ({threads}, batch {p['batch']}): {speed} vs fp32 eager, "
            f"accuracy drop {p['drop']}, timing noise {noise}{base}")
