"""bf16 on OpenVINO against fp32 and NNCF int8: torchvision mobilenet_v2, batch 1, one thread, interleaved.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/openvino_bf16.py [--sizes 64,96] [--budget-s 20] [--repeats 3]

mobilenet_v2 (torchvision, num_classes=10, random weights, seed 0; its BatchNorm statistics re-estimated on 16
batches of N(0,1) inputs, else activations vanish to ~1e-9 and NNCF int8 outputs zeros) converted to an fp32 IR
(dlopt.runtime.openvino.convert_module + save_ir). From it: the same IR marked bf16 (mark_ir: what `dlopt quantize
--method bf16 --backend openvino` writes), `nncf.quantize` with its defaults (64 N(0,1) calibration samples) and
that int8 IR marked bf16 (int8+bf16: its float parts in bf16), and NNCF int8 with 12 convolutions left in float
(its ignored scope, as dlopt's accuracy fallback keeps layers), plain and marked bf16. Every file is timed through
dlopt's own OpenVINO bench backend (dlopt.optimize.timing.Timer, the round-robin loop `dlopt optimize` times
with), all six interleaved in one process, `--repeats` rounds of `--budget-s` each; the fp32 and int8 IRs compile
with dlopt's f32 hint, the marked ones in bf16 as their marker says. Agreement with the eager fp32 module (top-1,
relative L2 error) on 64 other N(0,1) inputs; the compiled graphs' convolution and fully connected layers
counted by the precision they run in. Writes benchmarks/results/openvino_bf16.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
VARIANTS = ("fp32 (f32 hint)", "bf16 (marked fp32 IR)", "NNCF int8 defaults (f32 hint)", "int8+bf16 (marked int8 IR)",
            "int8, 12 convs kept float (f32 hint)", "int8+bf16, 12 convs kept float")
KEEP = 12  # convolutions left out of NNCF's int8 (its ignored scope), as dlopt's accuracy fallback keeps layers float


def build(size: int, folder: Path) -> tuple[Any, dict[str, Path]]:
    """The eager module and the six IRs at `size` x `size`."""
    import torch
    import torchvision

    from dlopt.runtime.openvino import convert_module, mark_ir, nncf_quantize, quantize_ir, require_openvino, save_ir

    torch.manual_seed(0)
    module = torchvision.models.mobilenet_v2(num_classes=10)
    for m in module.modules():  # cumulative running statistics, re-estimated below
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():  # torchvision's init with BN's identity statistics: activations vanish (~1e-9)
        for _ in range(16):
            module(torch.randn(8, 3, size, size))
    module.eval()
    x = (torch.randn(1, 3, size, size),)
    fp32 = save_ir(convert_module(module, x), folder / "fp32" / "model.xml")
    calib = [(torch.randn(1, 3, size, size),) for _ in range(64)]
    int8 = quantize_ir(fp32, calib, folder / "int8" / "model.xml")
    model = require_openvino().Core().read_model(str(fp32))
    convs = [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() in ("Convolution",
                                                                                        "GroupConvolution")]
    mixed = save_ir(nncf_quantize(model, calib, ignored=tuple(convs[1:1 + KEEP])), folder / "mixed" / "model.xml")
    files = dict(zip(VARIANTS, (fp32, mark_ir(fp32, folder / "bf16" / "model.xml", "bf16"), int8,
                                mark_ir(int8, folder / "int8-bf16" / "model.xml", "bf16"), mixed,
                                mark_ir(mixed, folder / "mixed-bf16" / "model.xml", "bf16")), strict=True))
    return module, files


def agreement(module: Any, files: dict[str, Path], size: int) -> dict[str, dict[str, float]]:
    import numpy as np
    import torch

    from dlopt.export import load_artifact

    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(1, 3, size, size, generator=g) for _ in range(64)]
    with torch.inference_mode():
        ref = np.concatenate([module(x).numpy() for x in xs])
    out = {}
    for name, path in files.items():
        run = load_artifact(path, threads=1)
        got = np.concatenate([run(x)[0].numpy() for x in xs])
        out[name] = {"top1_agreement": float((got.argmax(-1) == ref.argmax(-1)).mean()),
                     "rel_l2": float(np.linalg.norm(got - ref) / np.linalg.norm(ref))}
    return out


def kernels(files: dict[str, Path]) -> dict[str, dict[str, int]]:
    """What each file compiles to here: its convolution / fully connected layers counted by runtime precision (the
    compiled graph's rt_info), e.g. {"u8": 52, "bf16": 1}."""
    from collections import Counter

    from dlopt.runtime.openvino import compile_ir

    out = {}
    for name, path in files.items():
        ops = compile_ir(path, threads=1).get_runtime_model().get_ops()
        info = [op.get_rt_info() for op in ops]
        out[name] = dict(Counter(i["runtimePrecision"].astype(str) for i in info
                                 if i["layerType"].astype(str) in ("Convolution", "FullyConnected")))
    return out


def measure(module: Any, files: dict[str, Path], size: int, budget_s: float, repeats: int) -> dict[str, Any]:
    import torch

    from dlopt.optimize.config import Runtime
    from dlopt.optimize.timing import Timed, Timer

    timer = Timer(module, (torch.randn(1, 3, size, size),))
    entries = {name: Timed(Runtime.OPENVINO, 1, path) for name, path in files.items()}
    rounds = [timer.time(entries, budget_s) for _ in range(repeats)]
    out: dict[str, Any] = {}
    for name in files:
        p50s = [r[name].p50_ms for r in rounds]
        out[name] = {"p50_ms": round(statistics.median(p50s), 4), "p50_ms_rounds": p50s,
                     "iqr_pct_rounds": [r[name].iqr_pct for r in rounds], "calls": sum(r[name].calls for r in rounds)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64,96")
    ap.add_argument("--budget-s", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import nncf
    import openvino
    import torch

    from dlopt.core.environment import fingerprint
    from dlopt.optimize.space import bf16_cpu

    torch.set_num_threads(1)
    t0, load0 = time.time(), list(os.getloadavg())
    rows = []
    with tempfile.TemporaryDirectory(prefix="dlopt-ov-bf16-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            module, files = build(size, Path(tmp) / str(size))
            timing = measure(module, files, size, args.budget_s, args.repeats)
            fp32, int8 = timing[VARIANTS[0]]["p50_ms"], timing[VARIANTS[2]]["p50_ms"]
            rows.append({"size": size, "timing": timing, "agreement": agreement(module, files, size),
                         "layers_by_precision": kernels(files),
                         "vs_fp32": {k: round(fp32 / v["p50_ms"], 3) for k, v in timing.items()},
                         "vs_nncf_int8": {k: round(int8 / v["p50_ms"], 3) for k, v in timing.items()}})
            print(size, {k: v["p50_ms"] for k, v in timing.items()}, flush=True)
    out = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "fingerprint": fingerprint(),
           "versions": {"openvino": openvino.__version__, "nncf": nncf.__version__}, "threads": 1, "batch": 1,
           "bf16_cpu": bf16_cpu(), "keep_float": KEEP,
           "model": "torchvision mobilenet_v2, num_classes=10, random weights (seed 0), BN statistics re-estimated",
           "args": vars(args), "loadavg": {"start": load0, "end": list(os.getloadavg())},
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "seconds": round(time.time() - t0, 1),
           "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "openvino_bf16.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
