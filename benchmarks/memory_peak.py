"""Peak resident memory of `dlopt quantize`, `dlopt verify` and `dlopt pipeline` at 224 x 224 (target < 4 GB each).

    python benchmarks/memory_peak.py                                   # both architectures, every command
    python benchmarks/memory_peak.py --arch efficientnet_b0 --command quantize-dynamic --command verify
    python benchmarks/memory_peak.py --code /tmp/old-checkout --label before   # the same runs on older code

Each measured command is the real CLI in a CHILD process; the peak is resource.getrusage(RUSAGE_CHILDREN)
.ru_maxrss read by a fresh measuring process that has run that one child and nothing else (RUSAGE_CHILDREN is
a maximum over all children ever waited for, so one child per measuring process gives that child's own peak).
The runs are as short as the data path allows: digits at 3x224x224 (torchvision:* with input_size=224), one
epoch on --train-limit (32) training samples in batches of 8, a 1 s benchmark budget; validation, test,
calibration (the training samples, at most 256) and verification read the real splits at 224. Results go to benchmarks/results/memory_peak.json,
merged by (label, arch, command), with the command lines, seconds, MB, pass/fail and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "memory_peak.json"
ARCHS = ("resnet50", "efficientnet_b0")
COMMANDS = ("quantize-dynamic", "quantize-static", "quantize-entropy", "quantize-percentile", "verify", "pipeline")
LIMIT_MB = 4096.0
TRAIN = ["--set", "input_size=224", "--epochs", "1", "--batch-size", "8", "--limit"]  # + --train-limit
PIPELINE_TOML = """arch = "torchvision:{arch}"
stages = ["train", "quantize", "export", "verify", "bench"]
sets = {{ input_size = 224 }}

[train]
epochs = 1
batch_size = 8
limit = 32

[quantize]
method = "dynamic"

[export]
formats = ["onnx"]

[bench]
backends = ["eager", "onnxruntime"]
batch_sizes = [1]
budget_s = 1.0
"""


def measure_one(argv: list[str]) -> None:
    """--measure mode: run argv as this process's only child; print its seconds, exit code and peak RSS."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: kilobytes
    error = [ln for ln in done.stderr.splitlines() if ln.strip()][-1:] if done.returncode else []
    print(json.dumps({"rc": done.returncode, "seconds": round(seconds, 1), "rss_mb": round(peak_kb / 1024, 1),
                      **({"error": error[0][:300]} if error else {})}))


def _dlopt(code: Path | None) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if code is not None:
        env["PYTHONPATH"] = str(code)  # the checkout to measure (its dlopt wins over the installed one)
    return [sys.executable, "-m", "dlopt.cli"], env


def run_measured(argv: list[str], env: dict[str, str], cwd: Path) -> dict:
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--measure", "--", *argv], env=env,
                         cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _trained(root: Path) -> list[Path]:
    """Runs whose train stage finished (a killed one would be verified on random inputs, not its data)."""
    def done(run: Path) -> bool:
        try:
            return json.loads((run / "manifest.json").read_text())["stages"]["train"]["status"] == "done"
        except (OSError, ValueError, KeyError, TypeError):
            return False

    return sorted(p for p in root.glob("*/*") if done(p)) if root.is_dir() else []


def setup_run(arch: str, work: Path, dlopt: list[str], env: dict[str, str], export: bool, limit: int) -> Path:
    """A trained run (and its ONNX export for verify), reused by the measured commands; not measured."""
    root = work / arch
    runs = _trained(root)
    if not runs:
        train = [*dlopt, "train", f"torchvision:{arch}", *TRAIN, str(limit), "--out", str(root), "--json"]
        subprocess.run(train, env=env, cwd=work, check=True, capture_output=True)
        runs = _trained(root)
    run = runs[-1]
    if export and not (run / "model.onnx").is_file():
        subprocess.run([*dlopt, "export", str(run), "--format", "onnx", "--no-verify"], env=env, cwd=work,
                       check=True, capture_output=True)
    return run


