"""Latency measured here: candidates and their fp32 references timed interleaved in one process (dlopt.bench's
round-robin loop), each with its own thread count, at the goal's batch.

Each runtime gets its callable from dlopt.bench.backends.prepare (the bench stage's own), so an optimize latency
and a `dlopt bench` latency are the same measurement. PyTorch's thread count is process-wide: a torch-backed
callable sets it before each call when it differs (ONNX Runtime and OpenVINO hold theirs in the session).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.optimize.cache import CandidateFailed
from dlopt.optimize.config import Runtime

KEEP_PREPARED = 8  # sessions kept between trials (a ResNet-18 session holds its weights: ~50 MB each)


@dataclass(frozen=True)
class Timing:
    p50_ms: float
    iqr_pct: float  # interquartile range as a percentage of the median
    calls: int

    def to_json(self) -> dict[str, Any]:
        return {"p50_ms": self.p50_ms, "iqr_pct": self.iqr_pct, "calls": self.calls}


@dataclass(frozen=True)
class Timed:
    """One thing to time: a file (or a checkpoint record / module for eager) on a runtime with a thread count."""

    runtime: Runtime
    threads: int
    path: Path | None = None  # None: the fp32 model's module itself (eager)

    @property
    def torch_backed(self) -> bool:
        return self.runtime in (Runtime.EAGER, Runtime.TORCHSCRIPT)


class Timer:
    """Prepared callables, kept (a few) between trials so a reference is not reloaded each time."""

    def __init__(self, module: Any, inputs: tuple[Any, ...]) -> None:
        self.module, self.inputs = module, inputs  # the fp32 entry module; example inputs at the goal's batch
        self._prepared: OrderedDict[Timed, Callable[[], Any]] = OrderedDict()

    def _variant(self, t: Timed) -> Any:
        from dlopt.bench.backends import Variant
        from dlopt.models.spec import Backend

        if t.path is None:
            return Variant("fp32", Backend.EAGER, module=self.module)
        if t.path.suffix == ".json":  # a pruned checkpoint: its module, run eagerly
            from dlopt.models.checkpoint import load_checkpoint
            from dlopt.models.registry import entry_module

            ck = load_checkpoint(t.path)
            return Variant(t.path.parent.name, Backend.EAGER, module=entry_module(ck.model, ck.spec).eval())
        from dlopt.runtime.formats import format_of

        return Variant(t.path.parent.name, format_of(t.path).bench_backend, path=t.path)

    def callable(self, t: Timed) -> Callable[[], Any]:
        if t in self._prepared:
            self._prepared.move_to_end(t)
            return self._prepared[t]
        import torch

        from dlopt.bench.backends import BackendUnavailable, prepare
        from dlopt.bench.config import Device

        try:
            fn = prepare(self._variant(t), self.inputs, Device.CPU, t.threads).fn
        except BackendUnavailable as exc:
            raise CandidateFailed(f"{t.runtime} cannot run it here: {exc}") from None
        if t.torch_backed:
            inner = fn

            def fn() -> Any:
                if torch.get_num_threads() != t.threads:
                    torch.set_num_threads(t.threads)
                return inner()
        self._prepared[t] = fn
        while len(self._prepared) > KEEP_PREPARED:
            self._prepared.popitem(last=False)
        return fn

    def time(self, entries: dict[str, Timed], budget_s: float) -> dict[str, Timing]:
        """Median and IQR of every entry, interleaved round-robin; torch's thread setting is restored after."""
        import torch

        from dlopt.bench.config import BenchConfig
        from dlopt.bench.stats import percentile
        from dlopt.bench.timing import round_robin, warm_up

        before = torch.get_num_threads()
        try:
            with torch.inference_mode():
                fns = {label: self.callable(t) for label, t in entries.items()}
                estimates = {k: warm_up(fn, 3).estimate_s for k, fn in fns.items()}
                series = round_robin(fns, estimates, BenchConfig(budget_s=budget_s, min_calls=10, block_s=0.02))
        finally:
            torch.set_num_threads(before)
        out = {}
        for label, s in series.items():
            times = sorted(s.times)
            p50 = percentile(times, 50.0)
            iqr = percentile(times, 75.0) - percentile(times, 25.0)
            out[label] = Timing(round(1e3 * p50, 4), round(100.0 * iqr / p50, 1) if p50 else 0.0, len(times))
        return out
