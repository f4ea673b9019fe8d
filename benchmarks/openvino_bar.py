"""Issue 16's bar: ResNet-18 at 224x224 on CPU, every runtime a user could pick, timed interleaved in one process.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/openvino_bar.py [--budget-s 8] [--threads 1,2] [--batch 1,8]

One untrained ResNet-18 (dlopt's `resnet18`, input_size 224, seed 0) in a dlopt run; its ONNX file written once by
dlopt's exporter (dynamo). Variants, each with the same thread count:
- eager fp32; torch.compile (default mode, freezing on: what `dlopt bench`'s compile backend does);
- ONNX Runtime fp32 on that ONNX file (dlopt's session options: full graph optimisation, intra-op = threads);
- OpenVINO fp32 on that ONNX file: f32 precision hint (dlopt's setting), and the plugin's default precision,
  which on CPUs with AMX / AVX512-BF16 silently runs bf16 (so it is not an fp32 number; labelled as such);
- ONNX Runtime `quantize_static` with its defaults (QDQ, 8 calibration samples);
- OpenVINO + NNCF `quantize` with its defaults (64 calibration samples);
- `dlopt quantize --method auto` on the same run (its default: ONNX Runtime and OpenVINO candidates measured
  together, the fastest within budget shipped), and `dlopt quantize --method auto --backend openvino` (NNCF
  through dlopt, the same calibration data).
All three int8 paths calibrate on the same data: the run's default dataset (sklearn digits, upscaled to 224), 64
training samples (ORT's by-hand run reads the first 8). Timing inputs and the agreement check use held-out test
samples of it; the weights are untrained, so agreement with eager fp32 (top-1, relative L2 error) stands in for
accuracy. --reuse keeps an earlier run's ONNX file and dlopt int8 file under --root (dlopt's auto takes minutes).
Writes benchmarks/results/openvino_bar.json and openvino_bar.md. Medians in ms, ratios against ORT fp32.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "unknown")


def cpu_flags() -> list[str]:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    flags = next((ln.split(":", 1)[1].split() for ln in out.splitlines() if ln.startswith("Flags")), [])
    return sorted(f for f in flags if f.startswith(("amx", "avx512_bf16", "avx512_vnni", "avx_vnni")))


def samples(target: Any, split: str, n: int) -> Any:
    """(n, 3, 224, 224): the run's data (digits upscaled, as dlopt quantize calibrates on it)."""
    import torch

    from dlopt.quantize.calibrate import split_inputs
    from dlopt.tasks.evaluator import evaluator_for

    batches = split_inputs(evaluator_for(target.run, target.spec, target.config), target.spec, split, n, 0)
    return torch.cat([b[0] for b in batches])[:n]


def dlopt_int8(target: Any, reuse: bool, log: Any, backend: str = "onnxruntime") -> tuple[Path, dict[str, Any]]:
    """`dlopt quantize --method auto [--backend openvino]` on the run (stage int8, or int8-openvino). Without
    --backend, auto measures its default backends (ONNX Runtime and OpenVINO together) and ships the fastest."""
    import json

    from dlopt.contract.target import TargetOptions
    from dlopt.quantize import QuantizeConfig, run_quantize

    name = "int8" if backend == "onnxruntime" else f"int8-{backend}"
    old = next(iter(sorted((target.run.path / name).glob("model.*[!n]"))), None)  # model.onnx / model.xml
    if reuse and old is not None:
        log(f"reusing {old}")
        return old, json.loads((old.parent / "quantize_report.json").read_text())
    t0 = time.time()
    forced = {} if backend == "onnxruntime" else {"backend": backend, "auto_backends": (backend,)}
    q = run_quantize(TargetOptions(name=str(target.run.path)),
                     QuantizeConfig(method="auto", max_drop=100.0, max_fallback_layers=0, calibration_samples=64,
                                    name=name, **forced), log)
    log(f"dlopt quantize --method auto{'' if not forced else ' --backend ' + backend} in {time.time() - t0:.0f}s: {q.result['recipe']['label']}")
    return q.artifact, q.result


