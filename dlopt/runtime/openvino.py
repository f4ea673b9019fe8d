"""OpenVINO as a runtime: ONNX (or a torch module) -> IR (.xml + .bin), a CPU runner with a fixed thread count
and the latency hint, and NNCF post-training int8 quantization of an IR.

openvino and nncf are imported inside the functions that need them (`dlopt --help` stays fast).

    xml = convert_onnx(Path("model.onnx"), Path("model.xml"))
    run = ir_runner(xml, threads=1);  outputs = run(x)          # tuple of numpy arrays
    quantize_ir(xml, [(x,) for x in calib], Path("int8/model.xml"))
    mark_ir(xml, Path("bf16/model.xml"), "bf16")  # the same IR, compiled in bf16 by every dlopt runner
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dlopt.core.errors import InputFileError, InputMismatchError, MissingDependencyError, OutputError, UsageError

INSTALL_HINT = "pip install openvino"
NNCF_HINT = "pip install nncf"
# fp32 means fp32: on CPUs with AMX/AVX512-BF16 OpenVINO's CPU plugin otherwise runs f32 models in bf16
DEFAULT_PRECISION = "f32"
# An IR may say how its float parts compute (rt_info ["dlopt", PRECISION_KEY], written by mark_ir): compile_ir's
# default honours it, so loaders, bench and verify run a bf16 file as bf16 without knowing.
PRECISION_KEY = "inference_precision"
AS_SAVED = "as saved"  # compile_ir's default: the IR's own PRECISION_KEY, else DEFAULT_PRECISION
PRECISIONS = ("f32", "bf16", "f16")  # INFERENCE_PRECISION_HINT values an IR may carry
NpRunner = Callable[..., tuple[Any, ...]]


def require_openvino() -> Any:
    """The openvino module, or MissingDependencyError naming the install command."""
    try:
        import openvino
    except ImportError:
        raise MissingDependencyError(f"openvino is not installed: {INSTALL_HINT}") from None
    return openvino


def _first_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip() and not ln.startswith("Exception from")]
    return (lines[-1] if lines else type(exc).__name__).strip()[:200]


def save_ir(model: Any, xml_path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write an ov.Model as xml_path + its .bin, weights kept in fp32; both files appear only when complete."""
    ov = require_openvino()
    xml_path = Path(xml_path)
    for key, value in (metadata or {}).items():
        model.set_rt_info(str(value), ["dlopt", key])
    try:
        xml_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{xml_path.stem}.", dir=xml_path.parent) as tmp:
            staged = Path(tmp) / "model.xml"
            ov.save_model(model, str(staged), compress_to_fp16=False)
            os.replace(staged.with_suffix(".bin"), xml_path.with_suffix(".bin"))
            os.replace(staged, xml_path)  # the .xml last: a reader that sees it finds its .bin
    except OSError as exc:
        raise OutputError(f"cannot write {xml_path} ({exc.strerror or exc}); choose a writable directory") from None
    return xml_path


def convert_onnx(onnx_path: Path, xml_path: Path, metadata: dict[str, str] | None = None) -> Path:
    """ONNX file -> OpenVINO IR beside xml_path."""
    return save_ir(read_model(onnx_path), xml_path, metadata)


def read_model(path: Path) -> Any:
    """An .onnx or .xml file as an ov.Model to transform (NNCF, a precision mark, an IR to save).

    ONNX goes through ov.convert_model, which runs OpenVINO's front-end simplifications; Core.read_model skips them
    and leaves a shape subgraph (ShapeOf, Divide, VariadicSplit, Reshape) in front of each depthwise convolution's
    weights and x * sigmoid(x) unfused, so NNCF kept those convolutions float and quantized inside the activations
    (benchmarks/ov_reader.py: mobilenet_v2 at 224 int8 1.83x fp32 read that way, 2.60x converted)."""
    ov = require_openvino()
    try:
        return ov.convert_model(str(path)) if Path(path).suffix == ".onnx" else ov.Core().read_model(str(path))
    except Exception as exc:  # OpenVINO raises RuntimeError / OpConversionFailure for files it cannot read
        raise InputFileError(f"{path} is not a model OpenVINO can read ({_first_line(exc)})") from None


