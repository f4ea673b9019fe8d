"""How the ONNX file is read before NNCF quantizes it: `ov.Core().read_model` (what dlopt did before 4cad1c1)
against `dlopt.runtime.openvino.read_model` (`ov.convert_model`: OpenVINO's front-end simplifications).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ov_reader.py [MODEL ...] [--size 224] [--budget-s 10]

Per torchvision model (num_classes=10, random weights, seed 0): dlopt's dynamo ONNX export with a dynamic batch
(dlopt.export.onnx.export_onnx, the file `dlopt quantize` starts from), then `nncf.quantize` with its defaults
(16 N(0,1) calibration samples) on each reading, and the fp32 IR; the three timed interleaved through dlopt's own
OpenVINO bench loop (dlopt.optimize.timing.Timer), batch 1, one thread. Also counted: the quantizable layers that
got int8 weights, and the Sigmoid ops left unfused. Writes benchmarks/results/ov_reader.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "ov_reader.json"
READERS = ("Core.read_model (before 4cad1c1)", "ov.convert_model (dlopt's read_model)")


def one(name: str, size: int, budget_s: float, folder: Path) -> dict[str, Any]:
    import numpy as np
    import openvino as ov
    import torch

    from dlopt.export.onnx import export_onnx
    from dlopt.models.registry import build_model, make_inputs
    from dlopt.optimize.config import Runtime
    from dlopt.optimize.timing import Timed, Timer
    from dlopt.quantize.ov_quant import _quantized
    from dlopt.runtime.openvino import convert_onnx, nncf_quantize, read_model, save_ir

    torch.manual_seed(0)
    module, spec, cfg = build_model(f"torchvision:{name}", {"num_classes": 10}, input_size=size)
    module.eval()
    onnx_path = folder / f"{name}.onnx"
    export_onnx(module, make_inputs(spec, cfg, 2), spec, cfg, onnx_path)
    rng = np.random.default_rng(0)
    calib = [(rng.standard_normal((1, 3, size, size)).astype(np.float32),) for _ in range(16)]
    files = {"fp32": convert_onnx(onnx_path, folder / f"{name}-fp32.xml")}
    counts = {}
    for label, reader in zip(READERS, (lambda p: ov.Core().read_model(str(p)), read_model)):
        q = nncf_quantize(reader(onnx_path), calib, len(calib))
        files[label] = save_ir(q, folder / f"{name}-{len(files)}.xml")
        int8, kept = _quantized(q)
        counts[label] = {"layers_int8": len(int8), "layers_float": len(kept),
                         "sigmoid_ops": sum(op.get_type_name() == "Sigmoid" for op in q.get_ops())}
    timer = Timer(module, (torch.randn(1, 3, size, size),))
    got = timer.time({k: Timed(Runtime.OPENVINO, 1, p) for k, p in files.items()}, budget_s)
    ms = {k: got[k].to_json() for k in files}
    return {"model": name, "size": size, "ms_b1": ms, "int8": counts,
            "speedup_vs_fp32": {k: round(ms["fp32"]["p50_ms"] / ms[k]["p50_ms"], 3) for k in READERS}}


def main() -> None:
    import torch

    from dlopt.core.environment import fingerprint

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["mobilenet_v2", "efficientnet_b0"])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--budget-s", type=float, default=10.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data: dict[str, Any] = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "environment": fingerprint(),
                            "load_before": list(os.getloadavg()), "readers": list(READERS), "rows": []}
    with tempfile.TemporaryDirectory(prefix="ov-reader-") as tmp:
        for name in args.models:
            data["rows"].append(one(name, args.size, args.budget_s, Path(tmp)))
            data["load_after"] = list(os.getloadavg())
            RESULTS.write_text(json.dumps(data, indent=2, default=str) + "\n")
            print(json.dumps(data["rows"][-1]))


if __name__ == "__main__":
    main()
