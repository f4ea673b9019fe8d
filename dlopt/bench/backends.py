"""Each backend turns a variant (a module, or an artifact file) and example inputs into a zero-argument
callable. A backend that cannot run here raises BackendUnavailable with the reason for its row."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.bench.config import Backend, Device
from dlopt.runtime.formats import artifact_bytes, bench_runtime, check_trusted, ort_call, ort_session, resolve


class BackendUnavailable(Exception):
    """This backend cannot run on this machine or device; the message says why and what would fix it."""


@dataclass(frozen=True)
class Variant:
    """One row family of the table: a backend applied to a module or an artifact."""

    name: str
    backend: Backend
    module: Any = None  # nn.Module for eager / torchscript / compile
    path: Path | None = None  # .onnx, .ts or .pt2 artifact
    precision: str = "fp32"  # which measured peak the roofline compares with
    script: bool = False  # TorchScript by scripting rather than tracing (spec.torchscript == "script")
    unavailable: str | None = None  # why this row cannot run at all (no .onnx, export failed)
    trust_pickle: bool = False  # load a .ts/.pt2 file no dlopt manifest records (else: the same check as verify)


@dataclass(frozen=True)
class Prepared:
    fn: Callable[[], Any]
    setup_s: float  # trace + freeze, session creation, or wrapping (compile happens at the first call)
    model_bytes: int | None
    model_bytes_source: str
    first: Callable[[], Any] | None = None  # the first call, when it differs (torch.compile compiles in it)


def _weights_bytes(module: Any) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def prepare_eager(v: Variant, inputs: tuple[Any, ...], device: Device, threads: int) -> Prepared:
    if v.path is not None:  # a .pt2 exported program, loaded through the same trust check as dlopt verify
        from dlopt.runtime.archive import load_module

        t0 = time.perf_counter()
        module = load_module(v.path, "pt2", trust_pickle=v.trust_pickle)
        return Prepared(functools.partial(module, *inputs), time.perf_counter() - t0, artifact_bytes(v.path), "file")
    module = v.module.to(device.value)
    return Prepared(functools.partial(module, *inputs), 0.0, _weights_bytes(module), "parameters+buffers")


def prepare_torchscript(v: Variant, inputs: tuple[Any, ...], device: Device, threads: int) -> Prepared:
    import torch

    from dlopt.export.torchscript import trace_module

    t0 = time.perf_counter()
    if v.path is not None:  # through the same trust check as dlopt verify
        from dlopt.runtime.archive import load_module

        ts = load_module(v.path, "torchscript", trust_pickle=v.trust_pickle, device=device.value)
        return Prepared(functools.partial(ts, *inputs), time.perf_counter() - t0, artifact_bytes(v.path), "file")
    module = v.module.to(device.value)
    with torch.no_grad():
        ts = torch.jit.script(module) if v.script else trace_module(module, inputs)  # dict/nested outputs too
        ts = torch.jit.optimize_for_inference(torch.jit.freeze(ts.eval()))
    # the frozen module's size on disk is not its size: optimize_for_inference prepacks conv weights
    # into opaque objects that torch.jit.save leaves out; the weights themselves are the eager ones
    return Prepared(functools.partial(ts, *inputs), time.perf_counter() - t0, _weights_bytes(module),
                    "parameters+buffers (frozen in memory)")


def prepare_compile(v: Variant, inputs: tuple[Any, ...], device: Device, threads: int) -> Prepared:
    import torch

    if v.module is None:
        raise BackendUnavailable("torch.compile needs the PyTorch module, not an artifact file")
    from torch._inductor import config as inductor_config

    module = v.module.to(device.value)
    compiled = torch.compile(module, dynamic=False)
    run = functools.partial(compiled, *inputs)

    def first_call_with_freezing() -> Any:  # freezing is read when inductor compiles, i.e. at the first call
        with inductor_config.patch(freezing=True):
            return run()

    return Prepared(run, 0.0, _weights_bytes(module), "parameters+buffers", first=first_call_with_freezing)


def ort_providers(backend: Backend, device: Device) -> list[str]:
    """The execution providers for a row, or BackendUnavailable naming what is missing."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    if backend == Backend.TENSORRT:
        if device != Device.CUDA:
            raise BackendUnavailable("TensorRT runs on CUDA devices only; pass --device cuda on a machine with a GPU")
        wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    else:
        wanted = ["CUDAExecutionProvider"] if device == Device.CUDA else ["CPUExecutionProvider"]
    if wanted[0] not in have:
        raise BackendUnavailable(f"ONNX Runtime here has no {wanted[0]} (available: {', '.join(have)}); "
                                 "install onnxruntime-gpu with a matching CUDA/TensorRT to bench it")
    return wanted


def prepare_onnxruntime(v: Variant, inputs: tuple[Any, ...], device: Device, threads: int) -> Prepared:
    if v.path is None:
        raise BackendUnavailable("no .onnx file for this model (export it with `dlopt export`)")
    providers = ort_providers(v.backend, device)
    t0 = time.perf_counter()
    session = ort_session(v.path, threads=threads, inter_threads=1, providers=providers)
    setup = time.perf_counter() - t0
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(inputs):
        raise BackendUnavailable(f"{v.path.name} takes {len(names)} inputs, the spec gives {len(inputs)}")
    feed = {n: x.detach().cpu().numpy() for n, x in zip(names, inputs, strict=True)}
    return Prepared(ort_call(session, feed), setup, artifact_bytes(v.path), "file")


def prepare_openvino(v: Variant, inputs: tuple[Any, ...], device: Device, threads: int) -> Prepared:
    from dlopt.core.errors import MissingDependencyError
    from dlopt.runtime.openvino import INSTALL_HINT, bench_callable

    if device != Device.CPU:
        raise BackendUnavailable("dlopt runs OpenVINO on its CPU plugin only; pass --device cpu")
    try:
        fn, setup, size, where = bench_callable(v.path if v.path is not None else v.module, inputs, threads)
    except MissingDependencyError:
        raise BackendUnavailable(f"unavailable: {INSTALL_HINT}") from None
    return Prepared(fn, setup, size, where)


def prepare(v: Variant, inputs: tuple[Any, ...], device: Device, threads: int) -> Prepared:
    """The callable for one variant at one input shape, from its backend's record in dlopt.runtime.formats.BENCH_RUNTIMES.
    Raises BackendUnavailable, UnsafeFileError for an untrusted pickle-based file, or whatever the backend itself
    raised (the caller records that as a failed row)."""
    if device == Device.CUDA:
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable("CUDA is not available here (torch.cuda.is_available() is False); "
                                     "run with --device cpu, or on a machine with an NVIDIA GPU")
    if v.path is not None:  # every file that would unpickle passes the trust rule of dlopt verify, whatever runs it
        check_trusted(v.path, v.trust_pickle)
    return resolve(bench_runtime(v.backend).prepare)(v, inputs, device, threads)