def build_artifacts(root: Path, reuse: bool, log: Any) -> dict[str, Any]:
    """The run, its model, the ONNX file, and the three int8 files (ORT static, NNCF, dlopt auto)."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    from dlopt.contract.target import TargetOptions, resolve_target
    from dlopt.core.runs import latest_run
    from dlopt.export import ExportConfig, export_model
    from dlopt.models.registry import entry_module
    from dlopt.models.spec import ExportFormat
    from dlopt.runtime.openvino import quantize_ir

    prev = latest_run(root) if reuse and root.is_dir() else None
    name = str(prev.path) if prev else "resnet18"
    target = resolve_target(TargetOptions(name=name, root=root, sets=None if prev else {"input_size": 224,
                                                                                         "num_classes": 10}))
    module = entry_module(target.model, target.spec).eval()
    onnx_path = root / "bar" / "model.onnx"
    if not (prev and onnx_path.is_file()):
        t0 = time.time()
        res = export_model(target.model, target.spec, target.config, root / "bar",
                           ExportConfig(formats=(ExportFormat.ONNX,), exporter="dynamo", verify=True))
        log(f"onnx exported and verified ({res.verification['onnx'].passed}) in {time.time() - t0:.0f}s")
    dlopt_path, dlopt_result = dlopt_int8(target, reuse, log)
    dlopt_ov, dlopt_ov_result = dlopt_int8(target, reuse, log, "openvino")
    calib = list(samples(target, "train", 64).split(1))
    name = target.spec.input_names[0]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{name: x.numpy()} for x in calib[:8]])

        def get_next(self) -> dict | None:
            return next(self.it, None)

    t0 = time.time()
    ort_int8 = root / "bar" / "ort_static_int8.onnx"
    quantize_static(str(onnx_path), str(ort_int8), Reader())
    log(f"ORT quantize_static in {time.time() - t0:.0f}s")
    t0 = time.time()
    nncf_xml = quantize_ir(onnx_path, [(x,) for x in calib], root / "bar" / "nncf_int8" / "model.xml", subset_size=64)
    log(f"NNCF quantize in {time.time() - t0:.0f}s")
    return {"module": module, "onnx": onnx_path, "ort_int8": ort_int8, "nncf": nncf_xml, "dlopt_int8": dlopt_path,
            "dlopt_recipe": dlopt_result["recipe"]["label"], "dlopt_auto": dlopt_result.get("auto"),
            "dlopt_ov_int8": dlopt_ov, "dlopt_ov_auto": dlopt_ov_result.get("auto"),
            "test": samples(target, "test", 64)}


def agreement(a: dict[str, Any]) -> dict[str, Any]:
    """Each artifact against eager fp32 on 64 held-out samples: top-1 agreement and relative L2 error."""
    import numpy as np
    import torch

    from dlopt.export import load_artifact
    from dlopt.runtime.openvino import ir_runner

    x = a["test"]
    with torch.inference_mode():
        ref = torch.cat([a["module"](x[i:i + 8]) for i in range(0, len(x), 8)]).numpy()
    runners = {"ORT fp32": load_artifact(a["onnx"], threads=1), "OpenVINO fp32 (f32 hint)": ir_runner(a["onnx"], 1),
               "OpenVINO default precision (bf16 on AMX)": ir_runner(a["onnx"], 1, precision=None),
               "ORT quantize_static int8": load_artifact(a["ort_int8"], threads=1),
               "OpenVINO+NNCF int8": ir_runner(a["nncf"], 1),
               "dlopt quantize auto": load_artifact(a["dlopt_int8"], threads=1),
               "dlopt quantize auto --backend openvino": load_artifact(a["dlopt_ov_int8"], threads=1)}
    out = {}
    for k, run in runners.items():
        got = np.concatenate([first_output(run(x[i:i + 8])) for i in range(0, len(x), 8)])
        out[k] = {"top1_agreement": float((got.argmax(-1) == ref.argmax(-1)).mean()),
                  "rel_l2": float(np.linalg.norm(got - ref) / np.linalg.norm(ref))}
    return out


def first_output(out: Any) -> Any:
    import numpy as np

    if hasattr(out, "to_tuple"):  # OpenVINO's OVDict
        out = out.to_tuple()
    if isinstance(out, (list, tuple)):
        out = out[0]
    return np.asarray(out.detach() if hasattr(out, "detach") else out, dtype=np.float32)


def prepare_all(a: dict[str, Any], inputs: tuple, threads: int) -> dict[str, Any]:
    """name -> (callable, setup s, first-call s); a variant that fails is recorded as its error string."""
    from dlopt.bench.backends import Prepared, Variant, prepare
    from dlopt.bench.config import Backend, Device
    from dlopt.runtime.openvino import as_arrays, compile_ir

    def ov_default() -> Prepared:
        t0 = time.perf_counter()
        req = compile_ir(a["onnx"], threads, precision=None).create_infer_request()
        return Prepared(functools.partial(req.infer, as_arrays(inputs), share_inputs=True),
                        time.perf_counter() - t0, None, "")

    dlopt_backend = {".onnx": Backend.ONNXRUNTIME, ".xml": Backend.OPENVINO}.get(a["dlopt_int8"].suffix, Backend.EAGER)
    plans = {
        "eager fp32": lambda: prepare(Variant("e", Backend.EAGER, module=a["module"]), inputs, Device.CPU, threads),
        "torch.compile fp32": lambda: prepare(Variant("c", Backend.COMPILE, module=a["module"]), inputs, Device.CPU,
                                              threads),
        "ORT fp32": lambda: prepare(Variant("o", Backend.ONNXRUNTIME, path=a["onnx"]), inputs, Device.CPU, threads),
        "OpenVINO fp32 (f32 hint)": lambda: prepare(Variant("v", Backend.OPENVINO, path=a["onnx"]), inputs,
                                                    Device.CPU, threads),
        "OpenVINO default precision (bf16 on AMX)": ov_default,
        "ORT quantize_static int8": lambda: prepare(Variant("q", Backend.ONNXRUNTIME, path=a["ort_int8"]), inputs,
                                                    Device.CPU, threads),
        "OpenVINO+NNCF int8": lambda: prepare(Variant("n", Backend.OPENVINO, path=a["nncf"]), inputs, Device.CPU,
                                              threads),
        "dlopt quantize auto": lambda: prepare(Variant("d", dlopt_backend, path=a["dlopt_int8"]), inputs,
                                               Device.CPU, threads),
        "dlopt quantize auto --backend openvino": lambda: prepare(Variant("dv", Backend.OPENVINO,
                                                                          path=a["dlopt_ov_int8"]), inputs,
                                                                  Device.CPU, threads),
    }
    out: dict[str, Any] = {}
    for name, plan in plans.items():
        try:
            p = plan()
            t0 = time.perf_counter()
            (p.first or p.fn)()
            out[name] = (p.fn, p.setup_s, time.perf_counter() - t0)
        except Exception as exc:  # one runtime failing is a row saying why, not a lost benchmark
            out[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return out


def measure_cell(a: dict[str, Any], threads: int, batch: int, budget_s: float, log: Any) -> dict[str, Any]:
    import torch

    from dlopt.bench.config import BenchConfig
    from dlopt.bench.stats import summarize
    from dlopt.bench.timing import round_robin, warm_up

    torch.set_num_threads(threads)
    torch._dynamo.reset()  # inductor bakes the thread count into its kernels: compile again per setting
    inputs = (a["test"][:batch].contiguous(),)
    with torch.inference_mode():
        prepared = prepare_all(a, inputs, threads)
        ok = {k: v for k, v in prepared.items() if not isinstance(v, str)}
        est = {k: warm_up(fn, 3).estimate_s for k, (fn, _, _) in ok.items()}
        cfg = BenchConfig(budget_s=budget_s, min_calls=10, block_s=0.2)
        series = round_robin({k: v[0] for k, v in ok.items()}, est, cfg)
        rows = {}
        for k, (fn, setup, first) in ok.items():
            st = summarize(series[k].times)
            rows[k] = {"median_ms": round(st.median_ms, 3), "iqr_ms": round(st.iqr_ms, 3), "n": st.n,
                       "stop": str(series[k].stop), "setup_s": round(setup, 3), "first_call_s": round(first, 3)}
    base = rows.get("ORT fp32", {}).get("median_ms")
    for r in rows.values():
        r["speedup_vs_ort_fp32"] = round(base / r["median_ms"], 3) if base else None
    failed = {k: v for k, v in prepared.items() if isinstance(v, str)}
    log(f"threads {threads} batch {batch}: " + ", ".join(f"{k} {r['median_ms']:.2f}" for k, r in rows.items()))
    return {"threads": threads, "batch": batch, "rows": rows, "failed": failed, "loadavg": list(os.getloadavg())}


def markdown(result: dict[str, Any]) -> str:
    cells = result["cells"]
    names = list(dict.fromkeys(k for c in cells for k in c["rows"]))
    head = " | ".join(f"t{c['threads']} b{c['batch']}" for c in cells)
    lines = [f"# OpenVINO bar: ResNet-18 224x224 (untrained), {result['cpu']['model']}",
             "", result["note"], "",
             f"Median ms (x = speed-up over ORT fp32 in the same cell); tN bM = N threads, batch M. "
             f"Load average {result['loadavg']}. Agreement with eager fp32 on 64 held-out samples (eager is the "
             "reference; torch.compile not checked there).", "",
             f"| variant | {head} | top-1 agreement | rel. L2 error |", "|---" * (len(cells) + 3) + "|"]
    agree = result.get("agreement_vs_eager_fp32", {})
    for n in names:
        vals = [(c["rows"].get(n) or {}) for c in cells]
        ag = agree.get(n)  # eager is the reference; torch.compile is not in the agreement check
        tail = f"{ag['top1_agreement']:.2f} | {ag['rel_l2']:.2g}" if ag else "- | -"
        lines.append(f"| {n} | " + " | ".join(f"{v['median_ms']:.2f} ({v['speedup_vs_ort_fp32']:.2f}x)" if v else "-"
                                              for v in vals) + f" | {tail} |")
    lines += ["", f"dlopt auto recipe: {result['dlopt_recipe']}", "", "## Verdict against the bar", "",
              result["verdict"]["rule"], "", "| cell | dlopt auto ms | best by hand | ms | ratio | verdict |",
              "|---|---|---|---|---|---|"]
    for c in result["verdict"]["cells"]:
        lines.append(f"| t{c['threads']} b{c['batch']} | {c['dlopt_ms']} | {c['best_by_hand']} | {c['best_ms']} | "
                     f"{c['ratio']} | {c['verdict']} |")
    lines += ["", f"Overall: {result['verdict']['overall']}", ""]
    return "\n".join(lines)


def verdict(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Per cell: dlopt auto's shipped file against the faster of the two by-hand int8 runs (ratio = dlopt / best,
    <= 1 meets the bar; within 5% is called noise on this shared machine, not a pass)."""
    rows = []
    for c in cells:
        mine = c["rows"].get("dlopt quantize auto", {}).get("median_ms")
        hand = {k: c["rows"][k]["median_ms"] for k in ("ORT quantize_static int8", "OpenVINO+NNCF int8")
                if k in c["rows"]}
        if mine is None or not hand:
            rows.append({"threads": c["threads"], "batch": c["batch"], "verdict": "not measured"})
            continue
        best = min(hand, key=hand.get)
        ratio = round(mine / hand[best], 3)
        rows.append({"threads": c["threads"], "batch": c["batch"], "dlopt_ms": mine, "best_by_hand": best,
                     "best_ms": hand[best], "ratio": ratio,
                     "verdict": "meets" if ratio <= 1.0 else ("within 5% (noise), not met" if ratio <= 1.05
                                                              else "misses")})
    met = sum(r["verdict"] == "meets" for r in rows)
    return {"rule": "Bar: the file `dlopt quantize --method auto` ships is at least as fast as the best of ORT "
                    "quantize_static (defaults) and OpenVINO+NNCF (defaults) on the same ONNX file; ratio = dlopt ms "
                    "/ best by-hand ms (<= 1 meets it). Untrained weights: agreement with fp32 stands in for accuracy.",
            "cells": rows, "overall": f"meets the bar in {met} of {len(rows)} cells"}


