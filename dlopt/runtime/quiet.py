"""Silence torch's known deprecation warnings for TorchScript and the legacy ONNX exporter.

dlopt states each once, as a calm note in the export result (DEPRECATION_NOTES), instead of a wall of
warnings; any other warning still reaches the CLI's collector.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

DEPRECATION_NOTES = {
    "torchscript": "TorchScript (torch.jit) is deprecated upstream; the .pt2 program (torch.export) is its successor",
    "legacy": "the legacy TorchScript-based ONNX exporter is deprecated upstream; dynamo is the default",
}
_PATTERNS = (r".*torch\.jit\.", r".*legacy TorchScript-based ONNX export", r".*feature will be removed",
             r".*torch\.onnx\.dynamo_export", r".*TorchScript.*deprecated", r".*_check_is_size will be removed",
             # the legacy exporter's caution about RNNs and batch sizes: verification checks several batches
             r".*Exporting a model to ONNX with a batch_size other than 1",
             r".*The axis name: .* will not be used",  # inputs sharing the batch/seq Dim: the same name
             r".*The tensor attributes .* were assigned during export")  # nn.RNN's flat weights under torch.export


@contextlib.contextmanager
def quiet_deprecations() -> Iterator[None]:
    with warnings.catch_warnings():
        for pattern in _PATTERNS:
            for category in (FutureWarning, DeprecationWarning, UserWarning):
                warnings.filterwarnings("ignore", message=pattern, category=category)
        for category in (FutureWarning, DeprecationWarning):  # torch's internal deprecations during export
            warnings.filterwarnings("ignore", category=category, module=r"(torch|onnxscript|onnx_ir|onnx)(\.|$)")
        yield
