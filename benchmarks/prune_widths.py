"""Why dlopt's default pruned widths are multiples of 8 (and not 16): latency of two 3x3 convolutions (in = out = w)
at ResNet-18's stage shapes on digits (32x32 input: 8x8, 4x4, 2x2, 1x1 feature maps), batch 8, one thread, for the
exact-ratio widths (44, 89, 179, 358), their multiples of 8 and of 16.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/prune_widths.py

Writes benchmarks/results/prune_widths.json. Medians of 60 calls after 5 warm-up calls; a shared machine.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

SHAPES = ((8, (40, 44, 48, 56)), (4, (80, 88, 89, 96)), (2, (168, 176, 179, 184, 192)), (1, (344, 352, 358, 360, 368)))
# the cnn's first two convs (1 -> c1 at 32x32, pool, c1 -> c2 at 16x16): exact (22, 44), multiples of 8 and of 16
PAIRS = ((22, 44), (24, 48), (16, 48), (24, 40), (16, 40), (32, 48), (32, 64))


def _median_ms(fn, calls: int = 60) -> float:
    import numpy as np

    for _ in range(5):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def _one(spatial: int, w: int) -> dict:
    import torch

    from dlopt.runtime.formats import ort_session

    m = torch.nn.Sequential(torch.nn.Conv2d(w, w, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(w, w, 3, padding=1))
    x = torch.randn(8, w, spatial, spatial)
    buf = io.BytesIO()
    torch.onnx.export(m.eval(), (x,), buf, dynamo=False)
    sess = ort_session(buf.getvalue(), threads=1, inter_threads=1)
    feed = {sess.get_inputs()[0].name: x.numpy()}
    with torch.no_grad():
        eager = _median_ms(lambda: m(x))
    ort_ms = _median_ms(lambda: sess.run(None, feed))
    gmacs = 2 * w * w * 9 * spatial * spatial * 8 / 1e9
    return {"eager_ms": round(eager, 4), "ort_ms": round(ort_ms, 4), "ort_gmacs_per_s": round(gmacs / ort_ms * 1e3, 2),
            "eager_gmacs_per_s": round(gmacs / eager * 1e3, 2)}


def _pair(c1: int, c2: int) -> dict:
    import torch

    from dlopt.runtime.formats import ort_session

    nn = torch.nn
    m = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(c1, c2, 3, padding=1),
                      nn.ReLU(), nn.MaxPool2d(2)).eval()
    x = torch.randn(8, 1, 32, 32)
    buf = io.BytesIO()
    torch.onnx.export(m, (x,), buf, dynamo=False)
    sess = ort_session(buf.getvalue(), threads=1, inter_threads=1)
    feed = {sess.get_inputs()[0].name: x.numpy()}
    ms = _median_ms(lambda: sess.run(None, feed), calls=40)
    gmacs = (c1 * 9 * 1024 + c1 * c2 * 9 * 256) * 8 / 1e9
    return {"ort_ms": round(ms, 4), "ort_gmacs_per_s": round(gmacs / ms * 1e3, 2)}


def main() -> None:
    import torch

    torch.set_num_threads(1)
    rows = {f"{s}x{s} w{w}": _one(s, w) for s, widths in SHAPES for w in widths}
    pairs = {f"{c1}->{c2}": _pair(c1, c2) for c1, c2 in PAIRS}
    for k, v in rows.items():
        print(k, v)
    out = {"benchmark": "prune_widths", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "threads": 1, "batch": 8, "loadavg_end": list(os.getloadavg()),
           "note": "shared 2-core machine, other jobs running; eager timings are noisy at 1x1", "rows": rows,
           "narrow_pairs": pairs}
    path = Path(__file__).resolve().parent / "results" / "prune_widths.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
