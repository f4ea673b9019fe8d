"""SIGKILL and SIGINT every stage (train, prune, quantize, export, bench, pipeline) at random moments; check that
nothing stale is used and that a rerun or `--resume` succeeds.

    .venv/bin/python benchmarks/kill_stages.py [--kills 10] [--seed 0] [--stages train,pruned,...]

One base run (mlp --tiny: trained, exported, quantized, pruned, benched) is made once. For each stage and
signal, `--kills` times: the stage's command is started as a fresh `dlopt` process (on a copy of the base run;
`train` and `pipeline` start new runs), and once the manifest shows the stage running in that process, it
gets the signal after a random delay (seeded, uniform over the stage's working window, measured once per
stage: from "running" to exit). Then, in this process (the CLI app through typer's CliRunner, so the checks
cost no interpreter and torch start-up): the manifest passes its schema and no stage still reads `running`;
a SIGINT that landed exited 130 and a SIGKILL -9, the stage reads `interrupted` (or `done` when the signal came
after it finished); every file a done stage vouched for before the kill is unchanged and still trusted (or
replaced by a finished rerun); `dlopt bench --json` measures and `dlopt report --json` reports no file that
dlopt.core.trust rejects; `dlopt runs --json` lists the run; rerunning the command (`--resume` for train and
pipeline) succeeds, leaves the stage `done`, and bench/report on the result again use only trusted files.
Writes benchmarks/results/kill_stages.json after every kill. Run it with OMP_NUM_THREADS=1: the machine is
shared with other jobs, and the load average is recorded with each kill.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
QUANTIZE = ["--method", "dynamic", "--max-drop", "100", "--exporter", "legacy", "--calibration-samples", "16"]
BENCH = ["--backend", "eager,onnxruntime", "--batch-sizes", "1", "--budget-s", "0.05", "--threads", "1"]
TRAIN = ["--tiny", "--epochs", "2", "--limit", "256"]
PRUNE = ["--finetune-epochs", "1", "--limit", "128"]
PIPELINE = """\
stages = ["train", "prune", "quantize", "export", "bench"]
[train]
epochs = 2
limit = 256
[prune]
ratio = 0.3
finetune_epochs = 1
data_limit = 64
[quantize]
exporter = "legacy"
method = "dynamic"
max_drop = 100
calibration_samples = 16
[export]
formats = ["onnx"]
exporter = "legacy"
[bench]
backends = ["eager", "onnxruntime"]
batch_sizes = [1]
budget_s = 0.05
threads = 1
"""
STAGES = ("train", "pruned", "int8", "export", "bench", "pipeline")  # names as the manifest records them
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGINT": signal.SIGINT}
LIVE = ("running", "starting")


def invoke(*args: Any) -> Any:
    """The `dlopt` CLI in this process (same app and error boundary as the console script)."""
    from typer.testing import CliRunner

    from dlopt.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


def base_run(work: Path) -> Path:
    out = work / "base"
    for args in (["train", "mlp", *TRAIN, "--out", out], ["export", "{run}", "--format", "onnx", "--exporter", "legacy"],
                 ["quantize", "{run}", *QUANTIZE], ["prune", "{run}", "--ratio", "0.3", *PRUNE], ["bench", "{run}", *BENCH]):
        run = next(out.glob("mlp/*"), None)
        res = invoke(*[run if a == "{run}" else a for a in args])
        if res.exit_code != 0:
            raise SystemExit(f"base run: dlopt {args[0]} failed ({res.exit_code}): {res.output[-800:]}")
    return next(out.glob("mlp/*"))


class Case:
    """One stage's command to kill, where its run is, and how to rerun it."""

    def __init__(self, stage: str, base: Path, work: Path, i: int) -> None:
        self.stage, self.root = stage, work / f"k{i:03d}"
        self.name = "pruned2" if stage == "pruned" else stage  # the stage's record in the manifest
        self.fresh = stage in ("train", "pipeline")  # these start a new run; the others work on a copy of base
        if self.fresh:
            self.root.mkdir(parents=True)
        else:
            shutil.copytree(base, self.root / "mlp" / base.name)
        (work / "pipeline.toml").write_text(PIPELINE)
        self.config = work / "pipeline.toml"

    def run_dir(self) -> Path | None:
        return next((p for p in self.root.glob("mlp/*") if (p / "manifest.json").exists()), None)

    def command(self) -> list[Any]:
        run = self.run_dir()
        return {"train": ["train", "mlp", *TRAIN, "--out", self.root],
                "pipeline": ["pipeline", "mlp", "--tiny", "--config", self.config, "--out", self.root],
                "pruned": ["prune", run, "--ratio", "0.5", "--name", "pruned2", *PRUNE],
                "int8": ["quantize", run, *QUANTIZE],
                "export": ["export", run, "--format", "onnx", "--exporter", "legacy"],
                "bench": ["bench", run, *BENCH]}[self.stage]

    def rerun(self, run: Path, status: str) -> list[Any]:
        if self.stage == "train":
            return ["train", "--resume", run]
        if self.stage == "pipeline":
            return ["pipeline", "--resume", run, "--config", self.config]
        if self.stage == "pruned" and status == "done":  # prune never replaces a finished variant: a new name
            return ["prune", run, "--ratio", "0.5", "--name", "pruned3", *PRUNE]
        return self.command()

    def watched(self, manifest: dict[str, Any], pid: int) -> bool:
        """The killed process has started the stage's work (its record is live and carries that pid)."""
        stages = manifest.get("stages", {})
        recs = stages.values() if self.stage == "pipeline" else [stages.get(self.name)]
        return any(isinstance(r, dict) and r.get("status") in LIVE and r.get("pid") == pid for r in recs)


