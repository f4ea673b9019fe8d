"""Per-layer comparison of a model and its exported or quantized file (`dlopt diagnose`): where the outputs part.

The eager model runs with forward hooks on every module (the output of each call of each leaf module is kept);
the file runs on the same inputs from a copy that exposes the mapped tensors as extra outputs (ONNX Runtime) or
extra result ports (OpenVINO). `dlopt.verify.layermap` says which tensor holds which module's output. Each row
is one module call in model order: its relative error ||file - eager|| / ||eager|| and SQNR (dB) over all the
inputs; modules the file has no tensor for (a BatchNorm folded into its Conv) are folded into the next row that
has one. The first row past the tolerance is marked: where the file starts to differ.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dlopt.verify.layermap import LayerMap, Site

QUANTIZED_TOLERANCE = 0.1  # relative error (SQNR 20 dB): where an int8 layer has lost the signal
HALF_TOLERANCE = 1e-2
FLOAT_TOLERANCE = 1e-3  # an fp32 file agrees to ~1e-6 per layer; 1e-3 is a real difference


@dataclass(frozen=True, eq=False)  # compared by identity: it holds a tensor
class Event:
    module: str
    call: int
    output: Any  # the eager output tensor of this call (a copy)


@dataclass
class Sums:
    error: float = 0.0  # sum of squared differences
    norm: float = 0.0  # sum of squared reference values
    max_abs: float = 0.0

    def add(self, ref: Any, got: Any) -> None:
        ref, got = ref.double(), got.double()
        self.error += float(((got - ref) ** 2).sum())
        self.norm += float((ref * ref).sum())
        self.max_abs = max(self.max_abs, float((got - ref).abs().max()) if ref.numel() else 0.0)

    @property
    def rel_error(self) -> float:
        return math.sqrt(self.error) / max(math.sqrt(self.norm), 1e-30)

    @property
    def sqnr_db(self) -> float | None:
        return None if self.error == 0 else round(10 * math.log10(max(self.norm, 1e-300) / self.error), 3)


@dataclass
class Row:
    layer: str  # the module whose output the file's tensor is compared with
    call: int
    modules: list[str]  # every module call folded into the row (fused in the file), in model order
    op: str
    tensor: str
    quantized: bool
    sums: Sums = field(default_factory=Sums)

    def to_json(self, tolerance: float) -> dict[str, Any]:
        rel = self.sums.rel_error
        return {"layer": _label(self.layer, self.call), "call": self.call, "modules": self.modules, "op": self.op, "tensor": self.tensor,
                "quantized": self.quantized, "rel_error": _round(rel), "sqnr_db": self.sqnr_db,
                "max_abs": _round(self.sums.max_abs), "flagged": rel > tolerance}

    @property
    def sqnr_db(self) -> float | None:
        return self.sums.sqnr_db


def _label(module: str, call: int) -> str:
    """A module's name, with the call for the second call on (a ReLU module used twice: relu, relu#1)."""
    return f"{module}#{call}" if call else module


def _round(x: float) -> float:
    return float(f"{x:.4g}")


def _first_tensor(out: Any) -> Any:
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, list | tuple):
        for item in out:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def capture(model: Any, inputs: tuple[Any, ...]) -> tuple[list[Event], tuple[Any, ...]]:
    """The output of every call of every leaf module (one that called no other module), in completion order,
    and the model's flattened outputs."""
    import torch

    from dlopt.models.outputs import flatten

    events: list[Event] = []
    stack: list[list[Any]] = []
    calls: dict[str, int] = {}

    def pre(name: str) -> Callable[..., None]:
        def hook(_mod: Any, _args: Any) -> None:
            stack.append([name, False])
        return hook

    def post(name: str) -> Callable[..., None]:
        def hook(_mod: Any, _args: Any, out: Any) -> None:
            _, had_child = stack.pop()
            call = calls.get(name, 0)
            calls[name] = call + 1
            if stack:
                stack[-1][1] = True
            t = _first_tensor(out)
            if not had_child and t is not None and t.is_floating_point():
                events.append(Event(name, call, t.detach().clone()))  # in-place activations change it later
        return hook

    handles = []
    for name, mod in model.named_modules():
        handles += [mod.register_forward_pre_hook(pre(name)), mod.register_forward_hook(post(name))]
    try:
        with torch.inference_mode():
            out = model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return events, flatten(out)


