"""Shared fixtures. Tests run on the CPU with few threads: CI has 2 cores."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def out_root(tmp_path):
    return tmp_path / "artifacts"


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked `gpu` run only where CUDA is available; elsewhere they skip and say why."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; this machine has none (the CUDA path is unmeasured here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