def wait_running(case: Case, proc: Any, timeout: float = 300.0) -> float | None:
    """Seconds from start until the stage is marked running in proc's name, or None if proc ended first."""
    t0 = time.perf_counter()
    while proc.poll() is None and time.perf_counter() - t0 < timeout:
        run = case.run_dir()
        try:
            if run is not None and case.watched(json.loads((run / "manifest.json").read_text()), proc.pid):
                return time.perf_counter() - t0
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    return None


ZYGOTE = r"""
import json, os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as an interactive `python` has it, even if started ignored
sys.path.insert(0, sys.argv[1])
import dlopt.cli.app, torch, onnx, torch_pruning  # onnxruntime starts a thread on import: each child imports it
for mod in ("dlopt.train", "dlopt.prune.stage", "dlopt.quantize", "dlopt.export.stage", "dlopt.bench.runner",
            "dlopt.pipeline", "dlopt.report", "dlopt.verify.stage"):
    __import__(mod)
print(json.dumps({"threads": len(os.listdir("/proc/self/task"))}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:  # the child: `dlopt ARGS` from here on, exactly as the console script runs it
        null, err = os.open(os.devnull, os.O_RDWR), os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(null, 0), os.dup2(null, 1), os.dup2(err, 2)
        os.environ.update(req["env"])
        import tempfile
        tempfile.tempdir = None
        sys.argv = ["dlopt", *req["args"]]
        dlopt.cli.app.main()
    print(json.dumps({"pid": pid}), flush=True)
    print(json.dumps({"rc": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}), flush=True)
"""


