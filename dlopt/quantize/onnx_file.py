"""`dlopt quantize model.onnx`: int8 of an ONNX file made elsewhere, judged against the fp32 file itself.

The file is read as hostile (dlopt.verify.reference.check_onnx_file: bounded, external data kept beside it, no
custom-op domains); its inputs come from its graph (or --inputs FILE.npz, split into calibration and held-out rows).
Candidates: ONNX Runtime static int8 (QDQ, per-channel), ONNX Runtime dynamic int8 where the graph has
MatMul / Gemm layers, and OpenVINO + NNCF static int8. Each is judged on held-out inputs by top-1 agreement with
the fp32 file (classifier-shaped outputs) or relative error, and timed at batch 1 on one thread, interleaved with
the fp32 file on ONNX Runtime and OpenVINO; the fastest that passes is kept in <run>/<name>/ and verified at several
batch sizes against the fp32 file.

For `dlopt optimize` and other callers:

    inputs = onnx_example_inputs(path, batch=1)                   # the fp32 file's example inputs (torch tensors)
    built = build_onnx_int8(path, work_dir)                        # {"onnxruntime static ...": Built | reason}
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dlopt.core.errors import DloptError, UnsupportedError
from dlopt.quantize.config import CalibrationMethod, Method, QBackend, QuantizeConfig
from dlopt.quantize.ort_quant import Fp32Onnx
from dlopt.quantize.recipe import Built, Recipe
from dlopt.verify.reference import DEFAULT_SEQ, check_onnx_file, file_spec

CALIB_BATCH = 8
RANDOM_CALIB = 64  # random calibration samples when no --inputs file: the graph's inputs, not its data
HELD = 64  # held-out samples the verdict is judged on
Progress = Callable[[str], None]


class FileFp32(Fp32Onnx):
    """An ONNX file made elsewhere as the fp32 source: never exported; the same file whatever the exporter."""

    def __init__(self, path: Path, spec: Any, work: Path, notes: list[str]) -> None:
        super().__init__(None, spec, None, work, notes, "dynamo", Path(path))

    def _export(self, exporter: str | None) -> tuple[Path, Path]:
        return super()._export("dynamo")


def onnx_target(opts: Any) -> Path | None:
    """The .onnx file a quantize target names (dlopt.contract.target decides what a name is), else None."""
    from dlopt.contract.target import Kind, locate

    if opts.name is None or not str(opts.name).lower().endswith(".onnx") or opts.checkpoint is not None:
        return None
    found = locate(opts)
    return found.path if found.kind == Kind.ARTIFACT else None


def onnx_example_inputs(path: Path, batch: int = 1, seq_len: int = DEFAULT_SEQ, seed: int = 0) -> tuple[Any, ...]:
    """Example inputs of an fp32 ONNX file, from its graph inputs (dtype, shape; symbolic dims: the batch, then
    seq_len); the file is checked as hostile first."""
    from dlopt.models.registry import make_inputs

    spec, cfg = file_spec(Path(path), seq_len)
    return make_inputs(spec, cfg, batch, seq_len, seed=seed)


def _batches(spec: Any, cfg: Any, samples: int, seed: int) -> list[tuple[Any, ...]]:
    from dlopt.models.registry import make_inputs

    sizes = [CALIB_BATCH] * (samples // CALIB_BATCH) + ([samples % CALIB_BATCH] if samples % CALIB_BATCH else [])
    return [make_inputs(spec, cfg, n, seed=seed + k) for k, n in enumerate(sizes)]


def split_inputs(spec: Any, cfg: Any, inputs: Path | None, calib_samples: int, seed: int
                 ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], str, dict[str, Any] | None]:
    """(calibration batches, held-out batches, what they are, the inputs file's record): disjoint rows of the user's
    file (the last quarter held out, at least one row each), else random valid inputs of different seeds."""
    if inputs is None:
        calib = _batches(spec, cfg, min(calib_samples, RANDOM_CALIB), seed)
        return calib, _batches(spec, cfg, HELD, seed + 10_000), "random valid inputs from the graph's inputs", None
    from dlopt.data.inputs_file import load_inputs

    data = load_inputs(inputs, spec, cfg)
    n = data.samples
    held = max(1, n // 4) if n > 1 else 1
    cal = max(1, min(calib_samples, n - held)) if n > 1 else 1
    chunks = lambda start, count: [data.batch(s, min(CALIB_BATCH, start + count - s))
                                   for s in range(start, start + count, CALIB_BATCH)]
    basis = f"{held} held-out rows of {data.describe()} (calibrated on {cal} other rows)" if n > 1 else \
        f"the one row of {data.describe()} (calibrated on it too)"
    return chunks(0, cal), chunks(n - held if n > 1 else 0, held), basis, data.record()


def _recipes(cfg: QuantizeConfig, has_matmul: bool) -> list[Recipe]:
    from dlopt.quantize.choose import available

    backends = available(cfg.auto_backends)[0] if cfg.method == Method.AUTO else (cfg.backend,)
    out = []
    for backend in backends:
        methods = [Method.STATIC, *([Method.DYNAMIC] if has_matmul else [])] if cfg.method == Method.AUTO \
            else [cfg.method]
        for method in methods:
            if backend == QBackend.OPENVINO and method != Method.STATIC:
                continue
            if backend == QBackend.TORCH:
                raise UnsupportedError("an ONNX file has no PyTorch module for the torch backend; use --backend "
                                       "onnxruntime or openvino")
            out.append(Recipe(QBackend(backend), method, cfg.quant_format, cfg.per_channel))
    if not out:
        raise UnsupportedError(f"no int8 recipe for an ONNX file with --method {cfg.method} --backend {cfg.backend}")
    return out


def build_onnx_int8(path: Path, work: Path, cfg: QuantizeConfig | None = None, calib: list | None = None,
                    seq_len: int = DEFAULT_SEQ, progress: Progress | None = None) -> dict[str, Built | str]:
    """Every int8 candidate of the fp32 file `path` (ONNX Runtime static / dynamic, OpenVINO static) built in
    `work`: label -> Built, or the one-line reason it could not be built. `calib`: input batches (random valid
    inputs when None)."""
    import onnx

    from dlopt.quantize import ort_quant, ov_quant

    cfg = cfg or QuantizeConfig()
    model = check_onnx_file(Path(path))
    spec, mcfg = file_spec(Path(path), seq_len, model)
    calib = calib if calib is not None else _batches(spec, mcfg, RANDOM_CALIB, cfg.seed)
    has_matmul = any(n.op_type in ("MatMul", "Gemm") for n in onnx.load(str(path), load_external_data=False).graph.node)
    fp32, out = FileFp32(Path(path), spec, Path(work), []), {}
    for k, recipe in enumerate(_recipes(cfg, has_matmul)):
        (progress or (lambda _m: None))(f"building {recipe.label}")
        try:
            if recipe.backend == QBackend.OPENVINO:
                built = ov_quant.build(recipe, fp32, calib, Path(work) / f"c{k}" / "model.xml")
            else:
                built = ort_quant.build(recipe, fp32, calib, CalibrationMethod(str(cfg.calibration_method)),
                                        Path(work) / f"c{k}.onnx")
            built.notes[:0] = fp32.notes
            out[recipe.label] = built if built.quantized_layers else f"{recipe.label} converted no layer to int8"
        except DloptError as exc:
            out[recipe.label] = str(exc)
        except Exception as exc:  # noqa: BLE001 - the quantizers raise onnx / ORT / NNCF errors of many types
            out[recipe.label] = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:160]}"
    return out


def judge(fp32_run: Any, run: Callable[..., Any], held: list[tuple[Any, ...]], cfg: QuantizeConfig) -> dict[str, Any]:
    """Top-1 agreement (classifier-shaped outputs) or relative error of the candidate `run` (callable(*tensors) ->
    tuple of tensors) against the fp32 file on `held`; drop: 100 x disagreement, or 100 x relative error."""
    from dlopt.quantize.judge import ParitySums

    sums = ParitySums()
    for batch in held:
        sums.add(tuple(fp32_run(*batch)), tuple(run(*batch)))
    agreement, rel = sums.agreement(), sums.relative_error()
    ok = agreement >= cfg.min_agreement if agreement is not None else rel <= cfg.max_rel_error
    rule = f"top-1 agreement >= {cfg.min_agreement:g}" if agreement is not None else \
        f"relative error <= {cfg.max_rel_error:g}"
    return {"top1_agreement": agreement, "relative_error": rel, "passed": ok, "criterion": rule,
            "drop": round(100 * (1 - agreement), 3) if agreement is not None else round(100 * rel, 3)}
