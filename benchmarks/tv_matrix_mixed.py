"""The torchvision int8 matrix again, now that `dlopt quantize` repairs instead of giving up (mixed precision).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tv_matrix_mixed.py [MODEL ...] [--deadline 03:45]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tv_matrix_mixed.py --merge MODEL ... [--note TEXT]

Same seeded unit-scale weights and ONNX export as `tv_matrix.py --int8-only` (imported from it), then per model

    dlopt quantize RUN --method static --backend onnxruntime --calibration-samples 32 --max-drop 5 --json \
        --search-budget-s 90

a 5-point budget: top-1 agreement >= 0.95 with fp32 on held-out inputs, the bar the earlier matrix verified
against. dlopt's default search time (300 s for the plain layer search, 300 s more for the repair) cannot fit one
model under the 6-minute limit here, so the search budget is SEARCH_BUDGET_S. Rows from before dca6044, when
`dlopt quantize` had no --search-budget-s, got it from a Python that lowers `QuantizeConfig.search_budget_s` first
(WRAP, still in place; the CLI otherwise as a user runs it); since then the option, whose own default overrides
WRAP's, carries it (BUDGET_ARGS).

A model counts toward the target when it gets a verified file within budget that is faster than the fp32 ONNX
file on ONNX Runtime (batch 1, one thread, timed by quantize itself), or when dlopt said which layers made that
impossible, or, for a file within budget that is not faster, which operators cost more in int8 (its ONNX Runtime
profile, `search.slow_ops` / `search.repair.slow_ops`) (`score`). JSON goes to
benchmarks/results/tv_matrix_mixed.json after every model; models not run by --deadline are listed with why.

--merge reruns only the models named and keeps every other row of that file as it was. Each row carries the commit
it was measured at (`measured_at_commit`), a rerun row its previous one under `earlier`, and `runs` lists each run
(date, commit, what it measured, its notes); the summary is counted over the merged rows and says how many come
from which commit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tv_matrix  # noqa: E402  (the seeded weights, the CLI runner and the parity walk are its own)

OUT = tv_matrix.RESULTS / "tv_matrix_mixed.json"
FAILING = ("shufflenet_v2_x0_5", "mnasnet0_5", "mobilenet_v2", "efficientnet_b0", "vgg11", "densenet121",
           "convnext_tiny", "vit_b_16")  # failed the 0.95 agreement in tv_matrix_int8.json; smallest first
PASSING = ("mobilenet_v3_small", "squeezenet1_0", "regnet_x_400mf", "googlenet", "resnet50", "resnext50_32x4d",
           "swin_t", "wide_resnet50_2")
QUANTIZE_ARGS = ["--method", "static", "--backend", "onnxruntime", "--calibration-samples", "32", "--max-drop", "5",
                 "--json"]
SEARCH_BUDGET_S = 90.0  # per search (plain layer search, then repair): two of them plus builds fit 360 s
QUANTIZE_TIMEOUT_S = 360.0
EXPORT_TIMEOUT_S = 240.0
# `python -c` in place of the dlopt script: the same Typer app, with the search budget lowered
WRAP = ("import sys, dataclasses; from dlopt.quantize.config import QuantizeConfig as Q; "
        "names = [f.name for f in dataclasses.fields(Q) if f.init]; d = list(Q.__init__.__defaults__); "
        f"d[names.index('search_budget_s') - (len(names) - len(d))] = {SEARCH_BUDGET_S}; "
        "Q.__init__.__defaults__ = tuple(d); from dlopt.cli.app import main; sys.exit(main())")
# Since dca6044 the CLI passes its own --search-budget-s default (300 s) to QuantizeConfig, which overrides WRAP's
# lowered default: the budget is given as the option too (kept out of QUANTIZE_ARGS, which --merge compares with the
# stored file's: rows from before dca6044 ran at SEARCH_BUDGET_S through WRAP alone).
BUDGET_ARGS = ["--search-budget-s", f"{SEARCH_BUDGET_S:g}"]
REPAIR_KEYS = ("chosen", "within_budget", "stopped", "speed", "latency_ms_b1", "margin", "ranked", "unranked",
               "reserve_s", "seconds")
SLOW_OPS_KEYS = ("line", "failed", "timed_ms_b1", "kernel_ms", "slowest_layers", "ops")
NO_OPERATOR = "no operator kind costs notably more in int8"  # dlopt.quantize.slow_ops.line, naming none


def quantize_cell(run: str, work: Path) -> dict:
    """One quantize command and what its report says: budget, agreement, kept layers, speed, repair."""
    q = tv_matrix.run_cli(["-c", WRAP, "quantize", run, *QUANTIZE_ARGS, *BUDGET_ARGS], work, QUANTIZE_TIMEOUT_S)
    report = tv_matrix._json(q["stdout"])
    report = report.get("result", report) if isinstance(report.get("result"), dict) else report
    saved = Path(run) / "int8" / "quantize_report.json"
    if not report.get("search") and saved.is_file():  # a failed verification prints no JSON; the run keeps it
        report = json.loads(saved.read_text())
    search = report.get("search") or {}
    repair = search.get("repair") or {}
    lat = report.get("latency_ms_b1") or {}
    speedup = report.get("speedup_vs_fp32_b1")
    within = bool(search.get("within_budget")) if search else None
    kept = list(report.get("kept_float") or [])
    line = q["line"]
    # the repaired file's profile, else the plain int8 file's (dlopt profiles only a file no faster than fp32)
    where = next((k for k, rec in (("search.repair.slow_ops", repair), ("search.slow_ops", search))
                  if rec.get("slow_ops")), None)
    slow = repair.get("slow_ops") or search.get("slow_ops") or {}
    return {
        "status": q["status"], "exit_code": q["exit_code"], "seconds": q["seconds"], "peak_rss_gb": q["peak_rss_gb"],
        "within_budget": within, "verified": report.get("verified"), "drop_points": report.get("drop_points"),
        "top1_agreement": report.get("top1_agreement"), "parity": tv_matrix._parity(report),
        "kept_float": kept, "kept_float_count": len(kept), "layers_int8": report.get("layers_int8"),
        "layers_float": report.get("layers_float"),
        "ms_b1": {"int8": lat.get("quantized"), "onnxruntime fp32": lat.get("onnxruntime fp32"),
                  "eager fp32": lat.get("eager fp32")},
        "speedup_vs_fp32_b1": speedup, "faster_than_fp32": speedup > 1.0 if isinstance(speedup, int | float) else None,
        "int8_verdict": report.get("int8_verdict"), "search_stopped": search.get("stopped"),
        "kept_float_modules": [k.get("module") for k in repair.get("kept", [])],
        "search_margin": search.get("margin"),
        "repair": {k: repair.get(k) for k in REPAIR_KEYS if k in repair} if repair else None,
        "repair_attempts": [_attempt(a) for a in repair.get("attempts", [])],
        "slow_ops": {"from": where, **{k: slow.get(k) for k in SLOW_OPS_KEYS if k in slow}} if slow else None,
        "slow_ops_line": slow.get("line"),
        "line": line,
    } | score({"within_budget": within, "verified": report.get("verified"), "speedup_vs_fp32_b1": speedup,
               "kept_float": kept, "repair": repair, "status": q["status"], "line": line,
               "slow_ops_line": slow.get("line")})


def score(q: dict) -> dict:
    """Whether the cell counts toward the target: a verified file within budget faster than fp32 on the same
    runtime (literally > 1.0x; dlopt's own int8-worthwhile bar, 1.1x, beside it), or else dlopt said which layers
    or operators made it impossible: the report names the layers it kept out of int8 (the CLI prints them as the
    "kept out of int8" table) and its repair says the result is not faster than fp32, or that it is over budget
    with the search finished (a repair cut off by its time budget has not shown anything impossible), or the error
    line names one of them (a count of layers is not a name); or the file is verified within budget and dlopt's
    ONNX Runtime profile names the operators that cost more in int8 (`slow_ops_line`; a profile that names none,
    or failed, says nothing). Every reason is a field of dlopt's report, none is the script's."""
    speedup, repair = q.get("speedup_vs_fp32_b1"), q.get("repair") or {}
    ok = bool(q.get("within_budget") and q.get("verified"))
    faster = ok and isinstance(speedup, int | float) and speedup > 1.0
    worthwhile = ok and isinstance(speedup, int | float) and speedup >= 1.1
    gave_up = bool(repair) and not repair.get("within_budget") and "ran out" not in str(repair.get("stopped"))
    said = bool(q.get("kept_float")) and ("not faster" in str(repair.get("speed")) or gave_up)  # not cut by time
    names = any(k in str(q.get("line")) for k in q.get("kept_float") or [])
    ops = ok and bool(q.get("slow_ops_line")) and NO_OPERATOR not in str(q.get("slow_ops_line"))
    reasons = {"repair.speed / repair.stopped with the kept layers": said, "the error line names kept layers": names,
               "slow_ops_line (ONNX Runtime profile)": ops}
    explained = not faster and any(reasons.values())
    how = [k for k, yes in reasons.items() if yes and explained]
    return {"within_budget_and_faster": faster, "within_budget_and_worthwhile": worthwhile,
            "explained_by_dlopt": explained, "explained_how": how,
            "counts": faster or explained}


def _attempt(a: dict) -> dict:
    """One repair attempt without its layer lists (their lengths instead)."""
    keys = ("repair", "recipe", "val_drop", "within_budget", "layers_int8", "seconds", "failed", "skipped")
    out = {k: a[k] for k in keys if k in a}
    return {**out, "keep_float": len(a.get("keep_float") or []), "act16": len(a.get("act16") or [])}


def measure(name: str, size: int, work: Path) -> dict:
    t0, load = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    weights = work / f"{name}.safetensors"
    info = tv_matrix.seeded_weights(name, size, weights)
    exp = tv_matrix.run_cli(["-c", WRAP, "export", f"torchvision:{name}", "--weights", str(weights), "--format",
                             "onnx", "--json", "--out", str(work / "runs"), "--input-size", str(size)],
                            work, EXPORT_TIMEOUT_S)
    print(f"  export onnx: {exp['status']} ({exp['seconds']} s) {exp['line']}", flush=True)
    row = {"model": name, "measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "load_avg_at_start": load,
           "weights": info, "export_onnx": {k: v for k, v in exp.items() if k != "stdout"}}
    run = tv_matrix._json(exp["stdout"]).get("run")
    if run:
        row["quantize"] = q = quantize_cell(run, work)
        print(f"  quantize: {q['status']} ({q['seconds']} s) within={q['within_budget']} "
              f"agree={q['top1_agreement']} kept={q['kept_float_count']} x{q['speedup_vs_fp32_b1']} "
              f"counts={q['counts']} {q['line'][:200]}", flush=True)
    row["counts"] = bool(row.get("quantize", {}).get("counts"))
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def summary(data: dict) -> dict:
    rows, base = data["results"], (data.get("environment") or {}).get("git_commit")
    for r in rows:  # scored again from the stored fields, so a rule change needs no rerun (--rescore)
        if "quantize" in r:
            r["quantize"] |= score(r["quantize"])
        r["counts"] = bool((r.get("quantize") or {}).get("counts"))
    n = {k: sum(bool((r.get("quantize") or {}).get(k)) for r in rows)
         for k in ("within_budget", "verified", "within_budget_and_faster", "within_budget_and_worthwhile",
                   "explained_by_dlopt")}  # within_budget: the search's verdict on the validation split
    by_commit = Counter(r.get("measured_at_commit") or base for r in rows)  # rows from before --merge: the file's
    return {"counted": sum(r["counts"] for r in rows), "of": len(FAILING) + len(PASSING), "measured": len(rows),
            **n, "rows_by_commit": dict(by_commit), "target": ">= 13 of 16"}


def write(data: dict) -> None:
    runs = data.get("runs") or []
    done = set(runs[-1]["measured"]) if runs else {r["model"] for r in data["results"]}
    data["not_run"] = {n: data["why_not_run"] for n in data["requested"] if n not in done}
    data["summary"] = summary(data)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(OUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="default: the 8 int8 failures, then the 8 passes")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--deadline", help="HH:MM UTC: no model starts when less than 6 minutes remain")
    parser.add_argument("--rescore", action="store_true", help="recount the stored JSON; run nothing")
    parser.add_argument("--merge", action="store_true",
                        help="rerun only the models named; keep every other row of the stored JSON as it was")
    parser.add_argument("--note", action="append", default=[], help="a note on this run, kept in its `runs` entry")
    args = parser.parse_args()
    if args.merge and not args.models:
        parser.error("--merge reruns the models named: name at least one")
    if args.rescore:
        return write(json.loads(OUT.read_text()))
    import torch

    from dlopt.core.environment import fingerprint, git_commit

    torch.set_num_threads(1)
    tv_matrix.DLOPT = sys.executable  # every command is `python -c WRAP ...`
    names = list(dict.fromkeys(args.models or [*FAILING, *PASSING]))
    env = fingerprint()
    run = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "git_commit": env["git_commit"],
           "uncommitted": _uncommitted(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
           "quantize_args_added": BUDGET_ARGS, "requested": names, "measured": [], "notes": list(args.note)}
    data = {"date": run["date"], "environment": env, "input_size": args.input_size, "quantize_args": QUANTIZE_ARGS,
            "search_budget_s": SEARCH_BUDGET_S, "quantize_timeout_s": QUANTIZE_TIMEOUT_S,
            "export_timeout_s": EXPORT_TIMEOUT_S, "memory_limit_gb": tv_matrix.MEMORY_LIMIT_GB,
            "earlier": "tv_matrix_int8.json", "requested": names, "results": [],
            "why_not_run": "not reached before the deadline", "runs": []}
    if args.merge:
        data = merged(json.loads(OUT.read_text()), data)
    data["runs"].append(run)
    end = _deadline(args.deadline)
    work = Path(tempfile.mkdtemp(prefix="dlopt-tv-mixed-"))
    try:
        for name in names:
            if end and time.time() + QUANTIZE_TIMEOUT_S > end:
                break
            print(name, flush=True)
            # each model's own commit and local edits: another session may commit while this one runs
            at = {"measured_at_commit": git_commit(), "uncommitted_dlopt": [f for f in _uncommitted()
                                                                            if f.startswith("dlopt/")]}
            put(data["results"], measure(name, args.input_size, work) | at)
            run["measured"].append(name)
            write(data)
            shutil.rmtree(work / "runs", ignore_errors=True)
        write(data)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def merged(old: dict, new: dict) -> dict:
    """The stored file with this run's settings on top: its rows kept as they were, each marked with the commit it
    was measured at (the file's own for rows from before --merge), its runs (or, from before, the file's date,
    commit, requested models and notes as the first run)."""
    base = (old.get("environment") or {}).get("git_commit")
    for r in old["results"]:
        r.setdefault("measured_at_commit", base)
    runs = old.get("runs") or [{"date": old.get("date"), "git_commit": base, "environment": old.get("environment"),
                                "requested": old.get("requested"), "measured": [r["model"] for r in old["results"]],
                                "notes": old.get("notes", [])}]
    settings = ("input_size", "quantize_args", "search_budget_s", "quantize_timeout_s", "export_timeout_s")
    changed = {k: (old.get(k), new[k]) for k in settings if k in old and old[k] != new[k]}
    if changed:  # rows measured otherwise would be counted as one matrix
        raise SystemExit(f"--merge: this run's settings differ from the stored file's: {changed}")
    keep = {k: v for k, v in old.items() if k not in ("notes", "summary", "not_run")}
    return keep | {k: v for k, v in new.items() if k not in ("results", "runs")} | {
        "why_not_run": "not reached before the deadline; its earlier row is kept", "runs": runs}


def put(rows: list[dict], row: dict) -> None:
    """`row` in place of the model's earlier row (kept under `earlier`), or at the end."""
    i = next((i for i, r in enumerate(rows) if r.get("model") == row["model"]), None)
    if i is None:
        rows.append(row)
    else:
        rows[i] = row | {"earlier": rows[i]}


def _uncommitted() -> list[str]:
    """Tracked files that differ from the commit measured at (`git status --porcelain`), so a row at a commit
    with local edits says so."""
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                         cwd=tv_matrix.ROOT, timeout=30)
    return [line[3:] for line in out.stdout.splitlines()]


def _deadline(hhmm: str | None) -> float | None:
    if not hhmm:
        return None
    now = datetime.now(UTC)
    h, m = map(int, hhmm.split(":"))
    return now.replace(hour=h, minute=m, second=0, microsecond=0).timestamp()


if __name__ == "__main__":
    main()