class Zygote:
    """A Python that has imported torch and dlopt once and forks a child per command (single-threaded when it
    forks), so a kill costs the stage's work, not the interpreter's start-up. `--spawn` starts fresh processes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE, str(SRC[0])], cwd=ROOT, env=ENV, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        ready = json.loads(self.proc.stdout.readline())
        if ready["threads"] != 1:
            raise SystemExit(f"the fork server has {ready['threads']} threads; use --spawn")

    def start(self, args: list[str], env: dict[str, str], stderr: Path) -> Child:
        self.proc.stdin.write(json.dumps({"args": args, "env": env, "stderr": str(stderr)}) + "\n")
        self.proc.stdin.flush()
        return Child(json.loads(self.proc.stdout.readline())["pid"], self.proc.stdout)


class Child:
    """Popen's poll / wait / send_signal / returncode for a child of the fork server (it reaps and reports it)."""

    def __init__(self, pid: int, reports: Any) -> None:
        self.pid, self.returncode, self.ended = pid, None, threading.Event()

        def reaped() -> None:
            self.returncode = json.loads(reports.readline())["rc"]
            self.ended.set()

        threading.Thread(target=reaped, daemon=True).start()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self.ended.wait(timeout):
            raise subprocess.TimeoutExpired("dlopt", timeout or 0)
        return self.returncode

    def send_signal(self, sig: int) -> bool:
        try:
            if Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False  # it has exited; the fork server has not reaped it yet
            os.kill(self.pid, sig)
            return True
        except (ProcessLookupError, FileNotFoundError):  # it ended (and was reaped) just now
            return False

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


ZYG: list[Zygote] = []  # the fork server, when used
SRC: list[Path] = []  # the snapshot of dlopt/ this benchmark runs


def snapshot(work: Path) -> Path:
    """A copy of the working tree's dlopt/ package: the tree is shared with others who edit it while this runs
    (a process that imports half old, half new modules fails for no fault of dlopt's)."""
    shutil.copytree(ROOT / "dlopt", work / "src" / "dlopt", ignore=shutil.ignore_patterns("__pycache__"))
    return work / "src"


def source_version() -> str:
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "dlopt"], capture_output=True, text=True).stdout
    return f"{head} + uncommitted edits in {len(dirty.splitlines())} dlopt files (snapshot at start)"


def start(case: Case, work: Path) -> Any:
    env, args = {**ENV, "TMPDIR": str(work / "tmp"), "PYTHONPATH": str(SRC[0])}, [str(a) for a in case.command()]
    if ZYG:
        return ZYG[0].start(args, {"TMPDIR": env["TMPDIR"]}, case.root / "stderr.txt")
    return subprocess.Popen([sys.executable, "-m", "dlopt", *args], cwd=SRC[0], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(case.root / "stderr.txt", "w"))


def trusted(run_dir: Path | None) -> dict[str, str]:
    from dlopt.core.fileio import sha256_file
    from dlopt.core.runs import Run

    if run_dir is None:
        return {}
    files, _ = Run(run_dir).scan_artifacts((".onnx", ".json", ".safetensors"))
    return {str(p.relative_to(run_dir)): sha256_file(p) for p in files}


def stale_in(run_dir: Path, bench: bool = True) -> dict[str, Any]:
    """bench (unless told not to) and report on the run: what they used that dlopt.core.trust rejects (and their
    exit codes)."""
    from dlopt.core.runs import Run

    run, out = Run(run_dir), {}
    if bench:
        res = invoke("bench", run_dir, *BENCH, "--json")
        out["bench_rc"] = res.exit_code
        rows = json.loads(res.stdout)["rows"] if res.exit_code == 0 else []
    else:
        rows = []
    used = [r["artifact"] for r in rows if r.get("status") == "ok" and r.get("artifact")
            and "bench-export" not in r["artifact"]]
    used += [r["variant"].split(":", 1)[1] + ".json" for r in rows  # eager of a variant: its checkpoint record
             if r.get("status") == "ok" and str(r.get("variant", "")).startswith("eager:")]
    report = invoke("report", run_dir, "--json")
    rep = json.loads(report.stdout) if report.exit_code == 0 else {}
    used += [r["path"] for r in rep.get("rows", []) if r.get("path")]
    out["report_rc"] = report.exit_code
    out["stale"] = sorted({str(u) for u in used if not run.artifact_status(Path(u)).trusted})
    return out


def finished_before(stages: dict[str, Any], names: list[str], when: float) -> bool:
    """Every one of these stages recorded `finished` before the signal was sent (its work was over)."""
    from datetime import datetime

    stamps = [(stages.get(n) or {}).get("finished") for n in names]
    return all(isinstance(t, str) and datetime.fromisoformat(t).timestamp() <= when for t in stamps)