def command_line(command: str, arch: str, run: Path | None, work: Path, dlopt: list[str]) -> list[str]:
    if command == "quantize-dynamic":
        return [*dlopt, "quantize", str(run), "--method", "dynamic", "--name", "int8-dyn"]
    if command == "quantize-static":
        return [*dlopt, "quantize", str(run), "--method", "static", "--name", "int8-static"]
    if command in ("quantize-entropy", "quantize-percentile"):
        how = command.removeprefix("quantize-")
        return [*dlopt, "quantize", str(run), "--method", "static", "--calibration-method", how, "--name", f"int8-{how}"]
    if command == "verify":
        return [*dlopt, "verify", str(run)]
    config = work / f"pipeline-{arch}.toml"
    config.write_text(PIPELINE_TOML.format(arch=arch))
    return [*dlopt, "pipeline", f"torchvision:{arch}", "--config", str(config), "--out", str(work / "pipeline")]


def machine(code: Path | None) -> dict:
    from dlopt.core.environment import fingerprint

    mem = next((ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), "0")
    return {**fingerprint(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "memory_gb": round(int(mem) / 2**20, 1), "load_avg_at_end": list(os.getloadavg()),
            "code": str(code or REPO)}


def merge(rows: list[dict], skipped: list[dict], label: str, code: Path | None) -> dict:
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    keys = {(r["label"], r["arch"], r["command"]) for r in rows}
    kept = [r for r in old.get("rows", []) if (r["label"], r["arch"], r["command"]) not in keys]
    measured = {(r["label"], r["arch"], r["command"]) for r in kept + rows}
    fresh = {(x["label"], x["arch"], x["command"]) for x in skipped}
    skips = [s for s in old.get("skipped", []) if (s["label"], s["arch"], s["command"]) not in fresh] + skipped
    doc = {"what": "peak resident memory (getrusage RUSAGE_CHILDREN ru_maxrss) of one dlopt CLI child per row",
           "limit_mb": LIMIT_MB, "setup": {"train": TRAIN, "pipeline_toml": PIPELINE_TOML}, "rows": kept + rows,
           "skipped": [s for s in skips if (s["label"], s["arch"], s["command"]) not in measured],
           "machine": {**old.get("machine", {}), label: machine(code)}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="append", choices=ARCHS)
    ap.add_argument("--command", action="append", choices=COMMANDS)
    ap.add_argument("--work", type=Path, default=Path("/tmp/dlopt-memory-peak"))
    ap.add_argument("--code", type=Path, help="a checkout of dlopt to measure instead of this one")
    ap.add_argument("--label", default="current")
    ap.add_argument("--train-limit", type=int, default=32, help="training samples (they also cap calibration)")
    ap.add_argument("--skip-note", default="", help="why the cases not run were skipped (recorded)")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    work = args.work.resolve() / args.label
    work.mkdir(parents=True, exist_ok=True)
    dlopt, env = _dlopt(args.code)
    archs, commands = args.arch or list(ARCHS), args.command or list(COMMANDS)
    rows = []
    for arch in archs:
        needs_run = [c for c in commands if c != "pipeline"]
        run = setup_run(arch, work, dlopt, env, "verify" in commands, args.train_limit) if needs_run else None
        for command in commands:
            argv = command_line(command, arch, run, work, dlopt)
            got = run_measured(argv, env, work)
            row = {"label": args.label, "arch": f"torchvision:{arch}", "command": command,
                   "train_limit": args.train_limit if command != "pipeline" else 32,
                   "argv": " ".join(a.replace(str(REPO), ".") for a in argv[1:]), **got,
                   "under_limit": got["rss_mb"] < LIMIT_MB,  # the memory target, whatever the command's verdict
                   "pass": got["rc"] == 0 and got["rss_mb"] < LIMIT_MB}
            rows.append(row)
            merge(rows, [], args.label, args.code)  # kept as it goes: a long session may be cut short
            print(json.dumps(row), flush=True)
    skipped = [{"label": args.label, "arch": f"torchvision:{a}", "command": c, "why": args.skip_note or "not asked"}
               for a in ARCHS for c in COMMANDS if a not in archs or c not in commands]
    merge(rows, skipped, args.label, args.code)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        measure_one(sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:])
    else:
        main()
