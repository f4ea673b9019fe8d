"""What `dlopt info` reports: parameters, FLOPs/MACs at the example input, size, signature."""

from __future__ import annotations

from typing import Any

from dlopt.models.registry import entry_module, make_inputs, resolve_dims
from dlopt.models.spec import ArchSpec

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _rnn_flops(module: Any, x: Any) -> int:
    """Analytic matmul FLOPs of an nn.RNN/LSTM/GRU call: 2 * T * B * gates * H * (in + H) per layer and direction."""
    batch, steps = (x.shape[0], x.shape[1]) if module.batch_first else (x.shape[1], x.shape[0])
    gates, hidden, dirs = _GATES[module.mode], module.hidden_size, 2 if module.bidirectional else 1
    total, width = 0, module.input_size
    for _ in range(module.num_layers):
        total += dirs * 2 * steps * batch * gates * hidden * (width + hidden)
        width = hidden * dirs
    return total


def count_flops(model: Any, inputs: tuple[Any, ...]) -> int:
    """FLOPs of one forward call. torch's counter misses fused RNN kernels (LSTM on CPU); for an RNN
    module during whose call the counter saw nothing, the analytic count is added."""
    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    missed: list[int] = []
    before: list[int] = []

    def running_total() -> int:
        return sum(counter.flop_counts["Global"].values())

    def pre(_m: Any, _args: Any) -> None:
        before.append(running_total())

    def post(m: Any, args: Any, _out: Any) -> None:
        if running_total() == before.pop():
            missed.append(_rnn_flops(m, args[0]))

    rnns = [m for m in model.modules() if isinstance(m, nn.RNNBase)]
    hooks = [h for m in rnns for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
    try:
        with counter, torch.no_grad():
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return int(running_total() + sum(missed))


def parameter_bytes(model: Any) -> int:
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _observed_outputs(net: Any, inputs: tuple[Any, ...], spec: ArchSpec) -> list[dict[str, Any]]:
    """A user model declares no outputs: each output tensor as the model returns it at the example input (dict keys
    and nested paths as names, dlopt.models.outputs)."""
    import torch

    from dlopt.models import outputs

    with torch.no_grad():
        out = net(*inputs)
    return [{"name": n, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."), "dynamic_axes": {}}
            for n, t in zip(outputs.names(out, spec.output_names), outputs.flatten(out), strict=True)]


def describe(spec: ArchSpec, cfg: Any, model: Any, batch_size: int = 1) -> dict[str, Any]:
    """A JSON-ready description of a built model at its example input."""
    from dlopt.models.options import config_dict

    net = entry_module(model, spec)
    inputs = make_inputs(spec, cfg, batch_size)
    flops = count_flops(net, inputs)
    seq = inputs[0].shape[1] if spec.takes_sequences else 0
    return {
        "name": spec.name, "summary": spec.summary, "task": str(spec.task), "dataset": spec.dataset,
        "metric": spec.metric, "entry": spec.entry or "(whole model)", "config": config_dict(cfg),
        "parameters": sum(p.numel() for p in model.parameters()),
        "entry_parameters": sum(p.numel() for p in net.parameters()),
        "size_mb": round(parameter_bytes(net) / 1e6, 3),
        "flops": flops, "macs": flops // 2, "flops_batch_size": batch_size,
        "inputs": [{"name": t.name, "shape": list(x.shape), "dtype": str(x.dtype).removeprefix("torch."),
                    "dynamic_axes": t.dynamic_axes} for t, x in zip(spec.inputs, inputs, strict=True)],
        "outputs": _observed_outputs(net, inputs, spec) if spec.kind == "user" else
        [{"name": t.name, "shape": list(resolve_dims(t.shape, cfg, batch_size, seq)), "dynamic_axes": t.dynamic_axes}
         for t in spec.outputs],
        "stages": sorted(str(s) for s in spec.stages), "formats": sorted(str(f) for f in spec.formats),
        "limits": dict(spec.limits), "tolerance": {"atol": spec.tolerance.atol, "rtol": spec.tolerance.rtol},
        "torchscript": spec.torchscript, "source": spec.source,
    }
