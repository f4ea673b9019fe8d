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
