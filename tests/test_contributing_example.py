"""docs/contributing.md's worked example: a new architecture is one file (tests/fixtures/tinynet.py) plus one
registration line, and every test parametrized over the registry picks it up with no test edited."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from dlopt.models.registry import list_names

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def _pytest(*args: str) -> subprocess.CompletedProcess:
    """pytest with the fixture file loaded as a plugin: importing it is the registration."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(FIXTURES), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tinynet", "-p", "no:cacheprovider", "-q", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _collected(*args: str) -> dict[str, set[str]]:
    """test function -> the parameter ids it was collected with (collection only: nothing runs)."""
    res = _pytest("--collect-only", "tests", "--ignore=tests/test_contributing_example.py", *args)
    assert res.returncode in (0, 5), res.stdout[-2000:] + res.stderr[-2000:]
    ids: dict[str, set[str]] = defaultdict(set)
    for line in res.stdout.splitlines():
        match = re.fullmatch(r"(tests/\S+::\w+)\[(.+)\]", line.strip())
        if match:
            ids[match[1]].add(match[2])
    return ids


def test_a_new_architecture_is_picked_up_by_every_registry_parametrized_test():
    zoo = set(list_names())
    assert "tinynet" not in zoo  # the fixture is not part of the product
    collected = _collected()
    whole_registry = [fn for fn, ids in collected.items() if zoo <= ids]  # parametrized over every zoo name
    assert len(whole_registry) >= 5, sorted(collected)
    missing = [fn for fn in whole_registry if "tinynet" not in collected[fn]]
    assert not missing, f"tests over the whole registry that did not pick tinynet up: {missing}"
    picked = sorted(fn for fn, ids in collected.items() if "tinynet" in ids)
    assert len({fn.split("::")[0] for fn in picked}) >= 8, picked  # registry, checkpoint, export, prune, quantize...
    # and they pass: built, trained, checkpointed, exported, pruned, quantized and benched with no test edited
    res = _pytest(*sorted({fn.split("::")[0] for fn in picked}), "-k", "tinynet", "-rA")
    passed = set(re.findall(r"^PASSED (\S+)\[tinynet\]", res.stdout, flags=re.M))
    assert res.returncode == 0 and passed == set(picked), res.stdout[-3000:]
