"""Which tensor of an exported or quantized file holds which module's output (for `dlopt diagnose`).

A *site* is one call of one module and the file's tensor that holds its output as the file computes it. Names
come from the file itself where it says them, else from a fresh fp32 export of the same model (same exporter),
whose tensor names a quantized file or an OpenVINO IR keeps:

* the dynamo exporter's node metadata `pkg.torch.onnx.name_scopes` (['', 'layer1', 'layer1.0', 'layer1.0.bn1',
  fx node]): the deepest module path is the node's module; consecutive nodes of one module are one call;
* the legacy exporter's node names (/layer1/layer1.0/relu_1/Relu: module layer1.0.relu, second call);
* a quantized graph: the value as deployed is the DequantizeLinear output after a QuantizeLinear of the tensor
  (QDQ), or the DequantizeLinear of an integer tensor (QOperator); in an OpenVINO IR, the FakeQuantize output.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCOPES = "pkg.torch.onnx.name_scopes"
SKIP_OPS = frozenset({"Constant", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Identity"})
_CALL = re.compile(r"^(.*)_(\d+)$")  # the legacy exporter's second call of a module: relu_1


@dataclass(frozen=True)
class Site:
    module: str  # dotted module path ('' = the model itself)
    call: int  # which call of the module, from 0
    tensor: str  # the file's tensor (ONNX value name, or "op:port" in an OpenVINO IR) holding the output
    op: str  # the operator that computed it
    quantized: bool = False  # read after a Q/DQ pair or a FakeQuantize: the value the next layer receives


@dataclass(frozen=True)
class LayerMap:
    sites: tuple[Site, ...]
    how: str  # where the names came from
    layers: int  # compute nodes (Conv, MatMul, Gemm, LSTM...) in the file
    outputs: tuple[str, ...] = ()  # the file's own outputs (a site there says nothing about the layers inside)

    @property
    def inner(self) -> tuple[Site, ...]:
        return tuple(s for s in self.sites if s.tensor not in self.outputs)


def _legacy_module(name: str, modules: set[str]) -> tuple[str, int] | None:
    """/layer2/layer2.0/downsample/downsample.0/Conv -> ('layer2.0.downsample.0', 0); relu_1 -> second call."""
    segments = [s for s in name.split("/") if s][:-1]  # the last segment is the operator
    if not segments and name.startswith("/"):
        return "", 0
    parts, prev = [], None
    for seg in segments:
        parts.append(seg[len(prev) + 1:] if prev and seg.startswith(prev + ".") else seg)
        prev = seg
    path = ".".join(parts)
    if path in modules:
        return path, 0
    m = _CALL.match(path)
    if m and m.group(1) in modules:
        return m.group(1), int(m.group(2))
    return None


def _scope(node: Any, modules: set[str]) -> tuple[str, int | None] | None:
    """(module, call or None when calls are told apart by position) of one ONNX node, from the file alone."""
    for prop in node.metadata_props:
        if prop.key == SCOPES:
            try:
                names = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            found = [n for n in names[:-1] if n in modules]
            return (found[-1], None) if found else None
    if node.name.startswith("/"):
        return _legacy_module(node.name, modules)
    return None


def node_modules(proto: Any, modules: Iterable[str]) -> dict[str, str]:
    """Node name -> the module it computes, from the file's own metadata or legacy names (for reports that name
    ONNX nodes: which module is node_Conv_818)."""
    modules = set(modules)
    found = {n.name: _scope(n, modules) for n in proto.graph.node if n.name}
    return {name: scope[0] for name, scope in found.items() if scope is not None}


def _consumers(graph: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def deployed(graph: Any, tensor: str, consumers: dict[str, list[Any]] | None = None) -> tuple[str, bool]:
    """The tensor the next layer reads: T -> QuantizeLinear -> DequantizeLinear (QDQ), or an integer T ->
    DequantizeLinear (QOperator); T itself otherwise."""
    consumers = consumers if consumers is not None else _consumers(graph)
    for node in consumers.get(tensor, []):
        if node.op_type == "QuantizeLinear":
            for after in consumers.get(node.output[0], []):
                if after.op_type == "DequantizeLinear":
                    return after.output[0], True
        if node.op_type == "DequantizeLinear" and node.input[0] == tensor:
            return node.output[0], True
    return tensor, False


def onnx_sites(proto: Any, modules: Iterable[str]) -> list[Site]:
    """Sites from the file's own node metadata or legacy node names, in graph order."""
    modules = set(modules)
    graph, consumers = proto.graph, _consumers(proto.graph)
    runs: dict[tuple[str, int], list[Any]] = {}  # (module, call) -> its nodes, in graph order
    calls: dict[str, int] = {}
    prev = None
    for node in graph.node:
        if node.op_type in SKIP_OPS or not node.output:
            continue
        found = _scope(node, modules)
        if found is None:
            continue
        module, call = found
        if call is None:  # dynamo: consecutive nodes of one module are one call; another module's node ends it
            call = calls[module] - 1 if prev == module else calls.get(module, 0)
        calls[module] = max(calls.get(module, 0), call + 1)
        runs.setdefault((module, call), []).append(node)
        prev = module
    sites = []
    for (module, call), nodes in runs.items():
        tensor, quantized = deployed(graph, nodes[-1].output[0], consumers)
        sites.append(Site(module, call, tensor, nodes[-1].op_type, quantized))
    return sites