def _fits(ref: Any, got: Any) -> Any:
    """`got` shaped as `ref` when they hold the same values in the same layout (size-1 dims aside), else None."""
    import torch

    got = torch.as_tensor(got)
    if tuple(got.shape) == tuple(ref.shape):
        return got
    squeeze = [d for d in ref.shape if d != 1] == [d for d in got.shape if d != 1]
    return got.reshape(ref.shape) if squeeze else None


def plan_rows(events: Sequence[Event], layer_map: LayerMap) -> list[tuple[list[Event], Site]]:
    """Each mapped event with the unmapped events before it (folded into its row), in model order."""
    sites = {(s.module, s.call): s for s in layer_map.sites}
    plan, pending = [], []
    for e in events:
        pending.append(e)
        site = sites.get((e.module, e.call))
        if site is not None:
            plan.append((pending, site))
            pending = []
    return plan


def _pick(group: list[Event], follow: list[Event], got: Any) -> tuple[Event, Any] | None:
    """The eager call the file's tensor holds: the mapped one, or one right after it that the file folded in (a
    legacy export's Conv node carries the BatchNorm after it); the closest of those whose shape fits."""
    best = None
    for e in [group[-1], *follow]:
        fitted = _fits(e.output, got)
        if fitted is None:
            continue
        err = float((fitted.double() - e.output.double()).norm() / e.output.double().norm().clamp_min(1e-30))
        if best is None or err < best[0]:
            best = (err, e, fitted)
    return None if best is None else (best[1], best[2])


def compare_batch(events: list[Event], layer_map: LayerMap, values: dict[str, Any],
                  rows: dict[tuple[str, int], Row]) -> None:
    """Add one batch's differences to `rows` (made on the first batch; dicts keep model order)."""
    plan, consumed = plan_rows(events, layer_map), set()
    for k, (group, site) in enumerate(plan):
        follow = plan[k + 1][0][:-1] if k + 1 < len(plan) else []
        got = values.get(site.tensor)
        picked = _pick(group, follow, got) if got is not None else None
        if picked is None:
            continue
        event, fitted = picked
        key = (site.module, site.call)
        if key not in rows:
            upto = follow[:[id(e) for e in follow].index(id(event)) + 1] if any(e is event for e in follow) else []
            folded = [e for e in group if id(e) not in consumed] + upto
            consumed |= {id(e) for e in upto}
            rows[key] = Row(event.module, event.call, [_label(e.module, e.call) for e in folded],
                            site.op, site.tensor, site.quantized)
        rows[key].sums.add(event.output, fitted)


def first_flagged(rows: list[dict[str, Any]]) -> int | None:
    return next((i for i, r in enumerate(rows) if r["flagged"]), None)


def tolerance_for(kind: str, asked: float | None) -> float:
    if asked is not None:
        return asked
    return {"int8": QUANTIZED_TOLERANCE, "fp16": HALF_TOLERANCE}.get(kind, FLOAT_TOLERANCE)


