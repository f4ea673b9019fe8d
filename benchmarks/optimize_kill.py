"""SIGKILL a `dlopt optimize` child at random moments, resume it each time, and count what was lost.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/optimize_kill.py [--kills 10] [--seed 0]

A tiny MLP is trained once; then `dlopt optimize RUN` (12 trials over ONNX Runtime and OpenVINO, so prunes, exports
and int8 builds all happen) is started and, once a trial is under way, killed after a random 0-12 s (inside a
build, a judgement or a timing), resumed with `--resume RUN`, killed again...
`--kills` times (each resume asks for 3 more trials than the study holds, so there is always work to
interrupt), then resumed to the end. After every kill: the finished trials the study held just before it must
all still be finished with the same values after the next start (lost trials), and every finished trial's file
must be one a done stage vouches for with an unchanged sha256 (a half-built file used). Writes
benchmarks/results/optimize_kill.json with dlopt.core.environment.fingerprint().
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "optimize_kill.json"
ARGS = ["--trials", "12", "--runtimes", "onnxruntime,openvino", "--threads", "1", "--finetune-epochs", "1"]


def _trials(run: Path) -> dict[int, tuple[str, Any, dict]]:
    import optuna

    db = run / "optimize" / "study.db"
    if not db.is_file():
        return {}
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = optuna.load_study(study_name="optimize", storage=f"sqlite:///{db}")
    except KeyError:  # killed before the study was made
        return {}
    return {t.number: (t.state.name, t.values, t.user_attrs) for t in study.trials}


def _untrusted(run: Path) -> list[str]:
    """Finished trials whose file no done stage vouches for (or that lies in a staging folder)."""
    from dlopt.core.runs import Run

    bad = []
    for state, _, attrs in _trials(run).values():
        if state != "COMPLETE":
            continue
        art = run / attrs["result"]["artifact"]
        owner = next((p for p in (art.parent, art.parent.parent) if (p / "manifest.json").is_file()), None)
        if ".staging" in art.parts or owner is None or not Run.open(owner).artifact_status(art).trusted:
            bad.append(str(art.relative_to(run)))
    return bad


def _staged(run: Path) -> int:
    return len(list((run / "optimize" / "cache").glob("*/.staging/*"))) if (run / "optimize").is_dir() else 0


def _start(run: Path, first: bool) -> subprocess.Popen:
    """The first start, or a resume that asks for 3 more finished trials than the study holds (always work left)."""
    done = sum(s == "COMPLETE" for s, _, _ in _trials(run).values())
    args = [str(run), *ARGS] if first else ["--resume", str(run), "--trials", str(max(12, done + 3))]
    return subprocess.Popen([sys.executable, "-m", "dlopt", "-q", "optimize", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def cycle(run: Path, first: bool, rng: random.Random) -> dict[str, Any]:
    before_start = {n: v for n, (s, v, _) in _trials(run).items() if s == "COMPLETE"}
    child = _start(run, first)
    t0 = time.monotonic()
    while child.poll() is None and time.monotonic() - t0 < 300 and not any(
            s == "RUNNING" and (a.get("worker") or {}).get("pid") == child.pid for s, _, a in _trials(run).values()):
        time.sleep(0.5)  # until a trial is under way: the kill then lands inside it, at a random moment
    time.sleep(rng.uniform(0.0, 12.0))
    wait = time.monotonic() - t0
    started = _trials(run)
    lost_at_start = [n for n, v in before_start.items() if started.get(n, ("", None))[:2] != ("COMPLETE", v)]
    if child.poll() is not None:
        return {"killed": False, "after_s": round(wait, 1), "rc": child.returncode, "lost": lost_at_start}
    held = {n: v for n, (s, v, _) in _trials(run).items() if s == "COMPLETE"}
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    return {"killed": True, "after_s": round(wait, 1), "complete_at_kill": len(held), "staged_at_kill": _staged(run),
            "lost": lost_at_start, "held": held}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from dlopt.core.environment import fingerprint
    from dlopt.train.api import train
    from dlopt.train.config import TrainConfig

    root = Path(tempfile.mkdtemp(prefix="dlopt-kill-"))
    run = Path(train(TrainConfig(arch="mlp", out=root, tiny=True, epochs=3, progress=False)).run_dir)
    rng, t0, cycles, held = random.Random(args.seed), time.time(), [], {}
    while sum(c["killed"] for c in cycles) < args.kills and len(cycles) < 3 * args.kills:
        c = cycle(run, not cycles, rng)
        now = _trials(run)  # what the previous kill left must have survived this start
        c["lost_since_last_kill"] = [n for n, v in held.items() if now.get(n, ("", None))[:2] != ("COMPLETE", v)]
        held = c.pop("held", held)
        c["untrusted_files_in_finished_trials"] = _untrusted(run)
        cycles.append(c)
        print(json.dumps(c), flush=True)
    final = subprocess.run([sys.executable, "-m", "dlopt", "-q", "optimize", "--resume", str(run)],
                           check=False, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    trials = _trials(run)
    result = {
        "fingerprint": fingerprint(), "kills": sum(c["killed"] for c in cycles),
        "kills_with_a_build_staged": sum(1 for c in cycles if c.get("staged_at_kill")),
        "lost_trials": sum(len(c["lost"]) + len(c["lost_since_last_kill"]) for c in cycles)
        + sum(1 for n, v in held.items() if trials.get(n, ("", None))[:2] != ("COMPLETE", v)),
        "half_built_files_used": len(set(_untrusted(run)) | {f for c in cycles
                                                            for f in c["untrusted_files_in_finished_trials"]}),
        "final_rc": final.returncode, "final_complete": sum(s == "COMPLETE" for s, _, _ in trials.values()),
        "failed_trials_marked": sum(s == "FAIL" for s, _, _ in trials.values()),
        "running_left": sum(s == "RUNNING" for s, _, _ in trials.values()), "staged_left": _staged(run),
        "shipped": json.loads((run / "optimized" / "optimize_report.json").read_text())["shipped"]
        if (run / "optimized" / "optimize_report.json").is_file() else None,
        "wall_s": round(time.time() - t0, 1), "cycles": cycles}
    RESULTS.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k not in ("cycles", "fingerprint")}, indent=2))


if __name__ == "__main__":
    main()