LAYER_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "LSTM", "GRU", "RNN", "Attention", "QLinearConv",
                       "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "QGemm",
                       "QAttention", "DynamicQuantizeLSTM", "MatMulIntegerToFloat"})  # float or integer layers


def _onnx_layers(proto: Any) -> int:
    return sum(n.op_type in LAYER_OPS for n in proto.graph.node)


def _export(module: Any, example: tuple[Any, ...], input_names: tuple[str, ...], exporter: str, work: Path) -> Any:
    """An fp32 ONNX export made as dlopt.export makes one (dynamo with the ONNX Script optimizer, or the legacy
    exporter with constant folding): its names are the ones a file made from this model carries. torch is called
    here directly, because dlopt.export imports this package (it verifies what it writes)."""
    import onnx
    import torch

    from dlopt.runtime.quiet import quiet_deprecations

    with quiet_deprecations():
        if exporter == "dynamo":
            return torch.onnx.export(module, example, None, dynamo=True, verbose=False, optimize=True,
                                     input_names=list(input_names)).model_proto
        path = work / "reference-legacy.onnx"
        torch.onnx.export(module, example, str(path), dynamo=False, input_names=list(input_names),
                          do_constant_folding=True, opset_version=17)
    return onnx.load(str(path))


def reference_sites(module: Any, example: tuple[Any, ...], input_names: tuple[str, ...], exporter: str, work: Path,
                    existing: Iterable[Path] = ()) -> list[Site]:
    """The sites of an fp32 export of `module` by `exporter`: one of `existing` (the run's own model.onnx) when
    that exporter made it, else a fresh export. Its tensor names are the ones a file made from it keeps."""
    import onnx

    names = [n for n, _ in module.named_modules()]
    for path in existing:
        proto = onnx.load(str(path), load_external_data=False)
        if guess_exporter(n.name for n in proto.graph.node) == exporter:
            return onnx_sites(proto, names)
    return onnx_sites(_export(module, example, input_names, exporter, work), names)


def guess_exporter(names: Iterable[str]) -> str:
    """The legacy exporter names nodes by scope (/layer1/conv1/Conv); the dynamo exporter node_Conv_0."""
    names = list(names)
    return "legacy" if sum(n.startswith("/") for n in names) > len(names) // 4 else "dynamo"


def map_onnx(proto: Any, module: Any, reference: Any) -> LayerMap:
    """The file's sites: its own names, completed from the reference export where it has too few (quantized
    QOperator nodes and DequantizeLinear outputs carry no metadata)."""
    names = [n for n, _ in module.named_modules()]
    own, layers = onnx_sites(proto, names), _onnx_layers(proto)
    unnamed = [n for n in proto.graph.node if n.op_type in LAYER_OPS and _scope(n, set(names)) is None]
    outputs = tuple(o.name for o in proto.graph.output)
    if own and not unnamed:
        return LayerMap(tuple(own), "the file's node metadata or names", layers, outputs)
    graph, consumers = proto.graph, _consumers(proto.graph)
    present = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    have = {(s.module, s.call) for s in own}
    extra = []
    for s in reference(guess_exporter(n.name for n in graph.node if n.op_type not in SKIP_OPS)):
        if (s.module, s.call) in have or s.tensor not in present:
            continue
        tensor, quantized = deployed(graph, s.tensor, consumers)
        extra.append(Site(s.module, s.call, tensor, s.op, quantized))
    how = " and ".join(part for part, used in (("the file's node metadata or names", own),
                                                ("a reference fp32 export's tensor names", extra)) if used) or \
        "neither the file's names nor a reference fp32 export's"
    return LayerMap(tuple(own + extra), how, layers, outputs)


def map_openvino(model: Any, reference: Any) -> LayerMap:
    """An IR's sites: ops whose output tensors carry the reference export's names; read after a FakeQuantize."""
    ops = list(model.get_ordered_ops())
    by_name: dict[str, Any] = {}
    for op in ops:
        for i, out in enumerate(op.outputs()):
            for name in out.get_names():
                by_name.setdefault(name, (op, i))
    sites = []
    computed = (op.get_friendly_name() for op in ops if op.get_type_name() not in ("Constant", "Parameter", "Result"))
    for s in reference(guess_exporter(computed)):
        if s.tensor not in by_name:
            continue
        op, i = by_name[s.tensor]
        port, quantized = (op, i), False
        for target in op.output(i).get_target_inputs():
            after = target.get_node()
            if after.get_type_name() == "FakeQuantize":
                port, quantized = (after, 0), True
                break
        sites.append(Site(s.module, s.call, f"{port[0].get_friendly_name()}:{port[1]}", s.op, quantized))
    layers = sum(op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul", "LSTMSequence", "GRUSequence",
                                        "RNNSequence") for op in ops)
    outputs = tuple(f"{src.get_node().get_friendly_name()}:{src.get_index()}"
                    for src in (o.get_node().input(0).get_source_output() for o in model.outputs))
    return LayerMap(tuple(sites), "a reference fp32 export's tensor names", layers, outputs)