def onnx_tap(path: Any, tensors: Sequence[str]) -> Callable[..., tuple[tuple[Any, ...], dict[str, Any]]]:
    """A runner of a copy of the ONNX file with `tensors` as extra outputs: (outputs, {tensor: value})."""
    import numpy as np
    import onnx
    import torch

    from dlopt.runtime.formats import ort_session

    proto = onnx.load(str(path))
    outputs = [o.name for o in proto.graph.output]
    try:
        inferred = onnx.shape_inference.infer_shapes(proto).graph
    except Exception:  # noqa: BLE001 -- contrib operators stop onnx's shape inference: float is the default below
        inferred = proto.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.value_info, *inferred.output)}
    extra = [t for t in dict.fromkeys(tensors) if t not in outputs]
    for t in extra:
        proto.graph.output.append(onnx.helper.make_tensor_value_info(t, types.get(t) or onnx.TensorProto.FLOAT, None))
    session = ort_session(proto.SerializeToString(), threads=1)
    names = [i.name for i in session.get_inputs()]

    def run(*inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        feed = {n: np.ascontiguousarray(t.detach().cpu().numpy()) for n, t in zip(names, inputs, strict=False)}
        got = [torch.from_numpy(np.asarray(o)) for o in session.run(None, feed)]
        return tuple(got[:len(outputs)]), dict(zip(outputs + extra, got, strict=True))

    return run


def openvino_values(path: Any, ports: Sequence[str], batches: Sequence[tuple[Any, ...]]
                    ) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """As onnx_tap over every batch, for an IR (`ports`: "friendly name:output index", layermap.Site.tensor). One
    compiled copy per port: with several extra results at once the CPU plugin's int8 fusions gave wrong values
    (a Conv exposed before its fused ReLU + FakeQuantize zeroed the ReLU's output, and changed the model's output)."""
    import torch

    from dlopt.runtime.openvino import as_arrays, compile_ir, require_openvino

    ov = require_openvino()

    def compiled_with(key: str | None) -> tuple[Any, int | None]:
        model = ov.Core().read_model(str(path))
        if key is None:
            return compile_ir(model, threads=1), None
        name, index = key.rsplit(":", 1)
        op = next((o for o in model.get_ops() if o.get_friendly_name() == name), None)
        if op is None:
            return None, None
        model.add_outputs([op.output(int(index))])
        return compile_ir(model, threads=1), len(model.outputs) - 1  # fp32 hint: int8 layers stay int8

    plain = compiled_with(None)[0].create_infer_request()
    arrays = [as_arrays(b) for b in batches]
    got = [(tuple(torch.from_numpy(o.copy()) for o in plain.infer(a).to_tuple()), {}) for a in arrays]
    for key in dict.fromkeys(ports):
        compiled, at = compiled_with(key)
        if compiled is None:
            continue
        request = compiled.create_infer_request()
        for (_outs, values), a in zip(got, arrays, strict=True):
            values[key] = torch.from_numpy(request.infer(a)[compiled.outputs[at]].copy())
    return got


def compare_file(module: Any, path: Any, layer_map: LayerMap, batches: Sequence[tuple[Any, ...]], kind: str,
                 tolerance: float | None) -> dict[str, Any]:
    """Every mapped layer's and every output's error over `batches`, in model order (the report's body)."""
    tol = tolerance_for(kind, tolerance)
    keys = [s.tensor for s in layer_map.sites]
    if str(path).endswith(".xml"):
        ready = openvino_values(path, keys, batches)
        tap = iter(ready).__next__
    else:
        run = onnx_tap(path, keys)
        tap = iter(run(*b) for b in batches).__next__
    rows: dict[tuple[str, int], Row] = {}
    outs: list[Sums] = []
    matches = total = 0
    for inputs in batches:
        events, eager = capture(module, inputs)
        got, values = tap()
        compare_batch(events, layer_map, values, rows)
        outs += [Sums() for _ in range(len(eager) - len(outs))]
        for sums, ref, out in zip(outs, eager, got, strict=False):
            fitted = _fits(ref, out)
            sums.add(ref, fitted if fitted is not None else out.reshape(ref.shape))
        if eager and got and eager[0].dim() == 2 and eager[0].shape[1] > 1:  # class scores
            matches += int((eager[0].argmax(1) == got[0].reshape(eager[0].shape).argmax(1)).sum())
            total += eager[0].shape[0]
    body = [r.to_json(tol) for r in rows.values()]
    first = first_flagged(body)
    notes = []
    if not layer_map.inner:  # at most the outputs were named: nothing about the layers inside
        body, first = [], None
        notes.append(f"no inner tensor of {getattr(path, 'name', path)} could be mapped to a module of the model "
                     f"(names from {layer_map.how}); only the outputs are compared")
    return {"kind": kind, "tolerance": tol, "mapping": layer_map.how, "layers_in_file": layer_map.layers,
            "rows": body, "first_flagged": None if first is None else {"index": first, **body[first]},
            "outputs": [{"output": i, "rel_error": _round(s.rel_error), "sqnr_db": s.sqnr_db,
                         "max_abs": _round(s.max_abs), "flagged": s.rel_error > tol} for i, s in enumerate(outs)],
            "top1_agreement": matches / total if total else None, "notes": notes}
