"""The stage of `dlopt quantize model.onnx` (dlopt.quantize.onnx_file builds and judges the candidates): a new run
<root>/onnx-<stem>/<id>/<name>/ holding the fastest int8 file that passes, its verification against the fp32 file
and quantize_report.json (a dlopt.core.results.QuantizeReport, rendered like any quantize result)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from dlopt.core.errors import DloptError, UnsupportedError
from dlopt.quantize.config import Method, QuantizeConfig
from dlopt.quantize.onnx_file import Progress, build_onnx_int8, judge, split_inputs
from dlopt.quantize.recipe import Built
from dlopt.runtime.formats import format_of
from dlopt.verify.reference import DEFAULT_SEQ, check_onnx_file, file_spec


def _fp32_runners(path: Path) -> dict[str, Any]:
    """The fp32 file on every runtime here, one thread: ONNX Runtime always, OpenVINO when installed."""
    from dlopt.quantize.ort_quant import runner_for

    runners = {"onnxruntime fp32": runner_for(path, threads=1)}
    try:
        from dlopt.runtime.openvino import torch_runner

        runners["openvino fp32"] = torch_runner(path, threads=1)
    except DloptError:
        pass
    return runners


def _timed(fp32: dict[str, Any], built: dict[str, Built], example: tuple[Any, ...], budget_s: float) -> dict[str, float]:
    from dlopt.quantize.choose import time_runners

    fns = {k: (lambda r=r: r(*example)) for k, r in fp32.items()}
    fns.update({label: (lambda b=b: b.runner(*example)) for label, b in built.items()})
    return time_runners(fns, budget_s)


def _candidates(built: dict[str, Built | str], verdicts: dict[str, dict], ms: dict[str, float], best_fp32: float,
                chosen: str | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for label, b in built.items():
        if isinstance(b, str):
            rows.append({"recipe": label, "failed": b})
            continue
        rows.append({"recipe": label, "val_drop": verdicts[label]["drop"], "latency_ms_b1": ms[label],
                     "speedup_vs_fp32": round(best_fp32 / ms[label], 3), "speedup_vs_eager": None, "bytes": b.bytes,
                     "passed": verdicts[label]["passed"], "chosen": label == chosen})
    return rows


def file_run(path: Path, spec: Any, root: Path) -> Any:
    """A new run <root>/onnx-<stem>/<id>/ for the ONNX file `path` (its manifest names the file and its sha256)."""
    from dlopt.core.fileio import sha256_file
    from dlopt.core.runs import Run

    return Run.create(root, f"onnx-{path.stem}", {"arch": spec.name, "source": str(path.resolve()),
                                                 "sha256": sha256_file(path)})


def quantize_onnx_file(path: Path, cfg: QuantizeConfig, root: Path, inputs: Path | None = None,
                       seq_len: int = DEFAULT_SEQ, progress: Progress | None = None) -> Any:
    """int8 of `path` into a new run <root>/onnx-<stem>/<id>/<cfg.name>/ (a QuantizeOutcome): every candidate built,
    judged on held-out inputs against the fp32 file and timed; the fastest that passes is kept and verified."""
    step = progress or (lambda _m: None)
    path = Path(path)
    model = check_onnx_file(path)  # hostile-file checks: nothing is created before they pass
    spec, mcfg = file_spec(path, seq_len, model)
    if cfg.method == Method.BF16:
        raise UnsupportedError("quantize of an ONNX file builds int8 (--method auto, static or dynamic) or fp16, "
                               "not bf16 (ONNX Runtime's CPU provider has almost no bfloat16 kernels)")
    calib, held, basis, used = split_inputs(spec, mcfg, inputs, cfg.calibration_samples, cfg.seed)
    t0 = time.perf_counter()
    run = file_run(path, spec, root)
    final_dir = run.file(cfg.name)
    with run.stage(cfg.name, cfg.to_json(), inputs=[path, *([inputs] if inputs else [])],
                   owns=(final_dir.name,)) as rec, tempfile.TemporaryDirectory(prefix="dlopt-onnxq-") as work:
        built = build_onnx_int8(path, Path(work), cfg, calib, seq_len, step)
        ok = {k: b for k, b in built.items() if not isinstance(b, str)}
        if not ok:
            raise UnsupportedError(f"no int8 candidate could be built from {path.name}: "
                                   + "; ".join(f"{k}: {v}" for k, v in built.items()))
        step("judging on held-out inputs")
        fp32 = _fp32_runners(path)
        verdicts = {k: judge(fp32["onnxruntime fp32"], b.runner, held, cfg) for k, b in ok.items()}
        step("timing at batch 1")
        ms = _timed(fp32, ok, tuple(t[:1] for t in held[0]), cfg.timing_budget_s)
        best_ref = min(fp32, key=lambda k: ms[k])
        passing = [k for k in ok if verdicts[k]["passed"]]
        chosen = min(passing or ok, key=lambda k: ms[k])
        b = ok[chosen]
        out = rec.path(final_dir.name, f"model{b.path.suffix}")
        companions = format_of(b.path).copy(b.path, out)  # an OpenVINO IR's weights travel with it
        rec.outputs.extend([out, *companions])
        step("verifying")
        sweep = _sweep(path, out, spec, mcfg, cfg, held if inputs is not None else None)
        report = _report(spec, cfg, b, verdicts[chosen], ms, best_ref, sweep, basis, used,
                         _candidates(built, verdicts, ms, ms[best_ref], chosen), bool(passing), path,
                         time.perf_counter() - t0, rec.final(out).relative_to(run.path),
                         sum(len(batch[0]) for batch in calib))
        from dlopt.core.results import write_result

        written = write_result(report, rec.path(final_dir.name, "quantize_report.json"))
        rec.outputs.append(written)
        rec.metrics.update({"method": report.method, "backend": report.backend, "verified": report.verified,
                            "top1_agreement": report.top1_agreement, "speedup_vs_fp32_b1": report.speedup_vs_fp32_b1})
    from dlopt.quantize.stage import QuantizeOutcome

    return QuantizeOutcome(artifact=final_dir / out.name, report=report, stage=cfg.name, run_dir=run.path,
                           report_path=final_dir / "quantize_report.json", summary=dict(rec.metrics))


class _Rows:
    """Held-out batches as the rows dlopt.verify.realdata.file_cases slices (an InputsFile's interface)."""

    def __init__(self, batches: list[tuple[Any, ...]]) -> None:
        import torch

        self.arrays = tuple(torch.cat(parts) for parts in zip(*batches, strict=True))

    @property
    def samples(self) -> int:
        return int(self.arrays[0].shape[0])

    def batch(self, start: int, size: int) -> tuple[Any, ...]:
        import torch

        rows = torch.arange(start, start + size) % self.samples
        return tuple(a[rows] for a in self.arrays)


def _sweep(fp32: Path, out: Path, spec: Any, mcfg: Any, cfg: QuantizeConfig, held: list | None) -> dict[str, Any]:
    """The kept file against the fp32 file at several batch sizes (and lengths), by the int8 criterion: on the
    held-out rows of the user's inputs file when there is one, else on random valid inputs."""
    from dlopt.verify.core import VerifyConfig, verify_artifacts
    from dlopt.verify.criteria import task_criterion
    from dlopt.verify.realdata import file_cases
    from dlopt.verify.reference import fixed_batch, onnx_module

    batch = fixed_batch(spec)
    config = VerifyConfig(criterion=task_criterion(str(spec.task), cfg.min_agreement, cfg.max_rel_error),
                          **({"batch_sizes": (batch,), "export_batch": batch} if batch else {}))
    cases = file_cases(_Rows(held), spec, config) if held else None
    fmt = format_of(out).format.value
    return verify_artifacts(onnx_module(fp32), spec, mcfg, {fmt: out}, config, trust_pickle=True,
                            cases=cases)[fmt].to_dict()


def _report(spec: Any, cfg: QuantizeConfig, b: Built, verdict: dict[str, Any], ms: dict[str, float], best_ref: str,
            sweep: dict[str, Any], basis: str, used: dict[str, Any] | None, candidates: list[dict[str, Any]],
            any_passed: bool, fp32: Path, seconds: float, artifact: Path, calib_samples: int) -> Any:
    from dlopt.core.results import QuantizeReport
    from dlopt.quantize.stage import layer_counts

    speedup = round(ms[best_ref] / ms[b.recipe.label], 3)
    counts = layer_counts(b)
    why = (f"{b.recipe.label}: {ms[b.recipe.label]:.4g} ms, the fastest at batch 1 of the candidates that pass "
           f"{verdict['criterion']} against the fp32 file" if any_passed else
           f"no candidate passes {verdict['criterion']}: the fastest is kept for inspection and fails verification")
    notes = [*b.notes, (f"the fp32 file is fastest on {best_ref.removesuffix(' fp32')} here ({ms[best_ref]:.4g} "
                        "ms); the speed-up is against it")]
    return QuantizeReport(
        arch=spec.name, stage=cfg.name, method=str(b.recipe.method), backend=str(b.recipe.backend),
        recipe=b.recipe.to_json(), chosen_by="auto" if cfg.method == Method.AUTO else "asked",
        auto={"candidates": candidates, "why": why, "drop_column": "disagreement % vs fp32 (held out)",
              "backends_note": f"measured {', '.join(sorted({str(c['recipe']).split()[0] for c in candidates}))}"},
        artifact=Path(artifact).name, size_bytes={"fp32": fp32.stat().st_size, "quantized": b.bytes,
                                                  "ratio": round(fp32.stat().st_size / max(b.bytes, 1), 3)},
        metric="none", accuracy_basis=f"parity with the fp32 file on {basis}", metric_before=None, metric_after=None,
        drop_points=None, top1_agreement=verdict["top1_agreement"], relative_error=verdict["relative_error"],
        latency_ms_b1={k: ms[k] for k in ms}, speedup_vs_eager_b1=None, speedup_vs_fp32_b1=speedup,
        fp32_reference=best_ref, int8_worthwhile=speedup >= 1.1,
        int8_verdict=None if speedup >= 1.1 else f"int8 brings nothing here ({speedup:.2f}x over the fp32 file on "
                                                  f"{best_ref.removesuffix(' fp32')}): ship the fp32 file",
        threads=1, layers_int8=counts["layers_int8"], layers_float=counts["layers_float"],
        float_layers=tuple(counts["float_layers"]), kept_float=(), float_why=counts.get("float_why"),
        search={"stopped": "an ONNX file's candidates are judged as built (no per-layer search)"},
        calibration={"samples": calib_samples, "source": basis, "method":
                     str(cfg.calibration_method), **({"inputs": used} if used else {})},
        verification={"shapes": {**sweep, "artifact": str(artifact)},
                      "task": {"agreement": {"criterion": verdict["criterion"],
                                             "failure": None if verdict["passed"] else str(verdict["drop"])}}},
        verified=bool(sweep.get("passed")) and verdict["passed"], notes=tuple(notes), seconds=round(seconds, 2))
