"""This machine's measured matmul peak (fp32; int8/bf16 where the CPU has instructions for them),
cached in ~/.cache/dlopt/ keyed by CPU model, device and thread count; and achieved GFLOP/s."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dlopt.core.environment import cpu_info
from dlopt.core.fileio import safe_name, write_json_atomic

CACHE_SCHEMA = 2
MATMUL_N = 1024  # large enough to be compute-bound on a CPU, small enough to measure in ~a second
MEASURE_S = 2.0  # per precision
MIN_CALLS = 10
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cache_dir() -> Path:
    return Path(os.environ.get("DLOPT_CACHE_DIR", Path.home() / ".cache" / "dlopt"))


def cache_path(device: str, threads: int) -> Path:
    model = cpu_info()["model"] if device == "cpu" else _cuda_name()
    return cache_dir() / f"peak-{safe_name(model)}-{device}-t{threads}.json"


def _cuda_name() -> str:
    import torch

    return torch.cuda.get_device_name(0)


def _best_rate(op: Any, flops: int, sync: Any) -> float:
    """GFLOP/s of the fastest single call in ~MEASURE_S: the peak, not the typical rate. On a shared
    machine a window average is dragged down by other processes; the fastest call is the least disturbed."""
    op()
    sync()
    best, start, calls = float("inf"), time.perf_counter(), 0
    while calls < MIN_CALLS or time.perf_counter() - start < MEASURE_S:
        t0 = time.perf_counter()
        op()
        sync()
        best = min(best, time.perf_counter() - t0)
        calls += 1
    return flops / best / 1e9


def measure_peak(device: str, threads: int) -> dict[str, Any]:
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    n, flops = MATMUL_N, 2 * MATMUL_N**3
    flags = set(cpu_info()["flags"])
    out: dict[str, Any] = {"notes": {}}
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    out["fp32_gflops"] = round(_best_rate(lambda: torch.mm(a, b), flops, sync), 2)
    if device == "cuda" or flags & set(BF16_FLAGS):
        a16, b16 = a.bfloat16(), b.bfloat16()
        out["bf16_gflops"] = round(_best_rate(lambda: torch.mm(a16, b16), flops, sync), 2)
    else:
        out["bf16_gflops"] = None
        out["notes"]["bf16"] = f"not measured: the CPU has none of {', '.join(BF16_FLAGS)} (bf16 would be emulated)"
    if device == "cpu" and flags & set(INT8_FLAGS):
        i8a, i8b = torch.randint(-8, 8, (n, n), dtype=torch.int8), torch.randint(-8, 8, (n, n), dtype=torch.int8)
        out["int8_gops"] = round(_best_rate(lambda: torch._int_mm(i8a, i8b), flops, sync), 2)
    else:
        out["int8_gops"] = None
        out["notes"]["int8"] = ("not measured: the CPU has none of " + ", ".join(INT8_FLAGS)) if device == "cpu" \
            else "not measured on CUDA by dlopt"
    return out


def machine_peak(device: str, threads: int, refresh: bool = False) -> dict[str, Any]:
    """The cached peak for this CPU/GPU and thread count, measured on first use."""
    path = cache_path(device, threads)
    if path.is_file() and not refresh:
        try:
            cached = json.loads(path.read_text())
            if cached.get("schema") == CACHE_SCHEMA:
                return {**cached, "cache": str(path), "cached": True}
        except (OSError, json.JSONDecodeError):
            pass  # a damaged cache is measured again and rewritten
    peak = {"schema": CACHE_SCHEMA, "device": device, "threads": threads, "cpu": cpu_info()["model"],
            "method": f"fastest single torch.mm of {MATMUL_N}x{MATMUL_N} matrices in {MEASURE_S:g}s of calls",
            "measured": datetime.now(UTC).isoformat(timespec="seconds"), "loadavg": list(os.getloadavg()),
            **measure_peak(device, threads)}
    write_json_atomic(path, peak)
    return {**peak, "cache": str(path), "cached": False}


PRECISION_KEY = {"fp32": "fp32_gflops", "bf16": "bf16_gflops", "int8": "int8_gops"}


def roofline(flops: int | None, median_ms: float, peak: dict[str, Any], precision: str = "fp32") -> dict[str, Any]:
    """Achieved GFLOP/s at the median latency, and its share of the measured peak of that precision."""
    if not flops or median_ms <= 0:
        return {"gflops": None, "pct_peak": None}
    achieved = flops / (median_ms / 1e3) / 1e9
    ref = peak.get(PRECISION_KEY.get(precision, "fp32_gflops"))
    return {"gflops": round(achieved, 3), "pct_peak": round(100 * achieved / ref, 2) if ref else None}