def convert_module(module: Any, inputs: tuple[Any, ...]) -> Any:
    """A torch module -> ov.Model through OpenVINO's PyTorch frontend (traced on the example inputs)."""
    from dlopt.models.outputs import flat_if_needed

    ov = require_openvino()
    return ov.convert_model(flat_if_needed(module, tuple(inputs)), example_input=tuple(inputs))  # dict outputs too


def saved_precision(model: Any) -> str | None:
    """The inference precision an ov.Model's dlopt metadata asks for (mark_ir), or None."""
    if not model.has_rt_info(["dlopt", PRECISION_KEY]):
        return None
    value = model.get_rt_info(["dlopt", PRECISION_KEY]).astype(str)
    if value not in PRECISIONS:
        raise InputFileError(f"the IR asks for inference precision {value!r}; dlopt knows {', '.join(PRECISIONS)}")
    return value


def compile_ir(model: Any, threads: int | None, precision: str | None = AS_SAVED) -> Any:
    """Compile an .xml/.onnx path or an ov.Model for CPU with the latency hint and `threads` threads.

    precision AS_SAVED: the one the IR carries (mark_ir), else f32; None keeps the plugin's own choice (bf16 on
    CPUs that have it), which is not fp32."""
    ov = require_openvino()
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise UsageError(f"threads must be a positive integer, got {threads!r}")
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    name = model if isinstance(model, (str, Path)) else "the model"
    core = ov.Core()
    try:
        if precision == AS_SAVED:
            model = core.read_model(str(model)) if isinstance(model, (str, Path)) else model
            precision = saved_precision(model) or DEFAULT_PRECISION
        if precision is not None:
            config["INFERENCE_PRECISION_HINT"] = precision
        return core.compile_model(str(model) if isinstance(model, (str, Path)) else model, "CPU", config)
    except InputFileError:
        raise
    except Exception as exc:  # RuntimeError from the plugin: a missing .bin, a corrupt or foreign file
        raise InputFileError(f"{name} is not a loadable OpenVINO model ({_first_line(exc)})") from None


def _describe(ports: list[Any]) -> str:
    return ", ".join(f"{p.get_any_name()} {p.get_element_type().get_type_name()} {p.get_partial_shape()}"
                     for p in ports)


def check_inputs(name: str, ports: list[Any], arrays: list[Any]) -> None:
    """Count, dtype, rank and static sizes of the inputs against the compiled model's, as one line."""
    problems = []
    if len(arrays) != len(ports):
        problems.append(f"{len(arrays)} input(s) given, {len(ports)} expected")
    for port, arr in zip(ports, arrays, strict=False):
        dtype = port.get_element_type().to_dtype()
        shape = port.get_partial_shape()
        if arr.dtype != dtype:
            problems.append(f"{port.get_any_name()} is {arr.dtype}, not {dtype}")
        elif shape.rank.is_static and (len(arr.shape) != shape.rank.get_length() or any(
                d.is_static and d.get_length() != n for d, n in zip(shape, arr.shape, strict=False))):
            problems.append(f"{port.get_any_name()} has shape {list(arr.shape)}, not {shape}")
    if problems:
        raise InputMismatchError(f"inputs do not fit {name}: {'; '.join(problems)}; it expects {_describe(ports)}")


def as_arrays(inputs: Iterable[Any]) -> list[Any]:
    import numpy as np

    return [np.ascontiguousarray(x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x))
            for x in inputs]


def make_runner(compiled: Any, name: str = "model") -> NpRunner:
    """callable(*tensors or arrays) -> tuple of numpy arrays (copies, safe to keep)."""
    request = compiled.create_infer_request()
    ports = list(compiled.inputs)

    def run(*inputs: Any) -> tuple[Any, ...]:
        arrays = as_arrays(inputs)
        check_inputs(name, ports, arrays)
        try:
            result = request.infer(arrays)
        except Exception as exc:  # RuntimeError from the plugin: the inputs did not fit the graph
            raise UsageError(f"{name} could not run these inputs ({_first_line(exc)}); it expects "
                             f"{_describe(ports)}") from None
        return tuple(result[out].copy() for out in compiled.outputs)

    return run


