"""The torchvision model matrix: every stage of dlopt run as a user runs it, per model, pass / fail / timeout.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tv_matrix.py [MODEL ...] [--input-size 224] [--timeout-s 600]

For each torchvision classification model (the list Torch-Pruning benchmarks), with non-degenerate outputs:
no pretrained weights are in the local hub cache here (and nothing downloads), so the script writes *seeded*
weights whose outputs have unit scale -- torchvision's own initialisation (seed 0), BatchNorm running
statistics re-estimated on random N(0,1) inputs (so no activation collapses to ~1e-18 as efficientnet_b0's do
with fresh statistics), and the classifier scaled so the logits have RMS 1 -- into a .safetensors state dict,
then runs the `dlopt` CLI in subprocesses, each with a time limit and a memory watchdog:

    export   dlopt export torchvision:M --weights W.safetensors --format all   (export + verify of each format)
    reload   dlopt export --checkpoint RUN/model.json --format pt2           (a saved model is loaded again)
    prune    dlopt prune  torchvision:M --weights W --ratio 0.3 --finetune-epochs 0
    export_pruned  dlopt export --checkpoint PRUNED/model.json --format onnx
    quantize dlopt quantize RUN --method static --backend onnxruntime --calibration-samples 8 --max-drop 100
             (int8: built, runs, verified; --max-drop 100 skips the accuracy search, which on a random-weight
             1000-class head runs its 300 s budget; agreement with fp32 is recorded)
    bench    dlopt bench RUN --backend eager,onnxruntime --batch-sizes 1 --iterations 5 --warmup 1

Per model and stage it records pass / fail / timeout, seconds, exit code, and for every failure the line the
product printed. JSON goes to benchmarks/results/tv_matrix.json after every model (a cut-off run keeps what
it measured), markdown to benchmarks/results/tv_matrix.md and between the markers in docs/export.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "export.md"
START, END = "<!-- tv-matrix:start -->", "<!-- tv-matrix:end -->"
DLOPT = str(Path(sys.executable).parent / "dlopt")
MODELS = ("mobilenet_v3_small", "shufflenet_v2_x0_5", "mnasnet0_5", "squeezenet1_0", "mobilenet_v2",
          "regnet_x_400mf", "efficientnet_b0", "googlenet", "resnet50", "densenet121", "resnext50_32x4d",
          "convnext_tiny", "swin_t", "vgg11", "wide_resnet50_2", "vit_b_16")
FORMATS = ("onnx", "torchscript", "pt2", "openvino")
STAGES = ("export", *(f"verify_{f}" for f in FORMATS), "reload", "prune", "export_pruned", "quantize", "bench")
MEMORY_LIMIT_GB = 8.0  # the machine has 23 GB shared by everyone: a stage above this is killed and recorded


def seeded_weights(model_name: str, size: int, path: Path) -> dict:
    """torchvision init (seed 0; a zero-initialised head gets a seeded normal one), BatchNorm statistics from random
    inputs, logits scaled to RMS 1."""
    import torch
    from safetensors.torch import save_file

    from dlopt.models.registry import build_model

    torch.manual_seed(0)
    model, _, _ = build_model(f"torchvision:{model_name}", input_size=size)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    x = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        if bns:
            model.train()
            for chunk in x.split(4):
                model(chunk)
        model.eval()
        last = _last_layer(model, x[:2])
        if not last.weight.any():  # vit_b_16's head starts at zero (all logits 0): a seeded normal init instead
            seeded = torch.Generator().manual_seed(3)
            torch.nn.init.normal_(last.weight, std=last.weight[0].numel() ** -0.5, generator=seeded)
        out = model(x)
        rms_before = float(out.float().pow(2).mean().sqrt())
        last.weight.mul_(1.0 / rms_before)
        if last.bias is not None:
            last.bias.mul_(1.0 / rms_before)
        rms = float(model(x).float().pow(2).mean().sqrt())
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    return {"batchnorms": len(bns), "logit_rms_before_scaling": rms_before, "logit_rms": rms,
            "scaled_layer": type(last).__name__}


def _last_layer(model, x):
    """The last Linear/Conv run in a forward pass: the classifier whose scale sets the logits'."""
    import torch

    called: list = []
    hooks = [m.register_forward_hook(lambda mod, i, o: called.append(mod)) for m in model.modules()
             if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return called[-1]


def run_cli(args: list[str], cwd: Path, timeout_s: float) -> dict:
    """One dlopt command: status, exit code, seconds, peak RSS, stdout (JSON) and the line it printed last."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([DLOPT, *args], cwd=cwd, stdout=out, stderr=err, env=env, start_new_session=True)
        status, peak = None, 0.0
        while proc.poll() is None:
            peak = max(peak, _rss_gb(proc.pid))
            if time.perf_counter() - t0 > timeout_s:
                status = "timeout"
            elif peak > MEMORY_LIMIT_GB:
                status = "memory"
            if status:
                os.killpg(proc.pid, 9)
                proc.wait()
                break
            time.sleep(0.5)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    rc = proc.returncode
    status = status or ("pass" if rc == 0 else "fail")
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    said = [ln for ln in lines if ln.startswith(("error", "internal error"))]
    line = said[-1] if said else (lines[-1] if lines else "")
    if status == "timeout":
        line = f"killed after {timeout_s:.0f} s"
    elif status == "memory":
        line = f"killed: resident memory above {MEMORY_LIMIT_GB:.0f} GB"
    return {"status": status, "exit_code": rc, "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_gb": round(peak, 2), "line": line[:400] if status != "pass" else "", "stdout": stdout}


def _rss_gb(pid: int) -> float:
    try:
        for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def _json(stdout: str) -> dict:
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        return {}


def measure(name: str, size: int, timeout_s: float, work: Path, quantize_timeout_s: float | None = None) -> dict:
    arch = f"torchvision:{name}"
    weights = work / f"{name}.safetensors"
    t0 = time.perf_counter()
    info = seeded_weights(name, size, weights)
    info["seconds"] = round(time.perf_counter() - t0, 1)
    common = ["--out", str(work / "runs"), "--input-size", str(size)]
    stages: dict = {}

    def step(stage: str, args: list[str]) -> dict:
        r = run_cli(args, work, quantize_timeout_s if stage == "quantize" and quantize_timeout_s else timeout_s)
        stages[stage] = {k: v for k, v in r.items() if k != "stdout"}
        print(f"  {stage}: {r['status']} ({r['seconds']} s) {r['line']}", flush=True)
        return r

    exp = step("export", ["export", arch, "--weights", str(weights), "--format", "all", "--json", *common])
    data = _json(exp["stdout"])
    run = data.get("run")
    for fmt in FORMATS:
        stages[f"verify_{fmt}"] = _format_cell(data, fmt, exp)
    if run:
        step("reload", ["export", "--checkpoint", f"{run}/model.json", "--format", "pt2", "--json", *common[:2]])
    pr = step("prune", ["prune", arch, "--weights", str(weights), "--ratio", "0.3", "--finetune-epochs", "0",
                        "--json", *common])
    pruned = _json(pr["stdout"]).get("record")
    if pr["status"] == "pass" and pruned:
        step("export_pruned", ["export", "--checkpoint", pruned, "--format", "onnx",
                               "--json", *common[:2]])
    if run:
        q = step("quantize", ["quantize", run, *QUANTIZE_ARGS])
        stages["quantize"].update(parity=_parity(_json(q["stdout"])), checks=_failed_checks(_json(q["stdout"])))
        step("bench", ["bench", run, "--backend", "eager,onnxruntime", "--batch-sizes", "1", "--iterations", "5",
                       "--warmup", "1", "--threads", "1", "--json"])
    return {"model": name, "weights": info, "stages": stages}


QUANTIZE_ARGS = ["--method", "static", "--backend", "onnxruntime", "--calibration-samples", "8", "--max-drop", "100",
                 "--json"]


def measure_int8(name: str, size: int, timeout_s: float, work: Path, quantize_timeout_s: float) -> dict:
    """The quantize column alone, one model: seeded weights, `export --format onnx` (verified: the run quantize
    starts from, whose ONNX it reuses), then quantize with its own limit. Returns the stage cells."""
    arch, weights = f"torchvision:{name}", work / f"{name}.safetensors"
    seeded_weights(name, size, weights)
    exp = run_cli(["export", arch, "--weights", str(weights), "--format", "onnx", "--json", "--out",
                   str(work / "runs"), "--input-size", str(size)], work, timeout_s)
    print(f"  export onnx: {exp['status']} ({exp['seconds']} s) {exp['line']}", flush=True)
    run = _json(exp["stdout"]).get("run")
    if not run:
        return {"export_onnx": {k: v for k, v in exp.items() if k != "stdout"}}
    q = run_cli(["quantize", run, *QUANTIZE_ARGS], work, quantize_timeout_s)
    cell = {k: v for k, v in q.items() if k != "stdout"}
    report = _json(q["stdout"])
    cell.update(parity=_parity(report), checks=_failed_checks(report), notes=report.get("notes"),
                basis=report.get("accuracy_basis"), stage_seconds=report.get("seconds"),
                reason=_reason(report) if q["status"] == "fail" and report else None)
    print(f"  quantize: {q['status']} ({q['seconds']} s) {q['line']} {cell['checks']}", flush=True)
    return {"export_onnx": {k: v for k, v in exp.items() if k != "stdout"}, "quantize": cell}


def _reason(report: dict) -> str:
    """dlopt.quantize.judge.failure_line: the check, figures, basis and what to try, from the report."""
    from dlopt.quantize.judge import failure_line

    return failure_line(report)


def _failed_checks(report: dict) -> list[str]:
    """The verification checks the quantize JSON says failed: "criterion: measured" each."""
    ver = report.get("verification") or {}
    out = [f"{c.get('criterion')}: {c['failure']}" for c in (ver.get("task") or {}).values() if c.get("failure")]
    shapes = ver.get("shapes") or {}
    return out + ([f"shape sweep: {shapes.get('failures') or 'failed'}"] if shapes and not shapes.get("passed") else [])


def _parity(report: dict) -> dict:
    """What the quantize JSON says about int8 vs fp32 (agreement, error), whatever its layout."""
    found: dict = {}

    def walk(obj: object) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k in ("top1_agreement", "relative_error", "agreement", "drop") and isinstance(v, int | float):
                    found.setdefault(k, v)
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    walk(report)
    return found


def _format_cell(data: dict, fmt: str, exp: dict) -> dict:
    """One format's verdict inside `dlopt export --format all`: exported, verified, its error and reason."""
    if not data:
        return {"status": exp["status"], "exit_code": exp["exit_code"], "seconds": None, "line": exp["line"]}
    ver = (data.get("verification") or {}).get(fmt) or {}
    worst = ver.get("worst") or {}
    failure = (data.get("failures") or {}).get(fmt)
    if failure or fmt not in (data.get("artifacts") or {}):
        status, line = "fail", f"export failed: {failure}" if failure else "not exported"
    elif not ver.get("passed"):
        status = "fail"
        line = "; ".join(str(f) for f in ver.get("failures", [])[:2]) or "verification failed"
    else:
        status, line = "pass", ""
    return {"status": status, "exit_code": exp["exit_code"], "seconds": (data.get("seconds") or {}).get(fmt),
            "max_abs": worst.get("max_abs"), "err_over_rms": _ratio(worst), "ref_rms": worst.get("ref_rms"),
            "criterion": ver.get("criterion"), "line": line[:400]}


def _ratio(worst: dict) -> float | None:
    if worst.get("err_rms") is None or not worst.get("ref_rms"):
        return None
    return worst["err_rms"] / worst["ref_rms"]


def markdown(data: dict) -> str:
    head = (f"Measured {data['date']} on {data['machine']} ({data['cpus']} CPUs shared with other jobs, so the "
            f"seconds are loaded-machine figures), torch {data['torch']}, one thread, input {data['input_size']}x"
            f"{data['input_size']}, seeded unit-scale weights, `dlopt` CLI per stage with a "
            f"{data['timeout_s']:.0f} s limit" + (f" ({data['limits']})" if data.get("limits") else "") +
            " (a timeout's line says the limit it hit). Cell: verdict (seconds); failures are listed below "
            "the table with the line dlopt printed.\n\n" + _rerun_note(data))
    rows = ["| model | " + " | ".join(STAGES) + " |", "|---" * (len(STAGES) + 1) + "|"]
    fails = []
    for r in data["results"]:
        cells = []
        for s in STAGES:
            c = r["stages"].get(s)
            if c is None:
                cells.append("-")
                continue
            secs = "" if c.get("seconds") is None else f" ({c['seconds']:.0f}s)"
            cells.append(("pass" if c["status"] == "pass" else f"**{c['status']}**") + secs)
            if c["status"] != "pass":
                said = c.get("line", "").split("; see ")[0].split("; full report")[0]
                parity = ", ".join(f"{k} {v:.3g}" for k, v in (c.get("parity") or {}).items()
                                   if k in ("top1_agreement", "relative_error"))
                checks = "; ".join(c.get("checks") or [])
                fails.append(f"- {r['model']} / {s} (exit {c.get('exit_code')}): {said}"
                             + (f" [failed check: {checks}]" if checks else "")
                             + (f" [int8 vs fp32 on {_basis(c)}: {parity}]" if parity else "")
                             + (f" [flat inputs: {_flat(c)}]" if _flat(c) else "")
                             + (f" [failure_line: {c['reason']}]" if c.get("reason") else ""))
        rows.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    counts = [f"{s} {sum(r['stages'].get(s, {}).get('status') == 'pass' for r in data['results'])}/"
              f"{sum(s in r['stages'] for r in data['results'])}" for s in STAGES]
    body = "\n".join(rows) + "\n\nPassed per stage: " + ", ".join(counts) + "."
    flat = [f"- {r['model']}: {_flat(r['stages']['quantize'])}" for r in data["results"]
            if r["stages"].get("quantize", {}).get("status") == "pass" and _flat(r["stages"]["quantize"])]
    if flat:
        body += ("\n\nint8 passes judged on flat inputs (quantize's note: the held-out digits barely move the fp32 "
                 "output, so agreement there says little):\n" + "\n".join(flat))
    missing = [n for n in data["requested"] if n not in {r["model"] for r in data["results"]}]
    tail = f"\n\nNot run in this measurement: {', '.join(missing)}." if missing else ""
    return head + body + ("\n\nFailures:\n" + "\n".join(fails) if fails else "") + tail


def _flat(cell: dict) -> str:
    """The figures of quantize's flat-inputs note (RMS between inputs, in all, distinct top-1), if it wrote one."""
    note = next((n for n in cell.get("notes") or [] if n.startswith("the held-out inputs barely move")), "")
    return note[note.find("(") + 1:note.find("): relative")] if note else ""


def _basis(cell: dict) -> str:
    basis = cell.get("basis") or ""
    return "held-out digits resized to the input size" if "held-out data" in basis else (basis or "held-out inputs")


def _rerun_note(data: dict) -> str:
    rerun = data.get("int8_rerun")
    if not rerun:
        return ""
    return (f"The quantize column was measured again on {rerun['date']} by `tv_matrix.py --int8-only` (one model at a "
            f"time: export onnx, then quantize with a {rerun['quantize_timeout_s']:.0f} s limit; "
            f"`{rerun['file']}`), for {len(rerun['models'])} model(s): "
            f"{', '.join(rerun['models'])}. Its cells show the quantize stage's wall seconds.\n\n")


def write(data: dict, path: Path) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    md = markdown(data)
    path.with_suffix(".md").write_text(md + "\n")
    if path.name == "tv_matrix.json" and DOC.is_file() and START in DOC.read_text():
        text = DOC.read_text()
        pre, rest = text.split(START, 1)
        DOC.write_text(pre + START + "\n" + md + "\n" + END + rest.split(END, 1)[1])


def combine(parts: list[Path], output: Path) -> None:
    """One matrix from runs of disjoint model lists (e.g. two processes on two cores), in the usual order."""
    runs = [json.loads(p.read_text()) for p in parts]
    data = {**runs[0], "date": max(r["date"] for r in runs), "parts": [str(p) for p in parts], "results": []}
    data["limits"] = "; ".join(f"{', '.join(x['model'] for x in r['results'])}: {r['timeout_s']:.0f} s per stage, "
                               f"quantize {r.get('quantize_timeout_s') or r['timeout_s']:.0f} s" for r in runs)
    data["requested"] = [m for m in MODELS if any(m in r["requested"] for r in runs)] + \
        [m for r in runs for m in r["requested"] if m not in MODELS]
    for r in runs:
        data["results"] += r["results"]
    data["results"].sort(key=lambda r: data["requested"].index(r["model"]))
    write(data, output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--timeout-s", type=float, default=600)
    parser.add_argument("--quantize-timeout-s", type=float, help="a shorter limit for quantize (the slowest stage)")
    parser.add_argument("--merge", action="store_true", help="replace these models' rows in the existing JSON")
    parser.add_argument("--output", type=Path, default=RESULTS / "tv_matrix.json")
    parser.add_argument("--combine", type=Path, nargs="+", help="join the JSON of runs split over processes")
    parser.add_argument("--int8-only", action="store_true",
                        help="rerun the quantize column alone (export onnx + quantize per model, --quantize-timeout-s "
                             "each) into tv_matrix_int8.json, and put its cells into --output's rows")
    parser.add_argument("--int8-json", type=Path, default=RESULTS / "tv_matrix_int8.json",
                        help="where --int8-only writes its own JSON")
    args = parser.parse_args()
    if args.combine:
        return combine(args.combine, args.output)
    if args.int8_only:
        return int8_only(args)
    import torch

    torch.set_num_threads(1)
    names = args.models or list(MODELS)
    data = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "input_size": args.input_size,
            "timeout_s": args.timeout_s, "quantize_timeout_s": args.quantize_timeout_s,
            "memory_limit_gb": MEMORY_LIMIT_GB, "requested": names, "results": []}
    if args.merge and args.output.is_file():
        old = json.loads(args.output.read_text())
        data["results"] = [r for r in old["results"] if r["model"] not in names]
        data["requested"] = [*old["requested"], *(n for n in names if n not in old["requested"])]
    work = Path(tempfile.mkdtemp(prefix="dlopt-tv-matrix-"))
    try:
        for name in names:
            print(f"{name}", flush=True)
            data["results"].append(measure(name, args.input_size, args.timeout_s, work, args.quantize_timeout_s))
            data["results"].sort(key=lambda r: data["requested"].index(r["model"]))
            write(data, args.output)
            shutil.rmtree(work / "runs", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def int8_only(args: argparse.Namespace) -> None:
    """One model at a time; after each, tv_matrix_int8.json and the quantize cell of --output's row are rewritten
    (a cut-off run keeps what finished)."""
    import torch

    torch.set_num_threads(1)
    limit = args.quantize_timeout_s or args.timeout_s
    names, path = args.models or list(MODELS), args.int8_json
    own = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.processor() or
           platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__, "input_size": args.input_size,
           "export_timeout_s": args.timeout_s, "quantize_timeout_s": limit, "quantize_args": QUANTIZE_ARGS,
           "requested": names, "results": [], "file": path.name}
    work = Path(tempfile.mkdtemp(prefix="dlopt-tv-int8-"))
    try:
        for name in names:
            print(name, flush=True)
            own["results"].append({"model": name, "stages": measure_int8(name, args.input_size, args.timeout_s,
                                                                          work, limit)})
            path.write_text(json.dumps(own, indent=2, default=str) + "\n")
            _merge_int8(own, args.output)
            shutil.rmtree(work / "runs", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _merge_int8(own: dict, output: Path) -> None:
    if not output.is_file():
        return
    data = json.loads(output.read_text())
    cells = {r["model"]: r["stages"]["quantize"] for r in own["results"] if "quantize" in r["stages"]}
    for r in data["results"]:
        if r["model"] in cells:
            r["stages"]["quantize"] = cells[r["model"]]
    data["int8_rerun"] = {"date": own["date"], "quantize_timeout_s": own["quantize_timeout_s"],
                          "models": list(cells), "file": own.get("file", "tv_matrix_int8.json")}
    write(data, output)


if __name__ == "__main__":
    main()
