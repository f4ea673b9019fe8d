"""The one ONNX Runtime session factory: threads, graph optimization level, providers, quiet logging, run options.

    session = ort_session(path, threads=1);  run = ort_call(session, feed, ort_run_options())

No onnxruntime import at module level (dlopt.runtime.formats re-exports these, and the CLI imports it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dlopt.core.errors import InputFileError, UsageError

CPU_PROVIDERS = ("CPUExecutionProvider",)
ORT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}
ORT_QUIET = 3  # ORT log severity: errors only; its warnings are not the user's business


def ort_session(path: Path | bytes, *, threads: int | None = None, inter_threads: int | None = None,
                providers: Sequence[str] = CPU_PROVIDERS, optimization: str = "all") -> Any:
    """An onnxruntime.InferenceSession: `threads` intra-op threads (None: ORT's default, every core), graph
    optimization level disable/basic/extended/all, errors-only logging. A file ORT cannot load is an InputFileError."""
    import onnxruntime as ort

    if optimization not in ORT_LEVELS:
        raise UsageError(f"ONNX Runtime optimization {optimization!r} is not one of {', '.join(ORT_LEVELS)}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_LEVELS[optimization])
    opts.log_severity_level = ORT_QUIET
    if threads:
        opts.intra_op_num_threads = threads
    if inter_threads:
        opts.inter_op_num_threads = inter_threads
    try:
        model = path if isinstance(path, bytes) else str(path)  # a file, or a serialized model in memory
        return ort.InferenceSession(model, sess_options=opts, providers=list(providers))
    except Exception as exc:  # ORT raises its own pybind types (Fail, InvalidProtobuf, NoSuchFile...) for bad files
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        where = "the in-memory model" if isinstance(path, bytes) else path
        raise InputFileError(f"{where} is not a loadable ONNX model ({line}); give an .onnx file written by an "
                             "exporter") from None


def ort_run_options(log_severity: int = ORT_QUIET) -> Any:
    """RunOptions for session.run (log_severity 3: errors only, 4: fatal only, for a run dlopt may terminate); set
    `.terminate = True` from another thread (a Ctrl-C handler) to stop a long run, which then raises in its thread."""
    import onnxruntime as ort

    ro = ort.RunOptions()
    ro.log_severity_level = log_severity
    return ro


def ort_call(session: Any, feed: dict[str, Any], run_options: Any = None) -> Callable[[], list[Any]]:
    """A zero-argument call of `session` on fixed inputs (all outputs), with `run_options` if given."""
    return functools.partial(session.run, None, feed, run_options)
