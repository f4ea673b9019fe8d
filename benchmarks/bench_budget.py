"""Does `dlopt bench` keep `--budget-s`? The command as a user runs it (a subprocess, wall time included), on a
ResNet-18 with every default backend, and what bench.json says it used.

    .venv/bin/python benchmarks/bench_budget.py [--arch resnet18] [--budget-s 10] [--threads 1]

Writes benchmarks/results/bench_budget.json: the command, its wall time, the load average, bench.json's `budget`
(seconds allowed and used, what was cut) and each row's calls and stop. The motivating run: 78 s against a 10 s
budget, "batch 8 took 48.9 s" (every variant made at least 10 timed calls, past the budget).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
DLOPT = Path(sys.executable).parent / "dlopt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--budget-s", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default="", help="results file suffix: bench_budget-TAG.json (e.g. before, for a run "
                                              "of an older dlopt put first on PYTHONPATH)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(DLOPT), "bench", args.arch, "--batch-sizes", "1,8", "--budget-s", f"{args.budget_s:g}",
               "--threads", str(args.threads), "--out", tmp, "--json"]
        load0, t0 = os.getloadavg(), time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ)
        wall = time.perf_counter() - t0
        result = json.loads(done.stdout)
    rows = [{"variant": r["variant"], "batch": r["batch_size"], "status": r["status"], "stop": r.get("stop"),
             "n": (r.get("stats") or {}).get("n"), "calls_wanted": r.get("calls_wanted"),
             "median_ms": (r.get("stats") or {}).get("median_ms"), "first_call_s": r.get("first_call_s"),
             "setup_s": r.get("setup_s")} for r in result["rows"]]
    out = {"command": " ".join(["dlopt", *cmd[1:-3], "--json"]), "dlopt_from": _dlopt_from(), "when": datetime.now(UTC).isoformat(timespec="seconds"),
           "command_wall_s": round(wall, 1), "budget": result.get("budget"),
           "loadavg": {"before": list(load0), "after": list(os.getloadavg()), "cpus": os.cpu_count()},
           "cpu": result["environment"]["cpu"]["model"], "rows": rows, "notes": result.get("notes")}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"bench_budget{'-' + args.tag if args.tag else ''}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("command", "command_wall_s", "budget", "loadavg")}, indent=2))
    for r in rows:
        print(f"{r['variant']:28s} b{r['batch']} {r['status']:6s} n {r['n']}/{r['calls_wanted'] or '-'} "
              f"{r['stop']} median {r['median_ms']} first {r['first_call_s']} setup {r['setup_s']}")


def _dlopt_from() -> str:
    import dlopt

    return str(Path(dlopt.__file__).parent)


if __name__ == "__main__":
    main()
