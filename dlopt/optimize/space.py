"""The search space: which prune ratios, precision/runtime pairs and thread counts a study may try.

Only what the spec's capabilities allow (ArchSpec.supports / why_not), what this CPU can run (bf16 needs its
instructions) and what is installed (OpenVINO + NNCF) is ever offered, so no candidate is built that would be
refused. Every left-out choice is kept with its reason for the report.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from dlopt.core.errors import UnsupportedError, UsageError
from dlopt.optimize.config import OptimizeConfig, Precision, Runtime

# (precision, runtime) -> what the spec must support for it (export format, quantize method)
NEEDS: dict[tuple[Precision, Runtime], tuple[str, ...]] = {
    (Precision.FP32, Runtime.EAGER): (),
    (Precision.FP32, Runtime.TORCHSCRIPT): ("export", "torchscript"),
    (Precision.FP32, Runtime.ONNXRUNTIME): ("export", "onnx"),
    (Precision.FP32, Runtime.OPENVINO): ("export", "onnx", "openvino"),
    (Precision.FP16, Runtime.ONNXRUNTIME): ("onnx", "quantize:fp16"),
    (Precision.INT8, Runtime.ONNXRUNTIME): ("onnx", "quantize:static"),
    (Precision.INT8, Runtime.OPENVINO): ("onnx", "quantize:static"),
    (Precision.INT8_BF16, Runtime.OPENVINO): ("onnx", "quantize:static"),
    (Precision.BF16, Runtime.EAGER): ("quantize:bf16",),
    (Precision.BF16, Runtime.OPENVINO): ("onnx", "openvino", "quantize:bf16"),
}
BF16_MATH = (Precision.BF16, Precision.INT8_BF16)  # need the CPU's bf16 instructions
NNCF_BUILT = (Precision.INT8, Precision.INT8_BF16)  # on OpenVINO: NNCF's int8


@dataclass(frozen=True)
class Candidate:
    ratio: float  # structured prune ratio; 0 = the run's model as is
    precision: Precision
    runtime: Runtime
    threads: int
    blocks: int = 0  # residual blocks removed whole before the ratio is applied (dlopt.prune.depth)

    @property
    def fmt(self) -> str:
        return f"{self.precision}@{self.runtime}"

    @property
    def label(self) -> str:
        return self.labelled()

    def labelled(self, kept_float: int = 0) -> str:
        """"prune 0.3 · int8 · onnxruntime · 1t"; with layers the quantizer kept in higher precision (its accuracy
        fallback): "… · int8 (3 layers float) · …" (bf16 where the file computes its float parts in bf16)."""
        pruned = pruned_label(self.ratio, self.blocks)
        precision = str(self.precision)
        if kept_float:
            kind = "bf16" if self.precision == Precision.INT8_BF16 else "float"
            precision += f" ({kept_float} layer{'' if kept_float == 1 else 's'} {kind})"
        return f"{pruned} · {precision} · {self.runtime} · {self.threads}t"

    def to_json(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "blocks": self.blocks, "precision": str(self.precision),
                "runtime": str(self.runtime), "threads": self.threads}

    @classmethod
    def of(cls, params: dict[str, Any]) -> Candidate:
        """From a trial's params (prune, blocks, format, threads); a trial made before depth pruning has no blocks."""
        precision, runtime = str(params["format"]).split("@")
        return cls(float(params["prune"]), Precision(precision), Runtime(runtime), int(params["threads"]),
                   int(params.get("blocks", 0)))

    @classmethod
    def of_row(cls, cand: dict[str, Any]) -> Candidate:
        """From a trial's recorded candidate (to_json)."""
        return cls.of({"prune": cand["ratio"], "blocks": cand.get("blocks", 0), "threads": cand["threads"],
                       "format": f"{cand['precision']}@{cand['runtime']}"})


def pruned_label(ratio: float, blocks: int) -> str:
    """"prune 0.3", "prune 0.3 − 5 blocks", "− 5 blocks", "unpruned"."""
    parts = ([f"prune {ratio:g}"] if ratio else []) + ([f"− {blocks} block{'' if blocks == 1 else 's'}"]
                                                      if blocks else [])
    return " ".join(parts) or "unpruned"


@dataclass(frozen=True)
class Space:
    ratios: tuple[float, ...]
    formats: tuple[str, ...]  # "precision@runtime"
    threads: tuple[int, ...]
    left_out: dict[str, str]  # choice -> why it is not searched
    blocks: tuple[int, ...] = (0,)  # residual blocks removed whole (counts, from the config's shares)

    @property
    def size(self) -> int:
        return len(self.ratios) * len(self.blocks) * len(self.formats) * len(self.threads)

    def to_json(self) -> dict[str, Any]:
        return {"ratios": list(self.ratios), "blocks": list(self.blocks), "formats": list(self.formats),
                "threads": list(self.threads), "left_out": dict(self.left_out), "size": self.size}


