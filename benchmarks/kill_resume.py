"""Kill `dlopt train` with SIGKILL at random moments, resume each run, and compare with an uninterrupted run.

    .venv/bin/python benchmarks/kill_resume.py [--kills 20] [--mid-write 5] [--seed 0]

One reference run trains to the end. Then, for each kill, a fresh run of the same command is started and
killed with SIGKILL after a random delay drawn uniformly (seeded) over the reference run's training window
(from the moment its run directory appeared to its exit), counted from the moment this run's directory
appears (so a busy machine's slower start-up does not push every kill before the first epoch). Then
`--mid-write N` more runs are killed the instant a temporary file of an atomic write is seen (the k-th one,
k random), i.e. in the middle of saving a checkpoint, the training state, the metrics or the manifest.
Each killed run is resumed with
`dlopt train --resume RUN_DIR`; its final weights (the last epoch's, from train_state.safetensors, and the
best checkpoint, model.safetensors) must equal the reference's bit for bit, and every file in the run
directory must be complete (JSON parses, safetensors load, no temporary files left, checkpoint records match
their weights' sha256). Right after each kill the directory is checked the same way (temporary files are
expected there then: SIGKILL skips all cleanup; they must never carry a final name).

Writes benchmarks/results/kill_resume.json. The machine is shared with other jobs, so the kill moments land
on different points of the work in each run: the per-kill details say where each one landed.
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
DLOPT = [sys.executable, "-m", "dlopt"]
# ~1.1M parameters: each epoch writes ~17 MB (best model + AdamW state), so kills often land mid-save.
TRAIN = ["train", "mlp", "--set", "hidden_sizes=1024,1024", "--epochs", "8", "--limit", "1024",
         "--batch-size", "32", "--seed", "0", "--json"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _run_dir(out: Path) -> Path | None:
    found = [p for p in out.glob("mlp/*") if p.is_dir()]
    return found[0] if found else None


def _start(out: Path, extra: list[str] | None = None) -> subprocess.Popen:
    cmd = [*DLOPT, *(extra or [*TRAIN, "--out", str(out)])]
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def reference(work: Path) -> tuple[Path, float, float]:
    """Train to the end; returns the run dir, when its directory appeared and when the process ended (s)."""
    out = work / "reference"
    t0 = time.perf_counter()
    proc = _start(out)
    appeared = None
    while proc.poll() is None:
        if appeared is None and _run_dir(out) is not None:
            appeared = time.perf_counter() - t0
        time.sleep(0.005)
    total = time.perf_counter() - t0
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"reference run failed ({proc.returncode}): {err.strip()[-500:]}")
    return _run_dir(out), appeared or 0.0, total


def _tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


def state_epoch(run: Path) -> int | None:
    """The epoch committed in train_state.safetensors (its header carries the record), None if absent."""
    from safetensors import safe_open

    path = run / "train_state.safetensors"
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as fh:
        return json.loads(fh.metadata()["dlopt-train-state"])["epoch"]


def check_files(run: Path) -> dict[str, Any]:
    """Every final-named file complete; temporary files listed; checkpoint records checked against weights."""
    from dlopt.core.fileio import sha256_file

    corrupt, temps, stale_records = [], [], []
    for path in sorted(p for p in run.rglob("*") if p.is_file()):
        name = path.name
        if name.endswith(".tmp"):
            temps.append(name)
            continue
        try:
            if name.endswith(".json"):
                json.loads(path.read_text())
            elif name.endswith(".jsonl"):
                [json.loads(line) for line in path.read_text().splitlines()]
            elif name.endswith(".safetensors"):
                _tensors(path)
            elif name.endswith(".png"):
                assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.read_bytes()[-8:-4] == b"IEND"
        except Exception as exc:  # noqa: BLE001 - any failure to read a final-named file is corruption
            corrupt.append(f"{name}: {type(exc).__name__}: {str(exc)[:120]}")
    record = run / "model.json"
    if record.is_file() and (run / "model.safetensors").is_file():
        try:
            if json.loads(record.read_text()).get("sha256") != sha256_file(run / "model.safetensors"):
                stale_records.append("model.json")
        except json.JSONDecodeError:
            pass  # already counted as corrupt
    return {"corrupt": corrupt, "temp_files": temps, "records_out_of_step": stale_records}


def compare(ref: Path, run: Path) -> dict[str, bool]:
    import torch

    def same(name: str, prefix: str = "") -> bool:
        a, b = _tensors(ref / name), _tensors(run / name)
        keys = [k for k in a if k.startswith(prefix)]
        same_keys = keys == [k for k in b if k.startswith(prefix)]
        return bool(keys) and same_keys and all(torch.equal(a[k], b[k]) for k in keys)

    def history(path: Path) -> list[dict[str, Any]]:
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (path / "metrics.jsonl").read_text().splitlines()]

    return {"final_weights": same("train_state.safetensors", "model."), "best_model": same("model.safetensors"),
            "full_state": same("train_state.safetensors"), "history": history(ref) == history(run)}


def _wait_run_dir(proc: subprocess.Popen, out: Path) -> Path | None:
    while proc.poll() is None:
        if (run := _run_dir(out)) is not None:
            return run
        time.sleep(0.002)
    return None


def _kill_after(proc: subprocess.Popen, out: Path, delay: float) -> dict[str, Any]:
    _wait_run_dir(proc, out)
    time.sleep(delay)
    return {"delay_s": round(delay, 3)}


def _kill_mid_write(proc: subprocess.Popen, out: Path, k: int) -> dict[str, Any]:
    """Poll the run directory; SIGKILL the moment the k-th temporary file (a distinct name) is seen."""
    run = _wait_run_dir(proc, out)
    seen: list[str] = []
    while run is not None and proc.poll() is None:
        for entry in os.scandir(run):
            if entry.name.endswith(".tmp") and entry.name not in seen:
                seen.append(entry.name)
                if len(seen) == k:
                    return {"kth_temp_file": k, "temp_file_seen": entry.name}
    return {"kth_temp_file": k, "temp_file_seen": None}


def one_kill(i: int, how: str, arg: float, work: Path, ref: Path) -> dict[str, Any]:
    out = work / f"kill-{i:02d}"
    proc = _start(out)
    where = _kill_after(proc, out, arg) if how == "random" else _kill_mid_write(proc, out, int(arg))
    landed = proc.poll() is None
    if landed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    row: dict[str, Any] = {"kill": i, "mode": how, **where, "landed": landed, "rc": proc.returncode}
    run = _run_dir(out)
    row["run_dir_existed"] = run is not None
    if run is not None:
        row["at_kill"] = {"state_epoch": state_epoch(run), **check_files(run)}
        resume = _start(out, ["train", "--resume", str(run), "--json"])
    else:  # killed before the run directory existed: nothing was written, so the user simply starts again
        resume = _start(out)
    _, err = resume.communicate()
    row["resume_rc"] = resume.returncode
    if resume.returncode != 0:
        row["resume_error"] = err.strip().splitlines()[-1:] if err.strip() else []
        return row
    run = _run_dir(out)
    row["after_resume"] = check_files(run)
    row["manifest_status"] = json.loads((run / "manifest.json").read_text())["stages"]["train"]["status"]
    row["same"] = compare(ref, run)
    row["identical"] = all(row["same"].values()) and row["manifest_status"] == "done"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kills at random moments")
    parser.add_argument("--mid-write", type=int, default=5, help="extra kills the instant a temp file is seen")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "kill_resume.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dlopt-kill-"))
    t_start, load_before = time.perf_counter(), os.getloadavg()
    try:
        ref, appeared, total = reference(work)
        print(f"reference: run dir after {appeared:.2f}s, done after {total:.2f}s", flush=True)
        rng = random.Random(args.seed)
        rows = []
        for how, wanted, draw in (("random", args.kills, lambda: rng.uniform(0.0, total - appeared)),
                                   ("mid-write", args.mid_write, lambda: rng.randint(1, 20))):
            tries = 0
            while sum(r["landed"] for r in rows if r["mode"] == how) < wanted and tries < 2 * wanted:
                row = one_kill(len(rows), how, draw(), work, ref)  # a run may end before its kill: draw again
                tries += 1
                rows.append(row)
                print(json.dumps({k: row.get(k) for k in ("kill", "mode", "delay_s", "temp_file_seen", "landed",
                                                          "at_kill", "resume_rc", "identical")}), flush=True)
        summary = _summary(rows, args, appeared, total, t_start, load_before)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**summary, "kills_detail": rows}, indent=2) + "\n")
        print(json.dumps(summary, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ok = summary["identical"] == summary["kills"] == args.kills + args.mid_write and summary["files_corrupted"] == 0
    sys.exit(0 if ok else 1)


def _summary(rows: list[dict], args: argparse.Namespace, appeared: float, total: float, t_start: float,
             load_before: tuple) -> dict[str, Any]:
    import torch

    landed = [r for r in rows if r["landed"]]  # the figures count kills that hit a running process
    missed = [r for r in rows if not r["landed"]]  # ended before its kill: resumed too (a no-op), listed apart
    at_kill = [r["at_kill"] for r in landed if "at_kill" in r]
    after = [r["after_resume"] for r in rows if "after_resume" in r]
    return {
        "command": "dlopt " + " ".join(TRAIN), "seed": args.seed, "kills": len(landed),
        "random_kills": sum(r["mode"] == "random" for r in landed),
        "mid_write_kills": sum(r["mode"] == "mid-write" for r in landed),
        "resumes": sum(r.get("resume_rc") is not None and r["run_dir_existed"] for r in landed),
        "restarted_no_run_dir": sum(not r["run_dir_existed"] for r in landed),
        "resumes_succeeded": sum(r.get("resume_rc") == 0 for r in landed),
        "identical": sum(bool(r.get("identical")) for r in landed),
        "files_corrupted": sum(len(c["corrupt"]) for c in at_kill + after),
        "kills_with_temp_files_left": sum(bool(c["temp_files"]) for c in at_kill),
        "kills_with_checkpoint_record_out_of_step": sum(bool(c["records_out_of_step"]) for c in at_kill),
        "temp_files_after_resume": sum(len(c["temp_files"]) for c in after),
        "records_out_of_step_after_resume": sum(len(c["records_out_of_step"]) for c in after),
        "runs_finished_before_their_kill": len(missed),
        "their_resumes_identical": sum(bool(r.get("identical")) for r in missed),
        "state_epoch_at_kill": [c["state_epoch"] for c in at_kill],
        "reference_run_dir_appeared_s": round(appeared, 3), "reference_total_s": round(total, 3),
        "kill_window": "random kills: delay uniform over [0, reference exit - reference run dir appearance], "
                       "counted from this run's run dir appearance; mid-write kills: at the k-th temp file seen",
        "wall_s": round(time.perf_counter() - t_start, 1), "threads": 1, "torch": torch.__version__,
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "note": "machine shared with other agents' jobs; OMP_NUM_THREADS=1",
    }


if __name__ == "__main__":
    main()
