"""SIGKILL and SIGINT `dlopt prune / quantize / export / bench` at random moments; check nothing stale is used.

    .venv/bin/python benchmarks/kill_stages.py [--kills 3] [--seed 0]

One base run (mlp --tiny) gets every stage done once. For each stage and signal, a copy of that run reruns the
stage (replacing its earlier result) and is hit after a random delay drawn uniformly (seeded) over that
command's measured duration. Then, on the killed run: the manifest parses; every file a done stage vouched for
before the kill is either unchanged and still trusted, or (the kill landed after the stage finished) replaced
by the new result that a done stage vouches for; `dlopt bench` measures no file that dlopt.trust rejects;
`dlopt runs` and `dlopt report` succeed; and rerunning the command succeeds. Writes
benchmarks/results/kill_stages.json. The machine is shared with other jobs (2 cores, OMP_NUM_THREADS=1).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
QUANTIZE = ["--method", "dynamic", "--max-drop", "100", "--exporter", "legacy"]
BENCH = ["--backend", "eager,onnxruntime", "--batch-size", "1", "--budget-s", "0.2", "--threads", "1"]
COMMANDS = {  # stage name in the manifest -> command (after the run directory)
    "pruned": [],  # see command()
    "int8": ["quantize", "{run}", *QUANTIZE],
    "export": ["export", "{run}", "--format", "onnx", "--exporter", "legacy"],
    "bench": ["bench", "{run}", *BENCH],
}


def dlopt(args: list[str], tmp: Path, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "dlopt", *args], cwd=ROOT, env={**ENV, "TMPDIR": str(tmp)},
                         capture_output=True, text=True)
    if check and res.returncode != 0:
        raise SystemExit(f"dlopt {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()[-800:]}")
    return res


def base_run(work: Path) -> Path:
    out = work / "base"
    dlopt(["export", "mlp", "--tiny", "--format", "onnx", "--exporter", "legacy", "--out", str(out)], work)
    run = next(out.glob("mlp/*"))
    dlopt(["quantize", str(run), *QUANTIZE], work)
    dlopt(["prune", str(run), "--ratio", "0.3"], work)
    dlopt(["bench", str(run), *BENCH], work)
    return run


def command(stage: str, run: Path) -> list[str]:
    """Rerun the stage on the copied run; prune refuses to replace a pruned model by hand, so a new name."""
    if stage == "pruned":
        return ["prune", str(run), "--ratio", "0.5", "--name", "pruned2"]
    return [a.format(run=run) for a in COMMANDS[stage]]


def trusted(run_dir: Path) -> dict[str, str]:
    from dlopt.fileio import sha256_file
    from dlopt.runs import Run

    files, _ = Run(run_dir).scan_artifacts((".onnx", ".json", ".safetensors"))
    return {str(p.relative_to(run_dir)): sha256_file(p) for p in files}


def check(run_dir: Path, before: dict[str, str], stage: str, tmp: Path) -> dict[str, Any]:
    from dlopt.runs import Run

    run = Run(run_dir)
    out: dict[str, Any] = {"manifest_valid": True, "status": None}
    try:
        json.loads(run.manifest_path.read_text())
        out["status"] = run.stage_status(stage)
    except (OSError, ValueError) as exc:
        return {"manifest_valid": False, "error": str(exc)}
    now = trusted(run_dir)
    lost = [k for k in before if k not in now and (run_dir / k).exists()]
    gone = [k for k in before if not (run_dir / k).exists()]
    out["lost"] = lost  # a file done before that is now present but not trusted
    out["removed"] = gone  # legitimately replaced by a finished rerun (a swapped variant), or lost
    out["removed_unexplained"] = gone if out["status"] != "done" else []
    bench = dlopt(["bench", str(run_dir), *BENCH, "--json"], tmp, check=False)
    rows = json.loads(bench.stdout)["rows"] if bench.returncode == 0 else []
    measured = [r["artifact"] for r in rows if r.get("status") == "ok" and r.get("artifact")]
    out["bench_rc"] = bench.returncode
    out["stale_measured"] = [a for a in measured
                             if "bench-export" not in a and not run.artifact_status(Path(a)).trusted]
    out["runs_rc"] = dlopt(["runs", "--out", str(run_dir.parent.parent), "--json"], tmp, check=False).returncode
    out["report_rc"] = dlopt(["report", str(run_dir)], tmp, check=False).returncode
    rerun = ["prune", str(run_dir), "--ratio", "0.5", "--name", "pruned3"] if stage == "pruned2" \
        else command(stage, run_dir)  # a killed prune that had already finished keeps pruned2: a third name
    out["rerun_rc"] = dlopt(rerun, tmp, check=False).returncode
    out["ok"] = (not lost and not out["removed_unexplained"] and not out["stale_measured"] and out["bench_rc"] == 0
                 and out["runs_rc"] == 0 and out["report_rc"] == 0 and out["rerun_rc"] == 0)
    return out


def one(stage: str, sig: int, delay: float, base: Path, work: Path, i: int) -> dict[str, Any]:
    dest = work / f"k{i:03d}" / "mlp" / base.name
    shutil.copytree(base, dest)
    before = trusted(dest)
    proc = subprocess.Popen([sys.executable, "-m", "dlopt", *command(stage, dest)], cwd=ROOT,
                            env={**ENV, "TMPDIR": str(work)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    landed = proc.poll() is None
    if landed:
        proc.send_signal(sig)
    proc.wait()
    row = {"stage": stage, "signal": signal.Signals(sig).name, "delay_s": round(delay, 2), "landed": landed,
           "rc": proc.returncode, **check(dest, before, "pruned2" if stage == "pruned" else stage, work)}
    shutil.rmtree(dest.parent.parent, ignore_errors=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=3, help="kills per stage and signal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "kill_stages.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    work = Path(tempfile.mkdtemp(prefix="dlopt-kill-stages-"))
    rng, rows, t0 = random.Random(args.seed), [], time.perf_counter()
    try:
        base = base_run(work)
        for stage in COMMANDS:
            scratch = work / "timing" / "mlp" / base.name
            shutil.copytree(base, scratch)
            t = time.perf_counter()
            dlopt(command(stage, scratch), work)
            duration = time.perf_counter() - t
            shutil.rmtree(work / "timing")
            for sig in (signal.SIGKILL, signal.SIGINT):
                for _ in range(args.kills):
                    row = one(stage, sig, rng.uniform(0.0, duration), base, work, len(rows))
                    rows.append(row)
                    print(json.dumps({k: row.get(k) for k in ("stage", "signal", "delay_s", "landed", "status", "ok")}),
                          flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {"kills": len(rows), "landed": sum(r["landed"] for r in rows), "ok": sum(r["ok"] for r in rows),
               "stale_measured": sum(len(r["stale_measured"]) for r in rows),
               "done_files_lost": sum(len(r["lost"]) + len(r["removed_unexplained"]) for r in rows),
               "reruns_failed": sum(r["rerun_rc"] != 0 for r in rows),
               "by_stage": {s: {"landed": sum(r["landed"] for r in rows if r["stage"] == s),
                                "ok": sum(r["ok"] for r in rows if r["stage"] == s)} for s in COMMANDS},
               "wall_s": round(time.perf_counter() - t0, 1), "seed": args.seed,
               "loadavg_after": os.getloadavg(), "note": "machine shared with other jobs; OMP_NUM_THREADS=1"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**summary, "detail": rows}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    sys.exit(0 if summary["ok"] == summary["kills"] else 1)


if __name__ == "__main__":
    main()
