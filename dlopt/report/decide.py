"""The ship pick: the fastest file within the accuracy budget of fp32 eager whose timing can be trusted.

`decide(data)` returns the pick (the file relative to the run, its runtime and bench settings, speed-up and
accuracy drop against fp32 eager, the noise of its timing) and every row left out, each with the reason.

Without a task metric (a user's model with no data) rows are judged by agreement with fp32 instead: the model
itself, files that verified elementwise equal to it, and int8 files whose quantize check (top-1 agreement or
relative error against fp32, on the user's inputs or random valid ones) passed; the pick says which. An int8 file
that is not at least INT8_GAIN faster than the fp32 file of its runtime is never the pick: it brings nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlopt.report.rows import source_variant

ABSOLUTE_METRICS = {"accuracy", "exact_match"}  # fractions: a "point" is 0.01
KEPT = ("variant", "runtime", "label", "file")  # also at the top of report.json's "ship" (None without a pick)
INT8_GAIN = 1.1  # int8 must beat the fp32 file of the same runtime by this much to be worth shipping


def budget(data: dict[str, Any]) -> dict[str, Any] | None:
    """The accuracy budget against fp32 eager: its size, unit and the worst metric still inside it."""
    base = next((r for r in data["rows"] if (r["variant"], r["runtime"]) == ("fp32", "eager")), None)
    if base is None or base["metric"] is None or data.get("metric") in (None, "", "none"):
        return None
    absolute = data.get("metric") in ABSOLUTE_METRICS
    size = 0.01 if absolute else 0.01 * abs(base["metric"])
    higher = data.get("higher_is_better", True)
    return {"base": base["metric"], "size": size, "unit": "1 point" if absolute else "1%",
            "floor": base["metric"] - size if higher else base["metric"] + size, "higher_is_better": higher}


def drop_value(data: dict[str, Any], value: float, base: float) -> tuple[float, str]:
    """(the accuracy drop against fp32 eager, its unit): points for fractions, percent otherwise."""
    d = (base - value) if data.get("higher_is_better", True) else (value - base)
    if data.get("metric") in ABSOLUTE_METRICS:
        return round(100 * d, 4) + 0.0, "points"
    return (round(100 * d / abs(base), 4) + 0.0, "%") if base else (round(d, 6) + 0.0, data.get("metric") or "")


def drop(data: dict[str, Any], value: float, base: float) -> str:
    """The accuracy drop as people say it ("0.50 points", "1.20%")."""
    d, unit = drop_value(data, value, base)
    return f"{d:.2f} points" if unit == "points" else f"{d:.2f}%" if unit == "%" else f"{d:.4g}"


def _int8_gain(r: dict[str, Any], rows: list[dict[str, Any]], batch: int) -> str | None:
    """Why an int8 row brings nothing: not INT8_GAIN faster than the fp32 file of its source on its runtime."""
    if r["variant"] != "int8" and not r["variant"].endswith("-int8"):
        return None
    src = next((s for s in rows if (s["variant"], s["runtime"]) == (source_variant(r["variant"]), r["runtime"])
                and batch in s["latency"]), None)
    if src is None or batch not in r["latency"] or r["latency"][batch]["p50"] <= 0:
        return None
    gain = src["latency"][batch]["p50"] / r["latency"][batch]["p50"]
    if gain >= INT8_GAIN:
        return None
    return (f"int8 brings nothing here: {gain:.2f}x over {src['label']} at batch {batch} (under {INT8_GAIN:g}x); "
            f"ship the {source_variant(r['variant'])} file ({src['path'] or src['runtime']}) instead")


def _common(r: dict[str, Any], batch: int) -> str | None:
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
    return None


def _excluded(r: dict[str, Any], batch: int, b: dict[str, Any]) -> str | None:
    if why := _common(r, batch):
        return why
    if r["metric"] is None:
        return "no measured metric for this file"
    if (r["metric"] < b["floor"]) if b["higher_is_better"] else (r["metric"] > b["floor"]):
        return f"metric {r['metric']:.4g} is outside the {b['unit']} budget (limit {b['floor']:.4g})"
    return None


def verified_on(run: str, folder: str = "") -> str:
    """What the export's verification compared on: the user's --inputs file, or random valid inputs."""
    from dlopt.core.errors import InputFileError
    from dlopt.core.results import VerifyReport, read_result

    path = Path(run) / folder / "verify-report.json"
    try:
        used = read_result(VerifyReport, path).inputs if path.is_file() else None
    except InputFileError:
        used = None
    if isinstance(used, dict) and used.get("file"):
        return f"on inputs file {Path(str(used['file'])).name}" + (f" ({used['samples']} samples)"
                                                                   if used.get("samples") else "")
    return "on random valid inputs"


def agreement(r: dict[str, Any], quantize: dict[str, Any], run: str = "") -> tuple[str | None, str]:
    """(what shows the row computes what fp32 eager computes, or None; why not) for a run without a task metric."""
    if (r["variant"], r["runtime"]) == ("fp32", "eager"):
        return "the fp32 model itself", ""
    if r["variant"] == "fp32" and r["parity"].startswith("pass ("):
        return f"verified elementwise equal to the fp32 model {verified_on(run, str(Path(r['path']).parent))}", ""
    q = quantize.get(r["variant"])
    if q is not None and r["path"] == f"{r['variant']}/{q.get('artifact')}":
        if source_variant(r["variant"]) != "fp32":
            return None, (f"made from the {source_variant(r['variant'])} model, whose agreement with fp32 was not "
                          "measured (no task metric)")
        if not q.get("verified"):
            return None, "its quantize check against fp32 failed"
        return _quant_basis(q), ""
    if r["path"] and Path(r["path"]).parts[0] == "optimized":
        return _optimized_basis(run, r["path"])
    if r["variant"] == "fp32":
        return None, "not verified against the fp32 model (run dlopt verify RUN)"
    return None, (f"the {r['variant']} model changes what fp32 computes and no task metric measured by how much "
                  "(a model with data and a metric gets one: dlopt train, then prune)")


def _optimized_basis(run: str, rel: str) -> tuple[str | None, str]:
    """`dlopt optimize`'s pick: judged by its study (agreement with fp32, the drop within the budget) and verified
    against the model it was made from before it shipped."""
    from dlopt.core.errors import DloptError
    from dlopt.core.fileio import read_json
    from dlopt.core.runs import Run

    path = Path(run) / Path(rel).parent / "optimize_report.json"
    try:
        if not Run.open(Path(run)).artifact_status(path).trusted:  # changed since, or never a done stage's output
            return None, "its optimize_report.json is not the one the optimize stage recorded: no verdict to trust"
        rep = dict(read_json(path, "optimize report"))
    except (DloptError, OSError, TypeError, ValueError):
        return None, "its optimize_report.json is missing or unreadable: no agreement with fp32 on record"
    pick, check = rep.get("pick") or {}, rep.get("verification") or {}
    drop = (pick.get("verdict") or {}).get("drop") if isinstance(pick, dict) else None
    if not (rep.get("reached") is True and isinstance(check, dict) and check.get("passed") is True
            and isinstance(drop, int | float)):
        return None, "the optimize study shipped it without a passing check against fp32"
    budget = (rep.get("goal") or {}).get("max_drop", 1.0) if isinstance(rep.get("goal"), dict) else 1.0
    return (f"optimize: drop {drop:.2f} points within its {budget:g}-point budget, judged by "
            f"{rep.get('basis') or 'agreement with fp32'}; verified before shipping"), ""


def _quant_basis(q: dict[str, Any]) -> str:
    figures = [f"top-1 agreement {100 * q['top1_agreement']:.1f}%" if q.get("top1_agreement") is not None else "",
               f"relative error {100 * q['relative_error']:.2g}%" if q.get("relative_error") is not None else ""]
    basis = str(q.get("accuracy_basis") or "parity with fp32")
    return f"{', '.join(f for f in figures if f)} vs fp32 ({basis})"


def _without_metric(data: dict[str, Any], batch: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    quantize = data.get("quantize") or {}
    ok, excluded = [], []
    for r in data["rows"]:
        basis, why = agreement(r, quantize, data.get("run") or "")
        why = _common(r, batch) or (why if basis is None else None) or _int8_gain(r, data["rows"], batch)
        if why:
            excluded.append({"label": r["label"], "reason": why})
        else:
            ok.append({**r, "judged_by": basis})
    return ok, excluded


def _nothing(b: dict[str, Any] | None) -> dict[str, Any]:
    return {"pick": None, "excluded": [], "budget": b, **dict.fromkeys(KEPT),
            "rule": "no recommendation: nothing was benchmarked; measure it with `dlopt bench RUN`, then "
                    "`dlopt report RUN`"}


def decide(data: dict[str, Any]) -> dict[str, Any]:
    """{"pick": {...} | None, "rule": str, "excluded": [{label, reason}], "budget": {...} | None}."""
    batch, b = data.get("pareto_batch"), budget(data)
    if batch is None:
        return _nothing(b)
    if b is None:
        ok, excluded = _without_metric(data, batch)
        rule = (f"no task metric, so judged by agreement with fp32: fastest at batch {batch} among the fp32 model, "
                "files verified equal to it and int8 files whose check against fp32 passed (an int8 file must be "
                f"{INT8_GAIN:g}x faster than the fp32 file of its runtime), not slower than fp32 eager, whose timing "
                "is not too noisy to compare")
    else:
        rule = (f"fastest at batch {batch} whose test {data.get('metric')} is within {b['unit']} of fp32 eager, "
                f"not slower than it, int8 only when {INT8_GAIN:g}x faster than the fp32 file of its runtime, whose "
                "parity check did not fail and whose timing is not too noisy to compare")
        excluded, ok = [], []
        for r in data["rows"]:
            why = _excluded(r, batch, b) or _int8_gain(r, data["rows"], batch)
            (excluded.append({"label": r["label"], "reason": why}) if why else ok.append(r))
    best = min(ok, key=lambda r: r["latency"][batch]["p50"], default=None)
    if best is None:
        noisy = any(e["reason"].startswith("timing too noisy") for e in excluded)
        advice = ("; the timings were too noisy: rerun `dlopt bench RUN --threads 1` on a quieter machine, then "
                  "`dlopt report RUN`") if noisy else ""
        return {"pick": None, "excluded": excluded, "budget": b, **dict.fromkeys(KEPT),
                "rule": f"no recommendation: no row passes ({rule}){advice}"}
    pick = _pick(data, best, batch, b)
    return {"pick": pick, "excluded": excluded, "budget": b, "rule": rule, **{k: pick[k] for k in KEPT}}


def _pick(data: dict[str, Any], best: dict[str, Any], batch: int, b: dict[str, Any] | None) -> dict[str, Any]:
    base = next((r for r in data["rows"] if (r["variant"], r["runtime"]) == ("fp32", "eager")), {})
    base_noise = (base.get("iqr") or {}).get(batch)
    threads = (best.get("threads") or {}).get(batch) or (data.get("bench") or {}).get("threads")
    value, unit = drop_value(data, best["metric"], b["base"]) if b and best["metric"] is not None else (None, None)
    speedup, said = best["speedup"].get(batch), None
    if base.get("noisy") and speedup is not None:  # a ratio over a baseline too spread to rank means nothing
        speedup, said = None, f"speed-up vs fp32 eager not stated: its {base['noisy']}"
    return {"file": best["path"], "with": companions(data["run"], best["path"]), "variant": best["variant"],
            "runtime": best["runtime"], "label": best["label"],
            "threads": threads, "baseline_threads": (base.get("threads") or {}).get(batch) or threads, "batch": batch,
            "p50_ms": best["latency"][batch]["p50"], "speedup": speedup, "speedup_note": said,
            "metric": best["metric"], "metric_source": best["metric_source"], "drop": value, "drop_unit": unit,
            "judged_by": best.get("judged_by") or (f"test {data.get('metric')} ({best['metric_source']})"),
            "measured": (best.get("measured") or {}).get(batch),
            "iqr_pct": None if best["iqr"].get(batch) is None else 100 * best["iqr"][batch],
            "baseline_iqr_pct": None if base_noise is None else 100 * base_noise}


def companions(run: str, rel: str) -> list[str]:
    """Files that ship with `rel` (relative to the run): an IR's weights, a record's tensors, ONNX external data."""
    from dlopt.runtime.formats import find_format

    p, rec = Path(rel), find_format(rel)
    names = rec.sidecar_paths(p) if rec else [p.with_suffix(".safetensors")] if p.suffix == ".json" else []
    return [str(n) for n in names if (Path(run) / n).is_file()]


def banner(ship: dict[str, Any]) -> str:
    """One sentence: what to ship, how to run it, what it gains and costs, how sure the timing is."""
    p = ship["pick"]
    if p is None:
        return ship["rule"]
    speed = (f"{p['speedup']:.2f}x vs fp32 eager" if p["speedup"] is not None else
             p.get("speedup_note") or "speed-up unknown")
    if p.get("baseline_threads") and p["threads"] and p["baseline_threads"] != p["threads"]:  # kept bench rows
        speed += f" (timed with {p['baseline_threads']} thread(s): rerun dlopt bench for a fair ratio)"
    noise = f"IQR {p['iqr_pct']:.0f}%" if p["iqr_pct"] is not None else "IQR not recorded"
    base = f", fp32 eager IQR {p['baseline_iqr_pct']:.0f}%" if p["baseline_iqr_pct"] is not None else ""
    threads = f"{p['threads']} thread{'s' if p['threads'] != 1 else ''}" if p["threads"] else "default threads"
    extra = f" (+ {', '.join(p['with'])})" if p.get("with") else ""
    unit = {"points": " points", "%": "%"}.get(p.get("drop_unit") or "", f" {p.get('drop_unit') or ''}".rstrip())
    cost = (f"accuracy drop {p['drop']:.2f}{unit}" if isinstance(p.get("drop"), int | float) else
            f"no task metric: {p.get('judged_by') or 'judged by agreement with fp32'}")
    return (f"{p['file']}{extra} on {p['runtime']} ({threads}, batch {p['batch']}): {speed}, "
            f"{cost}, timing noise {noise}{base}")