def main() -> None:
    import onnxruntime
    import openvino
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=8.0, help="interleaved timing budget per (threads, batch)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--root", type=Path, default=None, help="where the run goes (default: a temporary directory)")
    ap.add_argument("--reuse", action="store_true", help="reuse the run, ONNX file and dlopt int8 file under --root")
    args = ap.parse_args()
    t_start = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t_start:6.0f}s] {msg}", flush=True)

    load_start = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        a = build_artifacts(args.root or Path(tmp), args.reuse, log)
        agree = agreement(a)
        log(f"agreement with eager fp32: {agree}")
        cells = [measure_cell(a, t, b, args.budget_s, log) for t in map(int, args.threads.split(","))
                 for b in map(int, args.batch.split(","))]
    result = {"created": datetime.now(UTC).isoformat(timespec="seconds"),
              "cpu": {"model": cpu_model(), "flags": cpu_flags(), "cpus": os.cpu_count()},
              "loadavg": {"start": load_start, "end": list(os.getloadavg())},
              "note": "Interleaved round-robin in one process (dlopt.bench.timing), every runtime at the same thread "
                      "count. The machine was shared with other agents' jobs while this ran (see the load averages): "
                      "absolute times are noisy, ratios within a cell are what to read.",
              "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                           "openvino": openvino.__version__},
              "agreement_vs_eager_fp32": agree, "dlopt_recipe": a["dlopt_recipe"], "dlopt_auto": a["dlopt_auto"],
              "dlopt_openvino_auto": a["dlopt_ov_auto"],
              "budget_s": args.budget_s, "cells": cells, "verdict": verdict(cells),
              "seconds": round(time.time() - t_start)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "openvino_bar.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (RESULTS / "openvino_bar.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
