"""Which recipes to try, and `auto`: build each valid one, time them interleaved at batch 1 on one thread
against eager fp32, score them on the validation split, keep the fastest within the accuracy budget."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dlopt.core.errors import DloptError, UnsupportedError
from dlopt.quantize.accuracy import margin_for
from dlopt.quantize.config import Method, QBackend, QuantizeConfig
from dlopt.quantize.judge import Judge
from dlopt.quantize.recipe import Built, Recipe, backend, supports, unsupported

Builder = Callable[[Recipe, bool], Built]


def recipes(spec: Any, cfg: QuantizeConfig, backends: tuple[QBackend, ...]) -> list[Recipe]:
    """The recipes `cfg` asks for that the spec allows (auto: every method each backend offers `auto`)."""
    if cfg.method != Method.AUTO:
        if (why := unsupported(spec, cfg.method)) is not None:
            raise UnsupportedError(f"{spec.name} cannot be quantized with {cfg.method}: {why}")
        return [Recipe(backends[0], cfg.method, cfg.quant_format, cfg.per_channel)]
    out = []
    for name in backends:
        found = backend(name)
        for method in found.offers("AUTO_METHODS"):
            if not supports(spec, method):
                continue
            formats = found.static_formats if method == Method.STATIC and found.static_formats else \
                (cfg.quant_format,)
            out += [Recipe(name, method, fmt, cfg.per_channel) for fmt in formats]
    if not out:
        raise UnsupportedError(f"{spec.name} has no int8 path: {spec.why_not('quantize:static')}")
    return out


def data_free_split(todo: list[Recipe], calibration_source: str, method: Method) -> tuple[list[Recipe], list[Recipe]]:
    """(recipes to try first, last resort). Without data (calibration on random inputs that are not the model's
    input distribution), auto tries dynamic int8 first and keeps static int8 for when no dynamic path converts a
    layer: a conv-only model (a UNet) has no Linear layer for dynamic int8, and static int8 calibrated on random
    inputs is then its only int8 path -- said in the notes, with how to calibrate on real inputs."""
    if method != Method.AUTO or not (calibration_source.startswith("random") and "no dataset" in calibration_source):
        return todo, []
    return [r for r in todo if r.method != Method.STATIC], [r for r in todo if r.method == Method.STATIC]


RANDOM_CALIBRATION_NOTE = ("static int8 calibrated on random inputs, because no dynamic int8 path converted a layer "
                           "and the model has no data: its activation ranges fit random N(0,1) inputs, not your "
                           "data; give --inputs FILE.npz of real inputs to calibrate on them")
NOT_TRIED_NOTE = "static int8 not tried: no calibration data for this model (dynamic int8 converted layers)"


def time_runners(fns: dict[str, Callable[[], Any]], budget_s: float) -> dict[str, float]:
    """Median ms per call, interleaved with dlopt.bench's round-robin loop (the bench stage's timing)."""
    from dlopt.bench.config import BenchConfig
    from dlopt.bench.timing import round_robin, warm_up

    estimates = {k: warm_up(fn, 3).estimate_s for k, fn in fns.items()}
    series = round_robin(fns, estimates, BenchConfig(budget_s=budget_s, min_calls=10, block_s=0.02))
    return {k: round(1e3 * sorted(s.times)[len(s.times) // 2], 4) for k, s in series.items()}


def measure(builds: dict[str, Built], reference: Any, example: tuple[Any, ...], budget_s: float,
            extra: dict[str, Callable[[], Any]] | None = None) -> dict[str, float]:
    """Batch-1 latency (ms) of every built candidate, eager fp32 and any extra references, one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            fns = {"eager fp32": lambda: reference(*example), **(extra or {})}
            fns.update({label: (lambda b=b: b.runner(*example)) for label, b in builds.items()})
            return time_runners(fns, budget_s)
    finally:
        torch.set_num_threads(before)


def build_all(todo: list[Recipe], build: Builder, has_int8: Callable[[Built], bool],
              progress: Callable[[str], None]) -> tuple[dict[str, Built], dict[str, str]]:
    built, failed = {}, {}
    for recipe in todo:
        progress(f"building {recipe.label}")
        try:
            b = build(recipe, False)
        except DloptError:
            raise
        except Exception as exc:  # one quantizer failing on this graph must not sink the other paths
            failed[recipe.label] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            continue
        if recipe.method in (Method.STATIC, Method.DYNAMIC) and not has_int8(b):
            failed[recipe.label] = "the quantizer converted no layer of this graph to int8"
            continue
        built[recipe.label] = b
    return built, failed


def todo_built(built: dict[str, Built], todo: list[Recipe]) -> bool:
    return any(r.label in built for r in todo)


def pick(built: dict[str, Built], drops: dict[str, float | None], latency: dict[str, float],
         max_drop: float, budget_text: str | None = None) -> tuple[str, str]:
    """The fastest within budget; else the smallest drop (the accuracy-aware search then works on it)."""
    ok = [k for k in built if drops[k] is None or drops[k] <= max_drop]
    over = [k for k in built if k not in ok]
    text = budget_text or f"{max_drop:g}-point budget"  # without a metric the judge says what the budget is
    if not ok:
        best = min(built, key=lambda k: (drops[k], latency[k]))
        return best, f"no candidate within the {text}; smallest drop, then the accuracy-aware search"
    ranked = sorted(ok, key=lambda k: latency[k])
    best = ranked[0]
    why = f"{best}: {latency[best]:.4g} ms, the fastest at batch 1 of {len(ok)} candidate(s) within the {text}"
    if len(ranked) > 1:
        nxt = ranked[1]
        why += f"; next {nxt} at {latency[nxt]:.4g} ms ({latency[nxt] / latency[best]:.2f}x slower)"
    if over:
        why += "; over budget: " + ", ".join(f"{k} (drop {drops[k]:.3g})" for k in over)
    return best, why


