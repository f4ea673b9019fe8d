"""Why fp32 exports of deep torchvision models miss `atol 1e-5 + rtol 1e-4*|ref|`: float32 accumulation order.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tv_tolerance.py [MODEL ...]

For each model (seeded unit-scale weights, as benchmarks/tv_matrix.py writes them; 224x224, batch 2) it measures
the error of eager float32 itself against a float64 run of the same weights (the exact answer up to 1e-16), and
the error of a frozen TorchScript trace and of ONNX Runtime (legacy exporter, for speed) against eager float32.
If the artifacts differ from eager by about as much as eager differs from the exact answer, the difference is
float32 rounding in another summation order -- not an export bug -- and it grows with the number of
accumulated terms (depth x width), not with each logit's own size: a logit near zero is the sum of terms of
the size of the output's RMS. Writes benchmarks/results/tv_tolerance.json.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def stats(ref, out) -> dict:
    ref, out = ref.double(), out.double()
    err = (out - ref).abs()
    rms = float(ref.pow(2).mean().sqrt())
    small = ref.abs() < 0.1 * rms  # logits near zero: their own size says nothing about their error
    old = float((err - 1e-4 * ref.abs()).max())  # atol needed under atol + rtol*|ref|
    new = float((err - 1e-4 * ref.abs().clamp_min(rms)).max())  # under atol + rtol*max(|ref|, RMS)
    return {"max_abs": float(err.max()), "err_rms_over_ref_rms": float(err.pow(2).mean().sqrt()) / rms,
            "max_abs_near_zero": float(err[small].max()) if small.any() else None, "ref_rms": rms,
            "needed_atol_old": max(old, 0.0), "needed_atol_rms_floor": max(new, 0.0)}


def measure(name: str) -> dict:
    import onnxruntime as ort
    import torch
    from safetensors.torch import load_file
    from tv_matrix import seeded_weights

    from dlopt.models.registry import build_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.safetensors"
        seeded_weights(name, 224, path)
        model, _, _ = build_model(f"torchvision:{name}", input_size=224)
        model.load_state_dict(load_file(str(path)), strict=False)
    model.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(x)
        exact = model.double()(x.double())
        model.float()
        ts = torch.jit.freeze(torch.jit.trace(model, x)).eval()
        ts_out = ts(x)
    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["x"])
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    ort_out = torch.from_numpy(sess.run(None, {"x": x.numpy()})[0])
    return {"model": name, "eager_fp32_vs_fp64": stats(exact, ref), "torchscript_vs_eager": stats(ref, ts_out),
            "onnxruntime_vs_eager": stats(ref, ort_out), "onnxruntime_vs_fp64": stats(exact, ort_out)}


def main() -> None:
    import torch

    torch.set_num_threads(1)
    names = sys.argv[1:] or ["resnet18", "resnet50", "wide_resnet50_2"]
    out = ROOT / "benchmarks" / "results" / "tv_tolerance.json"
    rows = []
    for name in names:
        rows.append(measure(name))
        print(json.dumps(rows[-1]), flush=True)
        out.write_text(json.dumps({"torch": torch.__version__, "threads": 1, "input": [2, 3, 224, 224],
                                   "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
