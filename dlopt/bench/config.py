"""What `dlopt bench` is asked to do: backends, sizes, threads, device, budget. No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from dlopt.errors import ConfigError


class Backend(StrEnum):
    EAGER = "eager"  # fp32, torch.inference_mode
    TORCHSCRIPT = "torchscript"  # traced (or scripted), frozen, optimize_for_inference
    COMPILE = "compile"  # torch.compile(inductor) with freezing
    ONNXRUNTIME = "onnxruntime"  # CPU EP on cpu; CUDA EP on cuda
    TENSORRT = "tensorrt"  # ONNX Runtime's TensorRT EP (cuda only)
    OPENVINO = "openvino"  # OpenVINO CPU plugin, latency hint, f32 precision (dlopt.openvino_rt)


class Device(StrEnum):
    CPU = "cpu"
    CUDA = "cuda"


class Exporter(StrEnum):
    DYNAMO = "dynamo"  # torch.export based (dlopt.export's default)
    LEGACY = "legacy"  # TorchScript based: much faster to export, opset <= 17


class StopReason(StrEnum):
    CONVERGED = "converged"  # IQR under the target fraction of the median
    BUDGET = "budget"  # the time budget ran out first
    MAX_CALLS = "max-calls"  # the call cap was reached first


@dataclass(frozen=True)
class BenchConfig:
    backends: tuple[Backend, ...] = (Backend.EAGER, Backend.TORCHSCRIPT, Backend.COMPILE, Backend.ONNXRUNTIME)
    batch_sizes: tuple[int, ...] = (1, 8)
    seq_lens: tuple[int, ...] = ()  # () = the config's default sequence length (sequence models only)
    threads: int | None = None  # None = torch's current setting; always recorded
    device: Device = Device.CPU
    budget_s: float = 10.0  # timed repetitions per (batch, seq) shape, shared by all variants round-robin
    iqr_target: float = 0.10  # stop a variant once IQR < this fraction of its median
    min_calls: int = 10  # never judge convergence on fewer timed calls
    max_calls: int = 100_000
    block_s: float = 0.05  # one round-robin block per variant lasts about this long
    warmup_calls: int = 3  # untimed calls after the first (the first is timed and reported apart)
    onnx_exporter: str = "dynamo"  # passed to dlopt.export when a run has no .onnx yet
    variants: bool = True  # also bench the artifacts and variants found in the run directory
    seed: int = 0




def parse_backends(text: str | None) -> tuple[Backend, ...]:
    """'eager,onnxruntime' or 'all'."""
    if text is None or text.strip() == "":
        return BenchConfig.backends
    if text.strip() == "all":
        return tuple(Backend)
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part not in Backend._value2member_map_:
            choices = ", ".join(b.value for b in Backend)
            raise ConfigError(f"unknown backend {part!r}; choose from {choices}, or all")
        out.append(Backend(part))
    return tuple(dict.fromkeys(out))


def check_path_parent(path: Path | None, flag: str) -> None:
    if path is not None and path.parent and not path.parent.exists():
        raise ConfigError(f"{flag} {path}: directory {path.parent} does not exist; create it or choose another path")