def after_kill(case: Case, sig: str, landed: bool, rc: int | None, before: dict[str, str],
               sent_at: float) -> dict[str, Any]:
    from dlopt.core.errors import InputFileError
    from dlopt.core.runs import Run
    from dlopt.core.trust import effective_status

    run_dir = case.run_dir()
    if run_dir is None:  # killed before its run directory existed: nothing to check but a clean rerun
        return {"run_created": False, "manifest_valid": True, "status": None, "sig_ok": rc in (-9, 130)}
    try:
        stages = Run.open(run_dir).manifest().get("stages", {})
    except InputFileError as exc:
        return {"manifest_valid": False, "error": str(exc)}
    seen = [effective_status(stages.get(case.name))] if case.stage != "pipeline" else \
        [effective_status(r) for r in stages.values()]  # a pipeline: its steps' stages, "done" only if all are
    status = next((s for s in seen if s not in ("done", "interrupted")), None) or \
        ("done" if all(s == "done" for s in seen) else "interrupted")
    expected = {"SIGKILL": -9, "SIGINT": 130}[sig] if landed else 0
    # A signal sent after the stage recorded `finished` (its work over, the process printing or exiting) may
    # come too late for Python to act on (exit 0), or during the interpreter's shutdown, when the default
    # handler is back (-2; a shell shows 130): counted as "after the work", not failed. An exit 0 or -2 after
    # a signal sent before `finished` is a failure (the signal was swallowed).
    after_work = landed and status == "done" and finished_before(
        stages, list(stages) if case.stage == "pipeline" else [case.name], sent_at)
    raced = after_work and rc in (0, -2) and rc != expected
    out: dict[str, Any] = {"manifest_valid": True, "status": status, "raced": raced, "after_work": after_work,
                           "live_left": [n for n, r in stages.items() if effective_status(r) in LIVE],
                           "sig_ok": (rc == expected or raced) and status in ("done", "interrupted")}
    now = trusted(run_dir)
    out["lost"] = [k for k in before if k not in now and (run_dir / k).exists()]  # there but no longer trusted
    out["removed_unexplained"] = [k for k in before if not (run_dir / k).exists()] if status != "done" else []
    out["post_kill"] = stale_in(run_dir)
    runs = invoke("runs", "--out", case.root, "--json")
    listed = json.loads(runs.stdout) if runs.exit_code == 0 else []
    out["runs_ok"] = runs.exit_code == 0 and len(listed) == 1 and not any(
        s in LIVE for s in listed[0].get("stages", {}).values())
    return out


def after_rerun(case: Case, status: str | None) -> dict[str, Any]:
    from dlopt.core.runs import Run

    run_dir = case.run_dir()
    args = case.rerun(run_dir, status or "") if run_dir is not None else case.command()
    t0 = time.perf_counter()
    res = invoke(*args)
    out: dict[str, Any] = {"rerun": " ".join(map(str, args[:1] + args[2:])), "rerun_rc": res.exit_code,
                           "rerun_s": round(time.perf_counter() - t0, 2)}
    if res.exit_code != 0:
        out["rerun_error"] = res.output.strip()[-500:]
        return out
    run = Run(case.run_dir())
    stages = run.manifest()["stages"]
    out["rerun_all_done"] = all(r.get("status") == "done" for r in stages.values())
    out["post_rerun"] = stale_in(run.path, bench=case.fresh)  # a resumed run is benched; the others were
    out["staging_left"] = sorted(p.name for p in (run.path / ".staging").glob("*"))
    out["tmp_left"] = sorted(str(p.relative_to(run.path)) for p in run.path.rglob(".*.tmp"))
    return out


def verdict(case: Case, row: dict[str, Any]) -> bool:
    pk, pr = row.get("post_kill", {}), row.get("post_rerun", {})
    base_ok = case.fresh or (pk.get("bench_rc") == 0 and pk.get("report_rc") == 0)  # a half-made run may have
    return bool(row.get("manifest_valid") and row.get("sig_ok") and not row.get("live_left")  # nothing to bench
                and not row.get("lost") and not row.get("removed_unexplained") and not pk.get("stale")
                and row.get("runs_ok", True) and base_ok and row.get("rerun_rc") == 0 and row.get("rerun_all_done")
                and pr.get("bench_rc", 0) == 0 and pr.get("report_rc") == 0 and not pr.get("stale")
                and not row.get("hung"))