def block_counts(shares: tuple[float, ...], found: int) -> tuple[int, ...]:
    """The distinct block counts `shares` of `found` residual blocks make (half up: 0.25 of 10 is 3)."""
    return tuple(sorted({min(found, int(share * found + 0.5)) for share in shares}))


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def runtime_missing(runtime: Runtime) -> str | None:
    """Why a runtime cannot run here (its package is not installed), or None."""
    need = {Runtime.ONNXRUNTIME: ("onnxruntime",), Runtime.OPENVINO: ("openvino",)}.get(runtime, ())
    missing = [m for m in need if not installed(m)]
    return f"{' and '.join(missing)} not installed" if missing else None


def bf16_cpu() -> bool:
    from dlopt.core.environment import cpu_info

    return any(f in cpu_info()["flags"] for f in ("avx512_bf16", "amx_bf16"))


def _why_not(spec: Any, precision: Precision, runtime: Runtime) -> str | None:
    for need in NEEDS[(precision, runtime)]:
        if not spec.supports(need):
            return spec.why_not(need)
    if precision in BF16_MATH and not bf16_cpu():
        return "this CPU has no bf16 instructions (avx512_bf16 / amx_bf16): bf16 would be emulated, slower than fp32"
    if runtime == Runtime.OPENVINO and precision in NNCF_BUILT and not installed("nncf"):
        return "nncf not installed (pip install nncf)"
    return runtime_missing(runtime)


def build_space(spec: Any, cfg: OptimizeConfig, blocks: int | None = None) -> Space:
    """The choices for `spec` under `cfg`; UnsupportedError when nothing but the model as is would remain.
    `blocks`: how many residual blocks the model has that depth pruning may remove (None: not looked at yet,
    when options are checked before the model is loaded; no depth is offered then)."""
    runtimes = cfg.runtimes or tuple(Runtime)
    left: dict[str, str] = {}
    formats = []
    for (precision, runtime) in NEEDS:
        if runtime not in runtimes or precision not in cfg.precisions:
            continue
        why = _why_not(spec, precision, runtime)
        if why:
            left[f"{precision}@{runtime}"] = why
        else:
            formats.append(f"{precision}@{runtime}")
    ratios = tuple(sorted(set(cfg.prune_ratios)))
    counts = block_counts(cfg.depth_shares, blocks or 0)
    if any(ratios) and not spec.supports("prune:structured"):
        left["pruning"] = spec.why_not("prune:structured")
        ratios = (0.0,)
    if any(cfg.depth_shares) and not spec.supports("prune:structured"):
        left["depth"] = spec.why_not("prune:structured")
        counts = (0,)
    elif any(cfg.depth_shares) and blocks == 0:
        from dlopt.prune.depth import NO_BLOCK

        left["depth"] = NO_BLOCK
    if not formats:
        raise UnsupportedError(f"nothing to search for {spec.name} on {', '.join(map(str, runtimes))}: "
                               + "; ".join(f"{k}: {v}" for k, v in left.items()))
    return Space(ratios or (0.0,), tuple(formats), tuple(cfg.threads), left, counts)


def check_runtimes(cfg: OptimizeConfig) -> None:
    """A runtime named with --runtimes that cannot run here is a usage error (before any run directory)."""
    for runtime in cfg.runtimes:
        why = runtime_missing(runtime)
        if why:
            raise UsageError(f"--runtimes {runtime}: it cannot run here ({why})")


# An ONNX file made elsewhere: what can be built from the file alone (no PyTorch model), and what each needs.
FILE_FORMATS: dict[tuple[Precision, Runtime], tuple[str, ...]] = {
    (Precision.FP32, Runtime.ONNXRUNTIME): (),
    (Precision.FP32, Runtime.OPENVINO): (),
    (Precision.FP16, Runtime.ONNXRUNTIME): (),
    (Precision.INT8, Runtime.ONNXRUNTIME): (),
    (Precision.INT8, Runtime.OPENVINO): ("nncf",),
}
NO_MODEL = "an ONNX file has no PyTorch model"


def file_space(cfg: OptimizeConfig) -> Space:
    """The choices for an ONNX file made elsewhere: runtimes and precisions built from the file, threads; never a
    prune ratio. UnsupportedError when --runtimes leaves nothing that runs a file."""
    runtimes = cfg.runtimes or tuple(Runtime)
    left = {"pruning": "pruning needs the PyTorch model"}
    left.update({str(r): f"{NO_MODEL} to run" for r in runtimes if r not in {r for _, r in FILE_FORMATS}})
    built = {p for p, _ in FILE_FORMATS}
    left.update({str(p): f"{p} is not built from an ONNX file (yet)" for p in cfg.precisions if p not in built})
    formats = []
    for (precision, runtime), needs in FILE_FORMATS.items():
        if runtime not in runtimes or precision not in cfg.precisions:
            continue
        why = runtime_missing(runtime) or next((f"{m} not installed (pip install {m})" for m in needs
                                                if not installed(m)), None)
        if why:
            left[f"{precision}@{runtime}"] = why
        else:
            formats.append(f"{precision}@{runtime}")
    if not formats:
        raise UnsupportedError(f"nothing to search for an ONNX file on {', '.join(map(str, runtimes))}: "
                               + "; ".join(f"{k}: {v}" for k, v in left.items()))
    return Space((0.0,), tuple(formats), tuple(cfg.threads), left)
