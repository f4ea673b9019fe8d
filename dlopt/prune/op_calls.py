"""The single calls the width table times: one Conv (1-3 d) or Linear at a given geometry, eager (torch.nn.functional)
or in ONNX Runtime (a one-node model built with onnx.helper, no exporter), on one thread, interleaved.

Each geometry's time is the FASTEST of its interleaved samples (each sample averages >= SAMPLE_S of calls) in
this thread's CPU time (`time.thread_time`; with one thread, eager torch and ONNX Runtime compute on the calling
thread), not the median of wall-clock samples: on this shared 2-core machine at load 5-11, the wall-clock medians
of three 3x3 convs of equal cost (64 -> 80 / 88 / 96 channels at 7x7, batch 8) came out 0.34 / 0.74 / 1.16 ms,
and even the fastest wall-clock sample of one geometry was 10x off in one of four repeats (every one of its
samples landed while the process was descheduled); CPU time does not count the time other processes hold the
core, and its fastest samples agreed within ~10 % across repeats."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

SAMPLE_S = 0.002  # a sample repeats a fast call until it spans this long (timer resolution, call jitter)
ROUNDS = 7  # interleaved samples per call geometry (the fastest counts); 3 when one call takes over SLOW_CALL_S
SLOW_CALL_S = 0.005
THREADS = 1  # what dlopt's latency measurements use (prune --bench, --target-speedup)
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class Op:
    """One Conv (any dims) or Linear call at a given width: the unit the table times and caches."""

    kind: str  # "conv" or "linear"
    shape: tuple[int, ...]  # input: (B, C_in, *spatial) for conv, (B, ..., C_in) for linear
    out: int
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1

    @property
    def params(self) -> int:
        """Weights and bias of the layer this call stands for."""
        c_in = self.shape[1] if self.kind == "conv" else self.shape[-1]
        return self.out * (c_in // self.groups) * math.prod(self.kernel) + self.out

    @property
    def key(self) -> str:
        parts = [self.kind, "x".join(map(str, self.shape)), f"o{self.out}"]
        if self.kind == "conv":
            parts += [f"k{'x'.join(map(str, self.kernel))}", f"s{'x'.join(map(str, self.stride))}",
                      f"p{'x'.join(map(str, self.padding))}", f"d{'x'.join(map(str, self.dilation))}",
                      f"g{self.groups}"]
        return "|".join(parts)


def measure_ops(ops: list[Op], runtime: str, clock: Callable[[], float] = time.thread_time) -> dict[str, float]:
    """CPU ms per call of each geometry (fastest sample), one thread, interleaved (round r visits every geometry)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        with torch.inference_mode():
            calls = {op.key: make_call(op, runtime) for op in ops}
            reps, rounds = {}, ROUNDS
            for key, fn in calls.items():
                fn()
                t0 = clock()
                fn()
                dt = clock() - t0
                reps[key] = max(1, min(50, math.ceil(SAMPLE_S / max(dt, 1e-7))))
                if dt > SLOW_CALL_S:  # one slow call: fewer rounds for every geometry of this batch
                    rounds = 3
            samples: dict[str, list[float]] = {k: [] for k in calls}
            keys = list(calls)
            for r in range(rounds):
                for key in keys[r % len(keys):] + keys[:r % len(keys)]:
                    t0 = clock()
                    for _ in range(reps[key]):
                        calls[key]()
                    samples[key].append((clock() - t0) * 1e3 / reps[key])
    finally:
        torch.set_num_threads(threads)
    return {k: min(v) for k, v in samples.items()}  # the least disturbed sample: see the module docstring




def op_for(layer: nn.Module, in_shape: tuple[int, ...] | None, batch: int, out_cut: int, in_cut: int) -> Op | None:
    """`layer` at `batch` with `out_cut` fewer outputs and `in_cut` fewer inputs; None where one call cannot stand
    for it (a recurrent layer, a grouped conv that is not depthwise, string padding, an unknown input shape)."""
    if in_shape is None or len(in_shape) < 2:
        return None
    shape = (batch, *in_shape[1:])
    if isinstance(layer, nn.Linear):
        return Op("linear", (*shape[:-1], layer.in_features - in_cut), layer.out_features - out_cut)
    if not isinstance(layer, CONVS) or isinstance(layer.padding, str) or layer.padding_mode != "zeros":
        return None
    depthwise = 1 < layer.groups == layer.in_channels
    if layer.groups > 1 and not depthwise:
        return None
    if depthwise:  # loses inputs and outputs together (out = mult x in)
        mult = layer.out_channels // layer.in_channels
        cut = max(in_cut, math.ceil(out_cut / mult))
        c_in, c_out = layer.in_channels - cut, layer.out_channels - cut * mult
    else:
        c_in, c_out = layer.in_channels - in_cut, layer.out_channels - out_cut
    if min(c_in, c_out) < 1:
        return None
    return Op("conv", (shape[0], c_in, *shape[2:]), c_out, tuple(layer.kernel_size), tuple(layer.stride),
              tuple(layer.padding), tuple(layer.dilation), c_in if depthwise else 1)


def make_call(op: Op, runtime: str) -> Callable[[], Any]:
    """A zero-argument call running `op` once on random data."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(op.shape, generator=g)
    c_in = op.shape[1] if op.kind == "conv" else op.shape[-1]
    w = torch.randn((op.out, c_in // op.groups, *op.kernel), generator=g) * 0.05
    b = torch.randn(op.out, generator=g)
    if runtime == "eager":
        if op.kind == "linear":
            return lambda: torch.nn.functional.linear(x, w, b)
        conv = (torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d)[len(op.kernel) - 1]
        return lambda: conv(x, w, b, op.stride, op.padding, op.dilation, op.groups)
    return _ort_call(op, x.numpy(), w.numpy(), b.numpy())


def _ort_call(op: Op, x: Any, w: Any, b: Any) -> Callable[[], Any]:
    from onnx import TensorProto, helper, numpy_helper

    from dlopt.runtime.formats import ort_session

    inits = [numpy_helper.from_array(b, "b")]
    if op.kind == "linear":  # y = x @ W^T + b, as torch exports nn.Linear for N-d input
        inits.append(numpy_helper.from_array(w.T.copy(), "wt"))
        nodes = [helper.make_node("MatMul", ["x", "wt"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])]
    else:
        inits.append(numpy_helper.from_array(w, "w"))
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=list(op.kernel), strides=list(op.stride),
                                  pads=list(op.padding) * 2, dilations=list(op.dilation), group=op.groups)]
    graph = helper.make_graph(nodes, "width_table", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort_session(model.SerializeToString(), threads=THREADS, inter_threads=1)
    feed = {"x": x}
    return lambda: session.run(None, feed)