def one(stage: str, sig: str, rng: random.Random, window: float, base: Path, work: Path, i: int) -> dict[str, Any]:
    case = Case(stage, base, work, i)
    before, t0 = trusted(case.run_dir()), time.perf_counter()
    proc = start(case, work)
    seen = wait_running(case, proc)
    delay = rng.uniform(0.0, window)
    if seen is not None:
        time.sleep(delay)
        seen = time.perf_counter() - delay
    landed, sent_at = proc.poll() is None, time.time()
    if landed:
        landed = proc.send_signal(SIGNALS[sig]) is not False
    hung = False
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:  # a SIGINT that did not stop it: counted as a failure
        hung = True
        proc.kill()
        proc.wait()
    ran = None if seen is None else time.perf_counter() - seen  # from "running" to its end (a kill that missed)
    row: dict[str, Any] = {"stage": stage, "signal": sig, "ran_s": None if ran is None else round(ran, 2),
                           "delay_s": round(delay, 2), "landed": landed, "rc": proc.returncode, "hung": hung,
                           "stderr_tail": (case.root / "stderr.txt").read_text()[-300:] if landed else ""}
    row.update(after_kill(case, sig, landed, proc.returncode, before, sent_at))
    if row.get("manifest_valid"):
        row.update(after_rerun(case, row.get("status")))
    row["ok"] = verdict(case, row)
    row["wall_s"], row["loadavg"] = round(time.perf_counter() - t0, 1), round(os.getloadavg()[0], 2)
    shutil.rmtree(case.root, ignore_errors=True)
    return row


def measure_window(stage: str, base: Path, work: Path) -> float:
    """Seconds from 'running' (as the kill loop sees it) to exit, for one undisturbed run of the command."""
    case = Case(stage, base, work, 999)
    proc = start(case, work)
    seen = wait_running(case, proc)
    t = time.perf_counter()
    if proc.wait() != 0 or seen is None:
        raise SystemExit(f"{stage}: {' '.join(map(str, case.command()))} failed or never ran: "
                         f"{(case.root / 'stderr.txt').read_text()[-800:]}")
    shutil.rmtree(case.root)
    return time.perf_counter() - t


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def counts(sel: list[dict[str, Any]]) -> dict[str, Any]:
        return {"kills": len(sel), "landed": sum(r["landed"] for r in sel), "ok": sum(r["ok"] for r in sel),
                "stale_measured": sum(len(r.get("post_kill", {}).get("stale", []))
                                      + len(r.get("post_rerun", {}).get("stale", [])) for r in sel),
                "files_lost": sum(len(r.get("lost", [])) + len(r.get("removed_unexplained", [])) for r in sel),
                "manifests_invalid": sum(not r.get("manifest_valid") for r in sel),
                "reruns_failed": sum(r.get("rerun_rc") != 0 for r in sel),
                "after_work": sum(bool(r.get("after_work")) for r in sel),  # landed after the stage had finished
                "wall_s": round(sum(r["wall_s"] for r in sel), 1),
                "loadavg_mean": round(sum(r["loadavg"] for r in sel) / max(len(sel), 1), 2)}

    return {**counts(rows), "by_stage": {f"{s} {g}": counts(sel) for s in STAGES for g in SIGNALS
                                          if (sel := [r for r in rows if r["stage"] == s and r["signal"] == g])}}


