"""ONNX files made elsewhere: read as hostile, their inputs told by their graph, compared with another file.

    check_onnx_file(path)                       # size, external data kept inside its folder, no custom op domains
    spec, cfg = file_spec(path, seq_len=16)     # an ArchSpec whose inputs are the graph's (dtype, shape)
    module = onnx_module(path)                  # torch-callable reference: ONNX Runtime running the file
    reports = compare_files(a, b, VerifyConfig(), inputs=None)   # `dlopt verify a.onnx --reference b.onnx`

A symbolic first axis is the batch; any other symbolic axis is the sequence (`seq_len`, default 16). An integer
input that indexes a table (a Gather on an initializer: token ids) is drawn within the table; one named like a
mask is ones; other integers are drawn from [0, 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.core.errors import InputFileError, UnsupportedError
from dlopt.models.spec import BATCH, SEQ, ArchSpec, Stage, Task, TensorSpec

MAX_ONNX_BYTES = 2 << 30  # protobuf's own limit: weights beyond it live in external data
MAX_EXTERNAL_BYTES = 64 << 30
DEFAULT_SEQ = 16
# Operator domains that load no library: the standard sets, ONNX Runtime's built-in contrib ops (its quantizer
# writes com.microsoft nodes), and functions the file defines itself.
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview", "ai.onnx.preview.training",
                              "ai.onnx.training", "com.microsoft"})
QUANTIZED_OPS = frozenset({"QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger",
                           "ConvInteger", "QGemm", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention",
                           "DynamicQuantizeLSTM"})
_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
           11: "float64"}


def _nodes(graph: Any) -> list[Any]:
    """Every node, subgraphs (If / Loop bodies) included."""
    out = []
    for node in graph.node:
        out.append(node)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                out += _nodes(sub)
    return out


def _tensors(model: Any) -> list[Any]:
    from onnx.external_data_helper import _get_all_tensors

    return list(_get_all_tensors(model))


def _check_external(model: Any, path: Path) -> None:
    """Every external-data `location` names a regular file inside the model's folder; their total is bounded."""
    folder = path.parent.resolve()
    files: set[Path] = set()
    for t in _tensors(model):
        if t.data_location != 1:  # TensorProto.EXTERNAL
            continue
        location = next((e.value for e in t.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise InputFileError(f"{path.name}: tensor {t.name!r} keeps its data at {location!r}, outside the model's "
                                 f"folder {folder}; dlopt reads external data only from beside the file")
        if not target.is_file():
            raise InputFileError(f"{path.name}: external data {location!r} of tensor {t.name!r} is missing or not a "
                                 "regular file; copy it beside the model")
        files.add(target)
    if sum(f.stat().st_size for f in files) > MAX_EXTERNAL_BYTES:
        raise InputFileError(f"{path.name}: its external data is larger than {MAX_EXTERNAL_BYTES >> 30} GB")


def _check_domains(model: Any, path: Path) -> None:
    allowed = STANDARD_DOMAINS | {f.domain for f in model.functions}
    used = {n.domain for n in _nodes(model.graph)}  # an opset import alone loads nothing (ORT lists a few)
    used |= {n.domain for f in model.functions for n in f.node}
    custom = sorted(d for d in used if d not in allowed)
    if custom:
        raise UnsupportedError(f"{path.name} uses operators of the custom domain {custom[0]!r}, which need a custom-op "
                               "library; dlopt loads none (standard ONNX and ONNX Runtime's built-in operators only)")


def check_onnx_file(path: Path) -> Any:
    """The file's ModelProto (external data not loaded), after the checks above; one line on anything wrong."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"ONNX file {path} not found")
    size = path.stat().st_size
    if size > MAX_ONNX_BYTES:
        raise InputFileError(f"{path} is {size / 2**30:.1f} GB, larger than an ONNX protobuf can be (2 GB); "
                             "weights that large belong in external data")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends: not an ONNX file
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise InputFileError(f"{path} is not a valid ONNX file ({line})") from None
    _check_external(model, path)
    _check_domains(model, path)
    return model


@dataclass(frozen=True)
class OnnxFileConfig:
    seq_len: int = DEFAULT_SEQ  # every symbolic axis after the first (sequence, pixels...)


_PASS_OPS = frozenset({"Reshape", "Cast", "Unsqueeze", "Squeeze", "Flatten", "Identity", "Expand"})


def _table_sizes(model: Any, names: list[str], hops: int = 4) -> dict[str, int]:
    """input name -> rows of the table it indexes: a Gather on an initializer, reached directly or through a few
    shape-only ops (a reshape before the embedding lookup)."""
    rows = {t.name: (t.dims[0] if t.dims else 0) for t in model.graph.initializer}
    found = {}
    for name in names:
        frontier = {name}
        for _ in range(hops):
            nxt: set[str] = set()
            for n in model.graph.node:
                if n.op_type == "Gather" and len(n.input) == 2 and n.input[1] in frontier and rows.get(n.input[0]):
                    found[name] = rows[n.input[0]]
                elif n.op_type in _PASS_OPS and n.input and n.input[0] in frontier:
                    nxt.update(n.output)
            if name in found or not nxt:
                break
            frontier = nxt
    return found


def _input_spec(value: Any, tables: dict[str, int], path: Path) -> TensorSpec:
    t = value.type.tensor_type
    dtype = _DTYPES.get(t.elem_type)
    if dtype is None or not t.HasField("shape"):
        what = "no shape" if dtype else f"element type {t.elem_type}"
        raise UnsupportedError(f"{path.name}: input {value.name!r} has {what}, from which dlopt cannot make inputs; "
                               "give your own with --inputs FILE.npz")
    shape: list[int | str] = []
    for axis, d in enumerate(t.shape.dim):
        shape.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (BATCH if axis == 0 else SEQ))
    low: int | None = None
    high: int | None = None
    if dtype == "bool" or dtype.startswith(("int", "uint")):
        low, high = (0, tables[value.name]) if value.name in tables else \
            (1, 2) if "mask" in value.name.lower() else (0, 2)
    return TensorSpec(value.name, tuple(shape), dtype, low, high)


def file_spec(path: Path, seq_len: int = DEFAULT_SEQ, model: Any = None) -> tuple[ArchSpec, OnnxFileConfig]:
    """A spec for the file's graph: its inputs (names, dtypes, shapes), outputs, and an ONNX Runtime builder."""
    model = model if model is not None else check_onnx_file(path)
    path = Path(path).resolve()
    initialized = {t.name for t in model.graph.initializer}
    tables = _table_sizes(model, [v.name for v in model.graph.input if v.name not in initialized])
    inputs = tuple(_input_spec(v, tables, path) for v in model.graph.input if v.name not in initialized)
    outputs = []
    for v in model.graph.output:
        dims = v.type.tensor_type.shape.dim
        first_symbolic = bool(dims) and not (dims[0].HasField("dim_value") and dims[0].dim_value > 0)
        outputs.append(TensorSpec(v.name, (BATCH,) if first_symbolic else ()))
    first = model.graph.output[0].type.tensor_type.shape.dim if model.graph.output else []
    classifier = len(first) == 2 and first[1].HasField("dim_value") and first[1].dim_value >= 2
    spec = ArchSpec(
        name=f"onnx:{path}", summary=f"ONNX file {path.name}", builder=lambda _cfg: onnx_module(path),
        config=OnnxFileConfig, inputs=inputs, outputs=tuple(outputs),
        task=Task.CLASSIFICATION if classifier else Task.CUSTOM, dataset="none", metric="none", kind="onnx",
        stages=frozenset({Stage.QUANTIZE, Stage.VERIFY, Stage.BENCH}),
        limits={"train": "an ONNX file is not trained by dlopt", "prune": "an ONNX file is not pruned by dlopt",
                "export": "an ONNX file is already exported"})
    return spec, OnnxFileConfig(seq_len=seq_len)


def fixed_batch(spec: ArchSpec) -> int | None:
    """The batch every input fixes (a graph exported at batch 1), or None when the first axis is symbolic."""
    firsts = {t.shape[0] for t in spec.inputs if t.shape}
    return next(iter(firsts)) if len(firsts) == 1 and isinstance(next(iter(firsts)), int) else None


def onnx_module(path: Path, threads: int | None = None) -> Any:
    """An nn.Module running the file in ONNX Runtime: forward(*tensors) -> tuple of tensors (a reference model)."""
    import torch

    from dlopt.runtime.loader import load_artifact

    run = load_artifact(Path(path), threads=threads)

    class OnnxFile(torch.nn.Module):
        def forward(self, *inputs: Any) -> tuple[Any, ...]:
            return run(*inputs)

    return OnnxFile().eval()


def is_quantized(path: Path) -> bool:
    """Integer kernels in the file: an ONNX graph's quantize operators, or an IR's int8 FakeQuantize / weights."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        from dlopt.core.fileio import read_regular

        text = read_regular(path, 256 << 20, "OpenVINO IR").decode("utf-8", "replace")
        return 'type="FakeQuantize"' in text or 'element_type="i8"' in text or 'element_type="u8"' in text
    if path.suffix.lower() != ".onnx":
        return False
    import onnx

    return any(n.op_type in QUANTIZED_OPS for n in _nodes(onnx.load(str(path), load_external_data=False).graph))


def compare_files(path: Path, reference: Path, config: Any, inputs: Path | None = None, *,
                  trust_pickle: bool = False, seq_len: int = DEFAULT_SEQ) -> tuple[dict[str, Any], ArchSpec, Any]:
    """`dlopt verify FILE --reference REF.onnx`: both run on the same inputs (REF's graph tells them, or --inputs),
    every output judged as verify judges an export: elementwise at the tolerance, or, when FILE is quantized and REF
    is not, by top-1 agreement (classifier-shaped outputs) or relative error. Returns (reports, spec, inputs used)."""
    from dataclasses import replace

    from dlopt.runtime.formats import check_trusted, format_of
    from dlopt.verify.core import verify_artifacts
    from dlopt.verify.criteria import task_criterion
    from dlopt.verify.realdata import verify_cases

    reference, path = Path(reference), Path(path)
    if format_of(reference).format != "onnx":
        raise UnsupportedError(f"--reference {reference.name}: the reference must be an .onnx file (its graph "
                               "declares the inputs both files run on)")
    model = check_onnx_file(reference)
    fmt = format_of(path).format.value
    if not path.is_file():
        raise InputFileError(f"artifact {path} not found")
    if fmt == "onnx":
        check_onnx_file(path)
    check_trusted(path, trust_pickle)  # a .ts / .pt2 would unpickle: the one trust rule
    spec, cfg = file_spec(reference, seq_len, model)
    batch = fixed_batch(spec)
    if batch is not None and not config.batch_sizes:  # a graph exported at one batch runs only at that batch
        config = replace(config, batch_sizes=(batch,), export_batch=batch)
    if config.criterion is None and config.atol is None and config.rtol is None and is_quantized(path) \
            and not is_quantized(reference):
        config = replace(config, criterion=task_criterion(str(spec.task)))
    cases, used = verify_cases(None, spec, cfg, config, inputs)
    reports = verify_artifacts(onnx_module(reference), spec, cfg, {fmt: path}, config, trust_pickle=True, cases=cases)
    return reports, spec, used


def verify_reference(path: Path, reference: Path, config: Any, inputs: Path | None = None,
                     trust_pickle: bool = False) -> tuple[dict[str, Any], str, Path]:
    """compare_files, with the report written beside FILE (<stem>.verify.json): (reports, what was compared, report)."""
    from dlopt.verify.report import write_report

    reports, spec, used = compare_files(path, reference, config, inputs, trust_pickle=trust_pickle)
    extra = {"arch": spec.name, "stage": "verify", **({"inputs": used} if used else {})}  # arch: onnx:<reference>
    written = write_report(Path(path).with_suffix(".verify.json"), reports, extra)
    return reports, f"{Path(path).name} against {Path(reference).name}", written
