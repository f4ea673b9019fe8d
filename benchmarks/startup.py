"""Start-up time of the CLI: `dlopt --help`, `dlopt list`, and `import torch` for scale.

Writes benchmarks/results/startup.json. Each command runs in a fresh process, 7 times; the median is reported.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "startup.json"
DLOPT = [sys.executable, "-m", "dlopt.cli"]
COMMANDS = {
    "dlopt --help": [*DLOPT, "--help"],
    "dlopt list": [*DLOPT, "list"],
    "python -c 'import torch' (for scale)": [sys.executable, "-c", "import torch"],
}


def time_command(cmd: list[str], repeats: int = 7) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import os

    from dlopt.core.environment import fingerprint

    rows = {}
    load_start = list(os.getloadavg())
    for label, cmd in COMMANDS.items():
        times = time_command(cmd)
        rows[label] = {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
                       "max_s": round(max(times), 3), "n": len(times)}
        print(f"{label:40s} median {rows[label]['median_s']:.3f} s  (min {rows[label]['min_s']:.3f}, max {rows[label]['max_s']:.3f})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    torch_s = rows["python -c 'import torch' (for scale)"]["median_s"]
    share = round(rows["dlopt --help"]["median_s"] / torch_s, 3)  # the load slows both: the share is steadier
    print(f"dlopt --help / import torch: {share}; load average {load_start} -> {list(os.getloadavg())}")
    RESULTS.write_text(json.dumps({"results": rows, "help_over_import_torch": share,
                                   "loadavg": {"start": load_start, "end": list(os.getloadavg())},
                                   "environment": fingerprint()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