def stop(work: Path) -> None:
    """SIGTERM: end the fork server and remove the scratch, then exit (sys.exit would be caught by CliRunner)."""
    if ZYG:
        ZYG[0].proc.kill()
    shutil.rmtree(work, ignore_errors=True)
    os._exit(143)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="kills per stage and signal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    parser.add_argument("--spawn", action="store_true", help="a fresh `python -m dlopt` per kill (slow: "
                        "every kill pays torch's import); default: forked from a pre-imported fork server")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "kill_stages.json")
    args = parser.parse_args()
    stages = [s for s in args.stages.split(",") if s]
    if unknown := [s for s in stages if s not in STAGES]:
        parser.error(f"unknown stage {unknown[0]!r}; choose from {', '.join(STAGES)}")
    # Started in the background (`cmd &`), this process may inherit SIGINT ignored, and every child with it: a
    # SIGINT would then do nothing. Python's own Ctrl-C handler here; spawned children get the default back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    work = Path(tempfile.mkdtemp(prefix="dlopt-kill-stages-"))
    signal.signal(signal.SIGTERM, lambda *_: stop(work))  # the results so far are saved after every kill
    os.environ.update({k: ENV[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    SRC.append(snapshot(work))  # everything below runs this copy of dlopt/, whatever others edit meanwhile
    sys.path.insert(0, str(SRC[0]))
    (work / "tmp").mkdir()
    os.environ["TMPDIR"] = tempfile.tempdir = str(work / "tmp")  # the in-process reruns' scratch, like the kills'
    rng, rows, missed, t0 = random.Random(args.seed), [], [], time.perf_counter()
    meta = {"seed": args.seed, "kills_per_stage_and_signal": args.kills, "python": sys.version.split()[0],
            "cpus": os.cpu_count(), "note": "machine shared with other jobs (2 cores); OMP_NUM_THREADS=1; "
            "checks and reruns run in this process through the CLI app (CliRunner)"}
    meta["source"] = source_version()
    meta["killed_processes"] = "python -m dlopt" if args.spawn else "forked from a fork server (torch, dlopt imported)"
    try:
        if not args.spawn:
            ZYG.append(Zygote())
        base = base_run(work)
        import dlopt

        meta["dlopt_imported_from"] = str(Path(dlopt.__file__).parent)
        windows = {}
        for s in stages:  # the tree may be mid-edit by others (a shared machine): one retry, then the stage is left out
            try:
                windows[s] = measure_window(s, base, work)
            except SystemExit as exc:
                print(f"retrying after: {exc}", flush=True)
                time.sleep(30)
                shutil.rmtree(work / "k999", ignore_errors=True)
                windows[s] = measure_window(s, base, work)
        meta["windows_s"] = {s: round(w, 2) for s, w in windows.items()}
        print(json.dumps({"windows_s": meta["windows_s"], "setup_s": round(time.perf_counter() - t0, 1)}), flush=True)
        for _ in range(args.kills):  # round robin: a run stopped early still covers every stage and signal
            for stage in stages:
                for sig in SIGNALS:
                    for attempt in range(3):  # a process that ended before its signal: redraw (window re-measured)
                        row = one(stage, sig, rng, windows[stage], base, work, len(rows) + len(missed))
                        if row["landed"] or attempt == 2:
                            break
                        missed.append(row)
                        windows[stage] = 0.5 * windows[stage] + 0.5 * (row["ran_s"] or windows[stage])
                    rows.append(row)
                    print(json.dumps({k: rows[-1].get(k) for k in ("stage", "signal", "delay_s", "landed", "rc",
                                                                   "status", "ok", "wall_s", "loadavg")}), flush=True)
                    summary = {**summarize(rows), "missed": summarize(missed),
                               "wall_s_total": round(time.perf_counter() - t0, 1), **meta}
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps({**summary, "detail": rows, "missed_detail": missed}, indent=2)
                                        + "\n")
    finally:
        if ZYG:
            ZYG[0].proc.stdin.close()
            ZYG[0].proc.wait()
            ZYG[0].proc.stdout.close()
        shutil.rmtree(work, ignore_errors=True)
    summary = {**summarize(rows), "missed": summarize(missed), "wall_s_total": round(time.perf_counter() - t0, 1),
               **meta}
    print(json.dumps({k: v for k, v in summary.items() if k != "by_stage"}, indent=2))
    sys.exit(0 if summary["ok"] == summary["kills"] else 1)


if __name__ == "__main__":
    main()
