"""Keep the time axis of nn.RNN / LSTM / GRU dynamic under torch.export.

aten::lstm and friends decompose into one Python step per time step while tracing, which bakes the
sequence length into the program. torch ships while_loop decompositions for LSTM and GRU (used by its
ONNX exporter); this adds the same for the plain tanh/ReLU RNN, and registers all of them while exporting.
These are private torch helpers: if they move, export still works but the seq axis is fixed (verify says so).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def _one_layer_rnn(nonlinearity: Any) -> Any:
    import torch
    from torch._higher_order_ops.while_loop import while_loop
    from torch.export._patches import _clone_tensors_that_alias

    def layer(inp: Any, hidden: Any, params: list, has_biases: bool, reverse: bool = False) -> tuple[Any, Any]:
        ih_w, hh_w = params[0], params[1]
        ih_b, hh_b = (params[2], params[3]) if has_biases else (None, None)
        pre = torch.nn.functional.linear(inp, ih_w, ih_b)  # (T, B, H): the input projection for every step
        pre = pre.flip(0) if reverse else pre
        hh_w, hh_b = _clone_tensors_that_alias((hh_w, hh_b))
        steps = torch.empty(pre.size(0), *hidden.shape, dtype=hidden.dtype, device=hidden.device)

        def cond_fn(i: Any, out: Any, h: Any) -> Any:
            return i < pre.size(0)

        def body_fn(idx: Any, out: Any, h: Any) -> tuple[Any, Any, Any]:
            i = idx.item()
            torch._check_is_size(i)
            torch._check_is_size(i, max=pre.size(0) - 1)
            h = nonlinearity(torch.nn.functional.linear(h, hh_w, hh_b) + pre[i])
            out = out.clone()
            out[i] = h
            return idx + 1, out, h

        _, out, final = while_loop(cond_fn, body_fn, [torch.tensor(0, dtype=torch.int64), steps, hidden])
        return (out.flip(0) if reverse else out), final

    return layer


def _rnn_impl(nonlinearity: Any) -> Any:
    import torch
    from torch._decomp.decompositions import _rnn_helper, gather_params

    layer_fn = _one_layer_rnn(nonlinearity)

    def impl(input: Any, hx: Any, params: Any, has_biases: bool, num_layers: int, dropout: float, train: bool,
             bidirectional: bool, batch_first: bool) -> tuple[Any, Any]:
        out, finals = _rnn_helper(input, list(hx.unbind(0)), gather_params(params, has_biases, False), has_biases,
                                  num_layers, dropout, train, bidirectional, batch_first, layer_fn)
        return out, torch.stack(finals, 0)

    return impl


@contextlib.contextmanager
def rnn_while_loops() -> Iterator[None]:
    """Register while_loop decompositions for lstm, gru, rnn_tanh and rnn_relu for the duration."""
    import torch

    try:
        from torch.export import _patches as p
    except ImportError:  # an older or newer torch without them: export proceeds, seq may be fixed
        yield
        return
    with contextlib.ExitStack() as stack:
        stack.enter_context(p.register_lstm_while_loop_decomposition())
        stack.enter_context(p.register_gru_while_loop_decomposition())
        for op, fn in ((torch.ops.aten.rnn_tanh.input, torch.tanh), (torch.ops.aten.rnn_relu.input, torch.relu)):
            stack.enter_context(p._register_rnn_while_loop_decomposition(op, _rnn_impl(fn)))
        yield
