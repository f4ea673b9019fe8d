"""Why an int8 ONNX Runtime file is not faster than its fp32 file: which operators cost more, by how much.

Both files run under ONNX Runtime's session profiler (one thread, batch 1, the deployed graph optimizations, a few
runs after warm-up, the two files alternating); the trace's "Node" events (`dur` in microseconds per kernel) are
summed per run by operator kind and compared. A profiled node is traced back to the file's own node by its name
(the optimizer names what it makes after what it replaced: /dw/Conv_token_7, /dw/Conv_output_0_nchwc), so an int8
QLinearConv and the fp32 FusedConv of one layer both count as that layer's Conv, and as a depthwise Conv where the
layer's weights have one input channel per group. Q/DQ nodes, which fp32 has none of, are a kind of their own.
Kernel times under the profiler run longer than unprofiled runs (its timer around each small kernel): they say
where the time goes; how much slower int8 is comes from the stage's own interleaved timing (`for_session`).

    rec = explain(int8_path, fp32_path, example_inputs, module_names)
    rec["line"]  # "... QuantizeLinear/DequantizeLinear add 0.21 ms over 40 nodes; 17 depthwise Conv run 0.10 ms ..."

The trace goes to a temporary directory that is removed (ORT writes it to the working directory by default).
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

WARMUP, RUNS = 3, 10  # runs per file: not counted (first-run allocation, prepacking), then counted
QDQ = "QuantizeLinear/DequantizeLinear"
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
LAYOUT_OPS = frozenset({"Transpose", "ReorderInput", "ReorderOutput"})  # NHWC / NCHWc layout changes ORT inserts
LAYER_KINDS = ("Conv", "MatMul", "Gemm", "ConvTranspose")
MIN_SHARE = 0.02  # a kind is named when it costs at least this share of the fp32 run more in int8
SHOWN = 4  # kinds named, largest excess first
FUSED_DEPTH = 3  # producers walked up from a fused kernel's name to the layer it computes (Conv <- Add <- Relu)
RUNTIME_OPS = {"QGemm": "Gemm", "QAttention": "Attention", "MatMulIntegerToFloat": "MatMul",
               "DynamicQuantizeMatMul": "MatMul", "FusedConv": "Conv", "FusedGemm": "Gemm", "FusedMatMul": "MatMul",
               "NhwcConv": "Conv"}


def _session(path: Path, prefix: Path) -> Any:
    import onnxruntime as ort

    from dlopt.runtime.ort import ORT_QUIET

    opts = ort.SessionOptions()
    opts.enable_profiling, opts.profile_file_prefix = True, str(prefix)
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.log_severity_level = ORT_QUIET
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def profile_pair(int8: Path, fp32: Path, example: Sequence[Any]) -> tuple[list[dict], list[dict]]:
    """The profiler's trace events of `int8` and `fp32`, each run WARMUP + RUNS times on `example` (tensors or
    arrays), alternating; the trace files live in a temporary directory removed before returning."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="dlopt-profile-") as tmp:
        sessions = [_session(p, Path(tmp) / name) for p, name in ((int8, "int8"), (fp32, "fp32"))]
        feeds = [{i.name: np.ascontiguousarray(_array(x)) for i, x in zip(s.get_inputs(), example, strict=False)}
                 for s in sessions]
        for _ in range(WARMUP + RUNS):
            for s, feed in zip(sessions, feeds, strict=True):
                s.run(None, feed)
        return tuple(json.loads(Path(s.end_profiling()).read_text()) for s in sessions)  # type: ignore[return-value]


def _array(x: Any) -> Any:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x


