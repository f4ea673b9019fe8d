"""`bench`: every variant of a target, at every batch size (and sequence length), timed interleaved,
summarized with the roofline and recorded into the run as `bench.json` and a manifest stage."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dlopt.bench.backends import BackendUnavailable, Prepared, Variant, prepare
from dlopt.bench.budget import Budget
from dlopt.bench.config import NOISY_IQR, BenchConfig, Device, StopReason, use_inputs_file
from dlopt.bench.memory import PeakWindow, rss_mb
from dlopt.bench.roofline import machine_peak, roofline
from dlopt.bench.stats import summarize
from dlopt.bench.timing import Sync, no_sync, round_robin, time_calls, warm_up
from dlopt.bench.variants import EXPORT_DIR, Source, build_variants, measured_files, open_source, source_of
from dlopt.contract.stage import Outcome
from dlopt.contract.target import Target, TargetOptions
from dlopt.core.environment import fingerprint
from dlopt.core.errors import UnsupportedError

SCHEMA = "dlopt.bench/1"
RESULT_FILE = "bench.json"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchOutcome(Outcome):
    result: dict[str, Any]  # what bench.json holds (its "run" the full path); report_path is bench.json


def _shapes(source: Source, cfg: BenchConfig) -> list[tuple[int, int | None]]:
    sequences = source.spec is None or source.spec.takes_sequences
    seqs: tuple[int | None, ...] = cfg.seq_lens if (cfg.seq_lens and sequences) else (None,)
    return [(b, s) for b in cfg.batch_sizes for s in seqs]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _sync(device: Device) -> Sync:
    if device == Device.CUDA:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.synchronize
    return no_sync


def _flops(module: Any, inputs: tuple[Any, ...]) -> int | None:
    from dlopt.models.summary import count_flops

    if module is None:
        return None
    try:
        return count_flops(module, inputs)
    except Exception:  # a counter failure must not sink the timing; the row says flops unknown
        return None


def _cuda_peak_mb(device: Device, call: Callable[[], Any]) -> float | None:
    """CUDA memory allocated during one steady call above what was allocated before it."""
    import torch

    if device != Device.CUDA or not torch.cuda.is_available():
        return None
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    call()
    return round((torch.cuda.max_memory_allocated() - before) / 2**20, 2)


def _warm(v: Variant, inputs: tuple[Any, ...], cfg: BenchConfig, ctx: dict[str, Any]) -> tuple[Prepared, dict]:
    """Prepare and warm one variant on its own; memory is measured here, not while interleaved. Under a budget the
    untimed calls stop once they took ctx["warm_s"] (at least one, and as many for the memory window)."""
    rss0 = rss_mb()
    p = prepare(v, inputs, cfg.device, ctx["threads"])
    sync = ctx["sync"]
    wu = warm_up(p.fn, cfg.warmup_calls, sync, p.first, ctx["warm_s"])
    rss1 = rss_mb()
    cuda_peak = _cuda_peak_mb(cfg.device, lambda: time_calls(p.fn, 1, sync))
    with PeakWindow() as window:
        time_calls(p.fn, wu.calls, sync)
    info = {"setup_s": round(p.setup_s, 4), "first_call_s": round(wu.first_call_s, 4),
            "warmup_s": round(wu.warmup_s, 4), "warmup_calls": wu.calls,
            "rss_setup_mb": None if rss0 is None or rss1 is None else round(rss1 - rss0, 2),
            "peak_rss_call_mb": None if window.delta_mb is None else round(window.delta_mb, 2),
            "peak_cuda_mb": cuda_peak, "model_bytes": p.model_bytes, "model_bytes_source": p.model_bytes_source,
            "estimate_s": wu.estimate_s}
    return p, info


def _rounded(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items()}
    return round(v, 5) if isinstance(v, float) else v


def _finish(row: dict, times: list[float], stop: str, flops: int | None, ctx: dict[str, Any]) -> None:
    st = summarize(times, ctx["percentiles"])
    row.update(status="ok", stop=stop, stats={k: _rounded(v) for k, v in st.to_dict().items()},
               throughput_per_s=round(row["batch_size"] * 1e3 / st.median_ms, 2),
               flops=flops, **roofline(flops, st.median_ms, ctx["peak"], row["precision"]))
    if st.iqr_ratio > NOISY_IQR:
        row.update(noisy=True, noise_reason=f"IQR {100 * st.iqr_ratio:.0f}% of the median (over "
                                            f"{100 * NOISY_IQR:.0f}%): its median cannot be ranked against others")


def _speedups(rows: dict[str, dict], baselines: dict[str, str] | None = None) -> None:
    """Speed-up over eager; without a PyTorch model, over `baselines` (backend -> the row of the fp32 file on it),
    named in each row. A noisy row (or a noisy baseline) gets it with `speedup_noisy`: not a meaningful ratio."""
    for row in rows.values():
        base = rows.get("eager", {}) if baselines is None else rows.get(baselines.get(row["backend"], ""), {})
        if not (row.get("stats") and base.get("stats")):
            continue
        ratio = round(base["stats"]["median_ms"] / row["stats"]["median_ms"], 3)
        row.update({"speedup_vs_eager": ratio} if baselines is None else
                   {"baseline": base["variant"], "speedup_vs_baseline": ratio})
        if row.get("noisy") or base.get("noisy"):
            row["speedup_noisy"] = True


def _measure_shape(source: Source, variants: list[Variant], cfg: BenchConfig, shape: tuple[int, int | None],
                   ctx: dict[str, Any], progress: Progress) -> list[dict]:
    import torch

    batch, seq = shape
    inputs = source.make_inputs(batch, seq)
    if ctx["device_ok"]:  # else every row is unavailable (prepare says why) and inputs stay on the CPU
        inputs = tuple(x.to(cfg.device.value) for x in inputs)
    seq_used = seq if source.spec is None else (int(inputs[0].shape[1]) if source.spec.takes_sequences else None)
    flops = _flops(source.module, inputs)
    rows, fns, est = {}, {}, {}
    t_warm = time.perf_counter()
    for v in variants:
        progress(f"warm-up {v.name} (batch {batch})")
        row = {"variant": v.name, "backend": str(v.backend), "batch_size": batch, "seq_len": seq_used,
               "precision": v.precision, "artifact": _stored(v.path, source.run.path), "status": "unavailable"}
        rows[v.name] = row
        if v.unavailable:
            row["reason"] = v.unavailable
            continue
        try:
            p, info = _warm(v, inputs, cfg, ctx)
        except BackendUnavailable as exc:
            row["reason"] = str(exc)
            continue
        except Exception as exc:  # one backend failing (e.g. no C++ compiler for inductor) must not sink the rest
            row.update(status="failed", reason=_reason(exc))
            continue
        fns[v.name], est[v.name] = p.fn, info.pop("estimate_s")
        row.update(info)
    budget: Budget = ctx["budget"]
    deadline = budget.deadline()
    how = f"{cfg.iterations} calls each" if deadline is None else f"budget {deadline - time.perf_counter():.3g}s"
    progress(f"timing {len(fns)} variants interleaved (batch {batch}, {how})")
    t_time = time.perf_counter()
    series = round_robin(fns, dict(est), cfg, ctx["sync"], deadline, keep_budget=True)
    if note := budget.shape_done(shape, t_time - t_warm, time.perf_counter() - t_time):
        ctx["notes"].append(note)
        progress(note)
    for name, s in series.items():
        if s.times:
            _finish(rows[name], s.times, str(s.stop), flops, ctx)
        if s.stop == StopReason.BUDGET_SPENT:
            budget.cut_row(rows[name], shape, len(s.times), est[name])
    _speedups(rows, source.baselines(variants))
    if cfg.device == Device.CUDA and ctx["device_ok"]:
        torch.cuda.empty_cache()
    return list(rows.values())


def check_measurable(cfg: BenchConfig) -> None:
    """UnsupportedError (exit 4) when the device or every asked-for backend cannot run here: a bench that
    would measure nothing stops before it resolves its target, so it creates no run."""
    if cfg.device == Device.CUDA:
        import torch

        if not torch.cuda.is_available():
            raise UnsupportedError("--device cuda: CUDA is not available here (torch.cuda.is_available() is False), "
                                   "so nothing would be measured; use --device cpu, or a machine with an NVIDIA GPU")
    from dlopt.runtime.formats import why_not_here

    reasons = {str(b): why_not_here(b, cfg.device) for b in cfg.backends}
    if all(reasons.values()):
        listed = "; ".join(f"{b}: {why}" for b, why in reasons.items())
        raise UnsupportedError(f"no --backend asked for can run here, so nothing would be measured ({listed}); "
                               "choose another --backend (eager always runs)")


def _nothing_measured(rows: list[dict]) -> UnsupportedError:
    reasons = dict.fromkeys(f"{r['variant']}: {r.get('reason') or r['status']}" for r in rows)
    listed = "; ".join(list(reasons)[:4]) + (f" (+{len(reasons) - 4} more)" if len(reasons) > 4 else "")
    return UnsupportedError(f"nothing was measured: every row was unavailable or failed ({listed}); "
                            "choose another --backend or --device")


def _config_dict(cfg: BenchConfig) -> dict[str, Any]:
    return {k: ([str(x) for x in v] if isinstance(v, tuple) else (str(v) if hasattr(v, "value") else v))
            for k, v in dataclasses.asdict(cfg).items()}


def bench(target: Target | Source | TargetOptions, cfg: BenchConfig,
          progress: Progress = lambda _msg: None) -> BenchOutcome:
    """Benchmark every variant of the target; writes `bench.json` in its run and records the stage.

    The caller resolves the target: a Target (a run's model), or a Source (`open_source`: a target or an exported
    file named directly), after `check_measurable(cfg)` so that a bench that would measure nothing makes no run.
    Options (the older call) are opened here, after that check."""
    import torch

    from dlopt.bench.report import write_results
    from dlopt.models.options import config_dict

    check_measurable(cfg)
    before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        source = target if isinstance(target, Source) else \
            open_source(target) if isinstance(target, TargetOptions) else source_of(target, cfg.seed)
        source, cfg = use_inputs_file(source, cfg)  # --inputs FILE.npz: the user's own samples
        with source.run.stage("bench", config=_config_dict(cfg), inputs=measured_files(source)) as rec:
            progress("preparing variants")
            variants = build_variants(source, cfg)
            threads = torch.get_num_threads()
            peak = machine_peak(cfg.device.value, threads) if cfg.device == Device.CPU or torch.cuda.is_available() \
                else {"note": "no CUDA device: peak not measured"}
            ctx = {"threads": threads, "sync": _sync(cfg.device), "peak": peak, "notes": [],
                   "percentiles": cfg.percentiles,
                   "device_ok": cfg.device == Device.CPU or torch.cuda.is_available()}
            load_start = list(os.getloadavg())
            rows: list[dict] = []
            shapes = _shapes(source, cfg)
            ctx["budget"] = budget = Budget(cfg, len(shapes))
            ctx["warm_s"] = budget.warm_calls_s(len(variants))
            with torch.inference_mode():
                for shape in shapes:
                    rows += _measure_shape(source, variants, cfg, shape, ctx, progress)
            if cut := budget.note():  # the last note: what the budget cut short
                ctx["notes"].append(cut)
            if not any(r["status"] == "ok" for r in rows):  # the stage is recorded failed; no bench.json
                raise _nothing_measured(rows)
            now = _now()
            result = {"schema": SCHEMA, "created": now.isoformat(timespec="seconds"),
                      "target": source.label, "arch": source.spec.name if source.spec else None,
                      "run": ".", "model_config": config_dict(source.config) if source.config else None,
                      "device": cfg.device.value, "threads": threads, "config": _config_dict(cfg),
                      "loadavg": {"start": load_start, "end": list(os.getloadavg()), "cpus": os.cpu_count()},
                      "environment": fingerprint(), "peak": peak, "budget": budget.record(), "rows": rows,
                      "notes": ctx["notes"], **({"no_eager": source.no_eager} if source.no_eager else {})}
            path = source.run.path / RESULT_FILE  # the latest; a dated copy keeps history for --compare
            from dlopt.bench.history import dated_path, merge, stamp

            dated = dated_path(source.run.path, now)  # unique: a bench in the same second keeps its own
            staged = [rec.path(p.name) for p in (dated, path)]  # replace the old ones when done

            result = write_results(stamp(result, source.run.path), staged[:1])  # the dated copy: this bench only
            write_results(merge(result, path), staged[1:])  # bench.json: also the earlier rows it did not measure
            result = {**result, "run": str(source.run.path)}  # the caller gets the full path; the file says "."
            rec.outputs += staged
            rec.outputs += [v.path for v in variants if isinstance(v.path, Path) and v.path.parent.name == EXPORT_DIR]
            rec.metrics.update({f"{r['variant']}@b{r['batch_size']}" + (f"s{r['seq_len']}" if r["seq_len"] else ""):
                                r["stats"]["median_ms"] for r in rows if r.get("stats")})
    finally:
        torch.set_num_threads(before)
    return BenchOutcome(result, stage="bench", run_dir=source.run.path, report_path=path, summary=dict(rec.metrics))


def _now() -> datetime:
    return datetime.now(UTC)


def _stored(path: Path | None, run_dir: Path) -> str | None:
    """An artifact's path as bench.json records it: relative to the run when inside it (a run opened by any path,
    or moved, reads the same), else absolute (a stray file the user benched in place)."""
    if path is None:
        return None
    resolved = Path(path).resolve()
    return str(resolved.relative_to(run_dir)) if resolved.is_relative_to(run_dir) else str(resolved)
