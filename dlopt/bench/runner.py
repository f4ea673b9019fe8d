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
from dlopt.bench.config import NOISY_IQR, BenchConfig, Device, use_inputs_file
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
    result: dict[str, Any]  # what bench.json holds (its "run" the full path)

    @property
    def path(self) -> Path:
        """bench.json inside the run (the older name of report_path)."""
        assert self.report_path is not None
        return self.report_path


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


def _warm(v: Variant, inputs: tuple[Any, ...], cfg: BenchConfig, threads: int, sync: Sync) -> tuple[Prepared, dict]:
    """Prepare and warm one variant on its own; memory is measured here, not while interleaved."""
    rss0 = rss_mb()
    p = prepare(v, inputs, cfg.device, threads)
    wu = warm_up(p.fn, cfg.warmup_calls, sync, p.first)
    rss1 = rss_mb()
    cuda_peak = _cuda_peak_mb(cfg.device, lambda: time_calls(p.fn, 1, sync))
    with PeakWindow() as window:
        time_calls(p.fn, max(1, cfg.warmup_calls), sync)
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


def _speedups(rows: dict[str, dict]) -> None:
    """Speed-up over eager; a noisy row (or a noisy eager) gets it with `speedup_noisy`: not a meaningful ratio."""
    eager = rows.get("eager", {})
    if not eager.get("stats"):
        return
    for row in rows.values():
        if row.get("stats"):
            row["speedup_vs_eager"] = round(eager["stats"]["median_ms"] / row["stats"]["median_ms"], 3)
            if row.get("noisy") or eager.get("noisy"):
                row["speedup_noisy"] = True


def _budget_note(cfg: BenchConfig, shape: tuple[int, int | None], warm_s: float, timing_s: float,
                 over: dict[str, float]) -> str | None:
    """Say so when a shape took well over --budget-s: warm-up is outside it, and min_calls can overrule it."""
    if cfg.iterations or warm_s + timing_s <= 1.5 * cfg.budget_s + 1.0:
        return None
    slowest = max(over, key=over.get, default=None)
    why = [f"warm-up and first calls (compiling, loading) {warm_s:.1f} s, outside the budget"]
    if slowest and over[slowest] > 0.1:
        why.append(f"timing ran {timing_s:.1f} s because every variant makes at least {cfg.min_calls} timed calls "
                   f"(min_calls; {slowest} alone ran {over[slowest]:.1f} s past the budget)")
        why.append("--iterations N fixes the number of calls instead")
    return (f"batch {shape[0]}{f' seq {shape[1]}' if shape[1] else ''} took {warm_s + timing_s:.1f} s against "
            f"--budget-s {cfg.budget_s:g}: {'; '.join(why)}")


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
            p, info = _warm(v, inputs, cfg, ctx["threads"], ctx["sync"])
        except BackendUnavailable as exc:
            row["reason"] = str(exc)
            continue
        except Exception as exc:  # one backend failing (e.g. no C++ compiler for inductor) must not sink the rest
            row.update(status="failed", reason=_reason(exc))
            continue
        fns[v.name], est[v.name] = p.fn, info.pop("estimate_s")
        row.update(info)
    how = f"{cfg.iterations} calls each" if cfg.iterations else f"budget {cfg.budget_s:g}s"
    progress(f"timing {len(fns)} variants interleaved (batch {batch}, {how})")
    t_time = time.perf_counter()
    series = round_robin(fns, est, cfg, ctx["sync"])
    note = _budget_note(cfg, shape, t_time - t_warm, time.perf_counter() - t_time,
                        {k: s.over_budget_s for k, s in series.items()})
    if note:
        ctx["notes"].append(note)
        progress(note)
    for name, s in series.items():
        _finish(rows[name], s.times, str(s.stop), flops, ctx)
    _speedups(rows)
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
            with torch.inference_mode():
                for shape in _shapes(source, cfg):
                    rows += _measure_shape(source, variants, cfg, shape, ctx, progress)
            if not any(r["status"] == "ok" for r in rows):  # the stage is recorded failed; no bench.json
                raise _nothing_measured(rows)
            result = {"schema": SCHEMA, "created": datetime.now(UTC).isoformat(timespec="seconds"),
                      "target": source.label, "arch": source.spec.name if source.spec else None,
                      "run": ".", "model_config": config_dict(source.config) if source.config else None,
                      "device": cfg.device.value, "threads": threads, "config": _config_dict(cfg),
                      "loadavg": {"start": load_start, "end": list(os.getloadavg()), "cpus": os.cpu_count()},
                      "environment": fingerprint(), "peak": peak, "rows": rows, "notes": ctx["notes"]}
            path = source.run.path / RESULT_FILE  # the latest; a dated copy keeps history for --compare
            dated = source.run.path / f"bench-{result['created'].replace(':', '').replace('+0000', 'Z')}.json"
            staged = [rec.path(p.name) for p in (dated, path)]  # replace the old ones when done
            from dlopt.bench.history import merge, stamp

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


def _stored(path: Path | None, run_dir: Path) -> str | None:
    """An artifact's path as bench.json records it: relative to the run when inside it (a run opened by any path,
    or moved, reads the same), else absolute (a stray file the user benched in place)."""
    if path is None:
        return None
    resolved = Path(path).resolve()
    return str(resolved.relative_to(run_dir)) if resolved.is_relative_to(run_dir) else str(resolved)