def counted(events: list[dict]) -> tuple[dict[str, tuple[str, float]], float]:
    """({node: (runtime op, µs per counted run)}, kernel ms per counted run) from one trace: kernel times after the
    warm-up runs, averaged over the counted runs. The profiler's own cost, a few µs a node (more than many int8
    kernels take), lies between kernels and is left out: it would count against the file with more nodes."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    kept = runs[WARMUP:] or runs
    start, per = kept[0]["ts"], defaultdict(float)
    ops: dict[str, str] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
            name = e["name"].removesuffix("_kernel_time")
            per[name] += float(e["dur"])
            ops[name] = str((e.get("args") or {}).get("op_name", ""))
    return {n: (ops[n], us / len(kept)) for n, us in per.items()}, sum(per.values()) / len(kept) / 1e3


class Graph:
    """The file's own nodes, to trace an optimized node back to: by node name, or by the tensor it produced."""

    def __init__(self, path: Path) -> None:
        import onnx

        self.proto = onnx.load(str(path), load_external_data=False)
        g = self.proto.graph
        self.nodes = {n.name: n for n in g.node if n.name}
        self.made_by = {out: n for n in g.node for out in n.output}
        self.dims = {t.name: list(t.dims) for t in g.initializer}

    def source(self, name: str) -> Any | None:
        """The file's node a profiled node came from: the longest name or tensor name it starts with at a '_'."""
        parts = name.split("_")
        for k in range(len(parts), 0, -1):
            stem = "_".join(parts[:k])
            found = self.nodes.get(stem) or self.made_by.get(stem)
            if found is not None:
                return found
        return None

    def layer(self, node: Any, op: str) -> Any:
        """The `op` node a fused kernel computes when the optimizer named it after the activation it fused
        (/blocks.0.3/Relu_output_0_nchwc is a Conv): the nearest such node up the inputs, else `node` itself."""
        todo = [node]
        for _ in range(FUSED_DEPTH):
            if (hit := next((n for n in todo if n.op_type == op), None)) is not None:
                return hit
            todo = [self.made_by[i] for n in todo for i in n.input if i in self.made_by]
        return node

    def depthwise(self, node: Any) -> bool:
        """A Conv with one input channel per group (its weights (C_out, 1, kh, kw), read through a
        DequantizeLinear in a QDQ file)."""
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        weight = node.input[1] if len(node.input) > 1 else ""
        dq = self.made_by.get(weight)
        dims = self.dims.get(dq.input[0] if dq is not None and dq.op_type == "DequantizeLinear" else weight)
        return group > 1 and bool(dims) and len(dims) > 1 and dims[1] == 1


def runtime_kind(op: str) -> str:
    """The float op an ONNX Runtime kernel computes: QLinearConv, FusedConv -> Conv; MatMulInteger -> MatMul."""
    return RUNTIME_OPS.get(op, op.removeprefix("QLinear").removesuffix("Integer"))


def kind(op: str, source: Any | None, graph: Graph) -> str:
    """The operator kind a profiled node counts as, the same for the int8 and the fp32 kernel of one layer."""
    if op in QDQ_OPS:
        return QDQ
    if op in LAYOUT_OPS:
        return "Transpose/Reorder (layout)"
    base = runtime_kind(op)
    if base not in LAYER_KINDS and source is not None and source.op_type not in QDQ_OPS:
        base = source.op_type  # a layer's own kernel keeps its op; others count as the file's node they came from
    return f"depthwise {base}" if base == "Conv" and source is not None and graph.depthwise(source) else base


def by_kind(nodes: dict[str, tuple[str, float]], graph: Graph) -> tuple[dict[str, list[float]], dict[str, float]]:
    """({kind: [µs per run, nodes]}, {source node name of a layer: µs per run})."""
    kinds: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    layers: dict[str, float] = defaultdict(float)
    for name, (op, us) in nodes.items():
        source, base = graph.source(name), runtime_kind(op)
        source = graph.layer(source, base) if source is not None and base in LAYER_KINDS else source
        k = kind(op, source, graph)
        kinds[k][0] += us
        kinds[k][1] += 1
        if source is not None and k.split()[-1] in LAYER_KINDS:
            layers[source.name] += us
    return kinds, layers


def explain(int8: Path, fp32: Path, example: Sequence[Any], modules: Iterable[str] = ()) -> dict[str, Any]:
    """Profile both files and say which operator kinds cost more in int8 than in fp32, and which layers most
    (named by the model's modules where dlopt.verify.layermap can tell them)."""
    from dlopt.verify.layermap import node_modules

    events = profile_pair(int8, fp32, example)
    (q_nodes, q_ms), (f_nodes, f_ms) = counted(events[0]), counted(events[1])
    q_graph, f_graph = Graph(int8), Graph(fp32)
    (q_kinds, q_layers), (f_kinds, f_layers) = by_kind(q_nodes, q_graph), by_kind(f_nodes, f_graph)
    names = list(modules)
    module = {**node_modules(f_graph.proto, names), **node_modules(q_graph.proto, names)} if names else {}
    ops = [{"kind": k, "int8_ms": round(q_kinds[k][0] / 1e3, 4) if k in q_kinds else 0.0,
            "fp32_ms": round(f_kinds[k][0] / 1e3, 4) if k in f_kinds else 0.0,
            "int8_nodes": int(q_kinds[k][1]) if k in q_kinds else 0,
            "fp32_nodes": int(f_kinds[k][1]) if k in f_kinds else 0} for k in {*q_kinds, *f_kinds}]
    ops.sort(key=lambda o: o["fp32_ms"] - o["int8_ms"])  # largest int8 excess first
    slower = [{"layer": n, "module": module.get(n), "extra_ms": round((q_layers[n] - f_layers[n]) / 1e3, 4)}
              for n in q_layers if n in f_layers and q_layers[n] > f_layers[n]]
    slower = sorted(slower, key=lambda r: -r["extra_ms"])[:3]
    return {"kernel_ms": {"int8": round(q_ms, 4), "fp32": round(f_ms, 4)}, "runs": RUNS, "ops": ops,
            "slowest_layers": slower, "line": line(ops, slower, q_ms, f_ms)}