def available(backends: tuple[QBackend, ...]) -> tuple[tuple[QBackend, ...], str | None]:
    """Auto's backends that can run here (each backend's `requires` importable: OpenVINO needs openvino and nncf).
    When one cannot, the others are measured and the note says why (a backend asked for alone still fails with the
    install hint)."""
    import importlib.util

    if len(backends) == 1:
        return backends, None
    missing = {b: [m for m in backend(b).requires if _find(importlib.util, m) is None] for b in backends}
    gone = [b for b in backends if missing[b]]
    if not gone:
        return backends, None
    rest = tuple(b for b in backends if not missing[b])
    names = [m for b in gone for m in missing[b]]
    shown = ", ".join(backend(b).label or str(b) for b in gone)
    return rest, (f"measured {', '.join(map(str, rest))} only: {shown} not measured because "
                  f"{' and '.join(names)} {'is' if len(names) == 1 else 'are'} not installed "
                  f"(pip install {' '.join(m for b in gone for m in backend(b).requires)})")


def backends_note(asked: tuple[QBackend, ...], todo: list[Recipe], last_resort: list[Recipe],
                  candidates: list[dict[str, Any]]) -> str:
    """Which backends auto timed and, when only one, why not the others: the one asked for, one not installed, one
    whose only int8 is static (it needs calibration data the model has none of), one whose recipes failed, or one
    offering no int8 method for this model."""
    here, missing = available(asked)
    timed = sorted({str(c["backend"]) for c in candidates if "backend" in c})
    if missing:
        return missing
    if len(timed) > 1:
        return f"measured {' and '.join(timed)} together"
    if len(asked) == 1:
        return f"measured {timed[0]} only (the backend asked for)"
    why = []
    for b in (b for b in here if str(b) not in timed):
        name = backend(b).label or str(b)
        if any(r.backend == b for r in todo):
            why.append(f"{name}'s recipes failed (see the candidates)")
        elif any(r.backend == b for r in last_resort):
            why.append(f"{name} offers static int8 only, which needs calibration data and this model has none "
                       "(--inputs FILE.npz calibrates on your inputs)")
        else:
            why.append(f"{name} offers no int8 method this model supports")
    return f"measured {timed[0]} only" + (f": {'; '.join(why)}" if why else "")


def _find(util: Any, name: str) -> Any:
    try:
        return util.find_spec(name)
    except (ImportError, ValueError):  # a broken or stubbed install counts as missing
        return None


def _row(label: str, b: Built, drop: float | None, latency: dict[str, float], best: str) -> dict[str, Any]:
    same = latency.get(f"{b.recipe.backend} fp32")  # int8 over fp32 on its own runtime: what int8 itself brings
    return {"recipe": label, "backend": str(b.recipe.backend), "method": str(b.recipe.method), "val_drop": drop,
            "latency_ms_b1": latency[label], "speedup_vs_eager": round(latency["eager fp32"] / latency[label], 3),
            "speedup_vs_fp32": round(same / latency[label], 3) if same else None,
            "bytes": b.bytes, "layers_int8": len(b.quantized_layers), "layers_float": len(b.float_layers),
            "chosen": label == best}


def choose(todo: list[Recipe], build: Builder, judge: Judge, before_val: float | None, cfg: QuantizeConfig,
           example: tuple[Any, ...], has_int8: Callable[[Built], bool], extra: dict[str, Callable[[], Any]],
           progress: Callable[[str], None], last_resort: list[Recipe] | None = None,
           notes: list[str] | None = None) -> tuple[Built, dict[str, Any]]:
    built, failed = build_all(todo, build, has_int8, progress)
    if last_resort and notes is not None:  # static on random inputs only where nothing else gives int8
        if not built:
            more, more_failed = build_all(last_resort, build, has_int8, progress)
            built.update(more)
            failed.update(more_failed)
        notes.append(RANDOM_CALIBRATION_NOTE if built and not todo_built(built, todo) else NOT_TRIED_NOTE)
    if not built:
        raise UnsupportedError("no quantization path worked for this model: " +
                               "; ".join(f"{k}: {v}" for k, v in failed.items()))
    drops = {k: judge.loss(b.runner, "val", before_val) for k, b in built.items()}
    progress(f"timing {len(built)} candidate(s) interleaved at batch 1, one thread")
    latency = measure(built, judge.reference, example, cfg.timing_budget_s, extra)
    margin = margin_for(judge, cfg.max_drop)  # chosen within the budget less its sampling margin
    text = judge.budget_text(cfg.max_drop, cfg.max_rel_error) + (
        f" less its {margin.points:.3g}-point sampling margin ({margin.rows} rows)" if margin.points else "")
    best, why = pick(built, drops, latency, margin.select, text)
    rows = [_row(k, b, drops[k], latency, best) for k, b in built.items()]
    rows += [{"recipe": k, "failed": v} for k, v in failed.items()]
    refs = {k: v for k, v in latency.items() if k not in built}
    basis = f"{judge.spec.metric} points lost on the validation split" if judge.uses_metric else \
        "points of disagreement with fp32 (top-1, or relative error) on probe inputs"
    return built[best], {"why": why, "candidates": rows, "reference_latency_ms_b1": refs, "drop_basis": basis,
                         "drop_column": judge.drop_column(), "margin": margin.to_json(),
                         "backends": sorted({str(r.backend) for r in todo})}
