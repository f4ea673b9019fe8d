"""Run any exported artifact by suffix: .onnx (ONNX Runtime, CPU, full graph optimisation), .ts, .pt2.

TorchScript archives (and .pt2 files that hold pickled parts) are zips with pickles inside: dlopt loads
one only if its sha256 is recorded in the manifest of the run directory that holds it (dlopt wrote it),
or when the caller passes trust_pickle=True (the CLI's --trust-pickle). What would unpickle is judged as
torch's loader reads the archive (dlopt.runtime.archive), not by member names.

Long native calls (an ONNX Loop of 10^9 steps, say): an ONNX Runtime call runs in a worker thread with its own
RunOptions, and Ctrl-C or the time limit (`time_limit`) sets RunOptions.terminate, which stops it between kernels.
TorchScript and .pt2 calls cannot be stopped mid-call (dlopt.runtime.interrupt says what happens instead).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dlopt.core.errors import InputFileError, InputMismatchError, UsageError
from dlopt.models.outputs import flatten
from dlopt.runtime.formats import SUFFIXES, format_of  # noqa: F401 -- SUFFIXES: re-exported for callers
from dlopt.runtime.interrupt import TimeLimitError, check_deadline, stoppable, time_limit, waiting_for_native_call

Runner = Callable[..., tuple[Any, ...]]
def artifact_format(path: Path) -> str:
    return format_of(path).format.value


def check_trusted(path: Path, trust_pickle: bool = False) -> None:
    """Refuse a .ts/.pt2 file that would unpickle or run code when loaded (judged as torch's loader reads it, see
    dlopt.runtime.archive), unless trusted; a zip bomb is refused even then."""
    from dlopt.runtime.archive import check_trusted as check

    check(path, artifact_format(path), trust_pickle)


def load_artifact(path: Path, *, trust_pickle: bool = False, threads: int | None = None) -> Runner:
    """A callable(*tensors) -> flat tuple of torch tensors for any artifact (dict and nested outputs flattened,
    dlopt.models.outputs)."""
    path = Path(path)
    rec = format_of(path)
    if not path.is_file():
        raise InputFileError(f"artifact {path} not found")
    # a pickle-capable format goes through the one door (bomb, trust, load); the others hold no code
    return rec.loader(path, threads, trust_pickle) if rec.unpickles else rec.loader(path, threads)


def onnx_runner(path: Path, threads: int | None) -> Runner:
    import numpy as np
    import torch

    from dlopt.runtime.formats import ort_run_options, ort_session

    session = ort_session(path, threads=threads)  # a file ORT cannot load: InputFileError, one line
    expected = session.get_inputs()

    def run(*inputs: Any) -> tuple[Any, ...]:
        arrays = [np.ascontiguousarray(t.detach().cpu().numpy()) for t in inputs]
        check_inputs(path, expected, arrays)
        feed = {i.name: a for i, a in zip(expected, arrays, strict=True)}
        check_deadline(path)
        run_options = ort_run_options(log_severity=4)  # a terminated run is reported by dlopt, not logged by ORT
        try:
            outputs = stoppable(lambda: session.run(None, feed, run_options), run_options, path)
        except TimeLimitError:
            raise
        except Exception as exc:  # ORT's pybind types (InvalidArgument, Fail...): the inputs did not fit
            raise UsageError(f"{path.name} could not run these inputs ({_first_line(exc)}); it expects "
                             f"{_describe(expected)}") from None
        return tuple(torch.from_numpy(np.asarray(o)) for o in outputs)

    return run


_ORT_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(bool)": "bool", "tensor(uint8)": "uint8",
               "tensor(int8)": "int8"}


def _describe(expected: list[Any]) -> str:
    return ", ".join(f"{i.name} {_ORT_DTYPES.get(i.type, i.type)} {list(i.shape)}" for i in expected)


def check_inputs(path: Path, expected: list[Any], arrays: list[Any]) -> None:
    """Count, dtype, rank and fixed sizes of the inputs against the ONNX graph's, as one line naming both."""
    problems = []
    if len(arrays) != len(expected):
        problems.append(f"{len(arrays)} input(s) given, {len(expected)} expected")
    for inp, arr in zip(expected, arrays, strict=False):
        dtype = _ORT_DTYPES.get(inp.type)
        if dtype is not None and str(arr.dtype) != dtype:
            problems.append(f"{inp.name} is {arr.dtype}, not {dtype}")
        elif len(arr.shape) != len(inp.shape) or any(
                isinstance(d, int) and d != n for d, n in zip(inp.shape, arr.shape, strict=False)):
            problems.append(f"{inp.name} has shape {list(arr.shape)}, not {list(inp.shape)}")
    if problems:
        raise InputMismatchError(f"inputs do not fit {path.name}: {'; '.join(problems)}; "
                                 f"it expects {_describe(expected)}")


def torchscript_runner(path: Path, threads: int | None, trust_pickle: bool = False) -> Runner:
    from dlopt.runtime.archive import load_module

    return _guarded(path, load_module(path, "torchscript", trust_pickle=trust_pickle))


def pt2_runner(path: Path, threads: int | None, trust_pickle: bool = False) -> Runner:
    from dlopt.runtime.archive import load_module

    return _guarded(path, load_module(path, "pt2", trust_pickle=trust_pickle))


def _guarded(path: Path, module: Any) -> Runner:
    import torch

    def run(*inputs: Any) -> tuple[Any, ...]:
        check_deadline(path)
        try:
            with torch.no_grad(), waiting_for_native_call(path):
                out = module(*inputs)
        except Exception as exc:  # shape/dtype guards raise RuntimeError, AssertionError, TypeError...
            shapes = ", ".join(f"{getattr(t, 'dtype', type(t).__name__)} {list(getattr(t, 'shape', []))}"
                               for t in inputs)
            raise UsageError(f"{path.name} could not run inputs {shapes} ({_first_line(exc)}); give inputs of the "
                             "shape and dtype it was exported with (dlopt info ARCH shows them)") from None
        check_deadline(path, " (a TorchScript or .pt2 call cannot be stopped mid-call: the limit acts when it "
                             "returns; Ctrl-C twice quits at once)")
        return flatten(out)  # a dict or nested output: its tensors in the order the eager model's flatten to

    return run


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata dlopt wrote into an artifact (ONNX metadata_props, an OpenVINO IR's rt_info); {} for other
    formats."""
    if artifact_format(path) == "openvino":
        from dlopt.runtime.openvino import read_ir_metadata

        try:
            return read_ir_metadata(path)
        except Exception as exc:  # RuntimeError from the plugin: a missing .bin, a corrupt or foreign file
            raise InputFileError(f"{path} is not a loadable OpenVINO model ({_first_line(exc)})") from None
    if artifact_format(path) != "onnx":
        return {}
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: the file is not ONNX
        raise InputFileError(f"{path} is not a valid ONNX file ({_first_line(exc)})") from None
    return {p.key: p.value for p in model.metadata_props}
