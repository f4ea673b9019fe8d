"""The CUDA paths. Marked `gpu`: they run on a machine with an NVIDIA GPU and skip with the reason elsewhere
(tests/conftest.py). No GPU has been lent to this project's CI; these have not yet run on one."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app

runner = CliRunner()


@pytest.mark.gpu
def test_bench_on_cuda_measures_every_asked_backend(tmp_path) -> None:
    res = runner.invoke(app, ["bench", "resnet18", "--tiny", "--device", "cuda", "--backend", "eager,compile",
                              "--batch-size", "1,8", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["rows"]
    assert rows and all(r["status"] == "ok" for r in rows), rows
    assert all(r["stats"]["median_ms"] > 0 for r in rows)