def ir_runner(path: Path, threads: int | None = None, precision: str | None = AS_SAVED) -> NpRunner:
    """A runner for an IR (.xml with its .bin beside it) or an .onnx file."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"OpenVINO model {path} not found")
    if path.suffix == ".xml" and not path.with_suffix(".bin").is_file():
        raise InputFileError(f"{path} has no weights file {path.with_suffix('.bin').name} beside it; "
                             "copy the .xml and .bin together")
    return make_runner(compile_ir(path, threads, precision), path.name)


def torch_runner(path: Path, threads: int | None = None) -> Callable[..., tuple[Any, ...]]:
    """As ir_runner, returning torch tensors (the contract of dlopt.export.load_artifact)."""
    import torch

    run = ir_runner(path, threads)
    return lambda *inputs: tuple(torch.from_numpy(o) for o in run(*inputs))


def bench_callable(source: Any, inputs: tuple[Any, ...], threads: int) -> tuple[Callable[[], Any], float, int, str]:
    """For dlopt bench: a zero-argument call on fixed inputs, the setup seconds (conversion of a module plus
    compilation; the first inference is timed by the caller), the model's bytes and where they were counted."""
    import functools
    import time

    t0 = time.perf_counter()
    if isinstance(source, (str, Path)):
        path = Path(source)
        weights = path.with_suffix(".bin") if path.suffix == ".xml" else None
        size, where = path.stat().st_size + (weights.stat().st_size if weights else 0), "file"
        compiled = compile_ir(path, threads)
    else:
        size = sum(t.numel() * t.element_size() for t in (*source.parameters(), *source.buffers()))
        where = "parameters+buffers"
        compiled = compile_ir(convert_module(source, inputs), threads)
    setup = time.perf_counter() - t0
    arrays = as_arrays(inputs)
    check_inputs(getattr(source, "name", "model"), list(compiled.inputs), arrays)
    request = compiled.create_infer_request()
    return functools.partial(request.infer, arrays, share_inputs=True), setup, size, where


def read_ir_metadata(path: Path) -> dict[str, str]:
    """The metadata dlopt stored in an IR's rt_info (save_ir's `metadata`)."""
    ov = require_openvino()
    model = ov.Core().read_model(str(path))
    if not model.has_rt_info(["dlopt"]):
        return {}
    return {str(k): v.astype(str) for k, v in model.get_rt_info(["dlopt"]).astype(dict).items()}


def mark_ir(source: Path, xml_path: Path, precision: str) -> Path:
    """The .xml/.onnx model at `source`, weights unchanged, saved as an IR whose float parts compile in `precision`
    (bf16: AVX512-BF16/AMX arithmetic and half the activation traffic)."""
    if precision not in PRECISIONS:
        raise UsageError(f"inference precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    return save_ir(read_model(source), xml_path, {PRECISION_KEY: precision})


def nncf_quantize(model: Any, calibration: Iterable[tuple[Any, ...]], subset_size: int = 64,
                  ignored: tuple[str, ...] = ()) -> Any:
    """NNCF post-training int8 (all defaults: symmetric, per-channel weights) of an openvino.Model; layers named in
    `ignored` stay float. NNCF's progress bars go to stderr, so `--json` on stdout stays parseable."""
    import contextlib
    import sys

    try:
        import nncf
    except ImportError:
        raise MissingDependencyError(f"nncf is not installed: {NNCF_HINT}") from None
    samples = [as_arrays(s) for s in calibration]
    if not samples:
        raise UsageError("NNCF quantization needs at least one calibration sample")
    dataset = nncf.Dataset(samples, lambda arrays: arrays if len(arrays) > 1 else arrays[0])
    scope = {"ignored_scope": nncf.IgnoredScope(names=list(ignored))} if ignored else {}
    with contextlib.redirect_stdout(sys.stderr):
        return nncf.quantize(model, dataset, subset_size=min(subset_size, len(samples)), **scope)


def quantize_ir(model_path: Path, calibration: Iterable[tuple[Any, ...]], out_xml: Path,
                subset_size: int = 64) -> Path:
    """`nncf_quantize` of an .xml/.onnx file; writes an IR. `calibration` yields input tuples (tensors or
    arrays); NNCF reads at most `subset_size` of them."""
    return save_ir(nncf_quantize(read_model(model_path), calibration, subset_size), out_xml)