def line(ops: list[dict[str, Any]], slower: list[dict[str, Any]], int8_ms: float, fp32_ms: float) -> str:
    """One sentence: the profiled kernel times, then the kinds costing more in int8, largest excess first."""
    floor = MIN_SHARE * fp32_ms
    parts = []
    for o in [o for o in ops if o["int8_ms"] - o["fp32_ms"] >= floor][:SHOWN]:
        extra = o["int8_ms"] - o["fp32_ms"]
        if not o["fp32_nodes"]:
            parts.append(f"{o['kind']} add {extra:.3g} ms over {o['int8_nodes']} nodes")
        elif o["int8_nodes"] != o["fp32_nodes"]:  # fp32 fused some of them into their neighbours
            parts.append(f"{o['kind']} take {extra:.3g} ms more in int8 over {o['int8_nodes']} nodes "
                         f"({o['fp32_nodes']} in fp32, the rest fused there)")
        else:
            parts.append(f"{o['int8_nodes']} {o['kind']} run {extra:.3g} ms slower in int8 "
                         f"({o['int8_ms']:.3g} ms against {o['fp32_ms']:.3g} ms)")
    gain = next((o for o in reversed(ops) if o["fp32_ms"] - o["int8_ms"] >= floor), None)
    if gain is not None:
        parts.append(f"while {gain['fp32_nodes']} {gain['kind']} gain {gain['fp32_ms'] - gain['int8_ms']:.3g} ms")
    if slower:
        parts.append("slowest layers in int8: " + ", ".join(f"{r['module'] or r['layer']} (+{r['extra_ms']:.2g} ms)"
                                                               for r in slower))
    head = (f"ONNX Runtime profile (one thread, batch 1, kernel time per run): int8 {int8_ms:.3g} ms against fp32 "
            f"{fp32_ms:.3g} ms")
    return head + (": " + "; ".join(parts) if parts else ": no operator kind costs notably more in int8")


def for_session(s: Any, built: Any, timed: dict[str, float] | None = None) -> dict[str, Any] | None:
    """`explain` for a quantize session's ONNX Runtime int8 file against its fp32 ONNX file, when int8 is not faster:
    by `timed` ({"int8": ms, "fp32": ms} at batch 1), else timed here as the stage times (interleaved, one thread).
    None for another backend or a faster int8 file. A failure is recorded with why: the explanation must not sink
    the file it explains."""
    from dlopt.models.spec import ExportFormat
    from dlopt.quantize.config import QBackend
    from dlopt.runtime.formats import find_format

    fmt = find_format(built.path)
    if built.recipe.backend != QBackend.ONNXRUNTIME or s.fp32 is None or fmt is None or fmt.format != ExportFormat.ONNX:
        return None
    try:
        timed = timed or _time(s, built)
        if timed["int8"] < timed["fp32"]:
            return None
        rec = explain(built.path, s.fp32.raw(), s.example(), [n for n, _ in s.module.named_modules()])
    except Exception as exc:  # noqa: BLE001 -- ORT's pybind errors derive from Exception alone
        return {"failed": f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}", "line": None}
    said = f"int8 {timed['int8']:.3g} ms against fp32 {timed['fp32']:.3g} ms at batch 1 on one thread"
    return {**rec, "timed_ms_b1": timed, "line": f"{said}; {rec['line']}"}


def _time(s: Any, built: Any) -> dict[str, float]:
    from dlopt.quantize.choose import time_runners
    from dlopt.quantize.ort_quant import runner_for

    example, fp32 = s.example(), runner_for(s.fp32.raw())
    return time_runners({"int8": lambda: built.runner(*example), "fp32": lambda: fp32(*example)},
                        s.cfg.timing_budget_s)
