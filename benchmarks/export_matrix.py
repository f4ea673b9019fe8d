"""Regenerate the export matrix: architecture x format -> exported, max abs error, worst shape, pass, seconds.

    .venv/bin/python benchmarks/export_matrix.py [NAME ...] [--tiny] [--exporter legacy] [--threads 2]

Builds each zoo architecture at its default size (seed 0, untrained), exports it to every format its spec
supports with dlopt.export.export_model, and verifies each artifact (batch sizes 2, 1, 3; two sequence
lengths for sequence models). Results are written after every architecture, so a cut-off run keeps what
it measured: JSON in benchmarks/results/export-matrix[-tiny].json and, for default sizes, markdown between the
markers in docs/export.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "export.md"
START, END = "<!-- export-matrix:start -->", "<!-- export-matrix:end -->"


def measure(name: str, tiny: bool, exporter: str) -> dict:
    import torch

    from dlopt.export import ExportConfig, export_model
    from dlopt.models.registry import build_model

    torch.manual_seed(0)
    model, spec, cfg = build_model(name, tiny=tiny)
    out = Path(tempfile.mkdtemp(prefix=f"dlopt-matrix-{name}-"))
    try:
        t0 = time.perf_counter()
        result = export_model(model, spec, cfg, out, ExportConfig(exporter=exporter))
        total = time.perf_counter() - t0
        sizes = {fmt: p.stat().st_size for fmt, p in result.artifacts.items()}
    finally:
        shutil.rmtree(out, ignore_errors=True)
    formats = {}
    for fmt in ("onnx", "torchscript", "pt2"):
        rep = result.verification.get(fmt)
        worst = rep.worst() if rep else {}
        formats[fmt] = {
            "exported": fmt in result.artifacts, "passed": bool(rep and rep.passed),
            "max_abs": worst.get("max_abs"), "needed_atol": worst.get("needed_atol"), "worst_case": worst.get("case"),
            "seconds": result.seconds.get(fmt), "bytes": sizes.get(fmt), "details": result.details.get(fmt, {}),
            "error": result.failures.get(fmt), "failures": rep.failures()[:5] if rep else [],
            "skipped": next((n for n in result.notes if n.startswith(f"{fmt} skipped")), None),
        }
    return {"arch": name, "tolerance": {"atol": spec.tolerance.atol, "rtol": spec.tolerance.rtol},
            "notes": result.notes, "total_seconds": round(total, 2), "formats": formats}


def _cell(f: dict) -> str:
    if f["skipped"]:
        return "not supported (spec)"
    if not f["exported"]:
        return "**export failed**"
    verdict = "pass" if f["passed"] else "**FAIL**"
    err = "-" if f["max_abs"] is None else f"{f['max_abs']:.1e}"
    how = f" ({f['details'].get('exporter')})" if "exporter" in f["details"] else ""
    return f"{verdict}{how}, {err} @ {f['worst_case']}, {f['seconds']:.1f}s"


def markdown(data: dict) -> str:
    head = (f"Measured {data['date']} on {data['machine']}, torch {data['torch']}, {data['threads']} thread(s), "
            f"{'tiny' if data['tiny'] else 'default'} sizes, ONNX exporter {data['exporter']}. "
            "Cell: verdict (ONNX exporter used), max abs error @ worst shape, export seconds.\n\n")
    rows = ["| architecture | onnx | torchscript | pt2 |", "|---|---|---|---|"]
    for r in data["results"]:
        cells = " | ".join(_cell(r["formats"][f]) for f in ("onnx", "torchscript", "pt2"))
        rows.append(f"| {r['arch']} | {cells} |")
    missing = [n for n in data["requested"] if n not in {r["arch"] for r in data["results"]}]
    tail = f"\n\nNot run in this measurement: {', '.join(missing)}." if missing else ""
    return head + "\n".join(rows) + tail


def write(data: dict, path: Path) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    if not data["tiny"] and DOC.is_file() and START in DOC.read_text():  # the doc shows default sizes only
        text = DOC.read_text()
        pre, rest = text.split(START, 1)
        DOC.write_text(pre + START + "\n" + markdown(data) + "\n" + END + rest.split(END, 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--exporter", default="dynamo", choices=("dynamo", "legacy"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    from dlopt.models.registry import list_names

    torch.set_num_threads(args.threads)
    names = args.names or list_names()
    path = ROOT / "benchmarks" / "results" / f"export-matrix{'-tiny' if args.tiny else ''}.json"
    data = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": f"{platform.machine()} CPU",
            "torch": torch.__version__, "threads": args.threads, "tiny": args.tiny, "exporter": args.exporter,
            "requested": names, "results": []}
    for name in names:
        print(f"{name}…", flush=True)
        data["results"].append(measure(name, args.tiny, args.exporter))
        write(data, path)
        last = data["results"][-1]["formats"]
        print(json.dumps({f: (v["passed"], v["max_abs"], v["seconds"]) for f, v in last.items()}), flush=True)


if __name__ == "__main__":
    main()
