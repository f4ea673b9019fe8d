"""Shared fixtures. Tests run on the CPU with few threads: CI has 2 cores."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent / "fixtures"))  # helpers the tests share: `from cli_calls import invoke`


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """Machine caches (the roofline peak, prune's width table) go to one directory per test session: never the
    user's ~/.cache, and measured once per session rather than once per test."""
    import os

    old = os.environ.get("DLOPT_CACHE_DIR")
    os.environ["DLOPT_CACHE_DIR"] = str(tmp_path_factory.mktemp("dlopt-cache"))
    yield
    os.environ.pop("DLOPT_CACHE_DIR") if old is None else os.environ.__setitem__("DLOPT_CACHE_DIR", old)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _trust_list(tmp_path_factory, monkeypatch) -> None:
    """The per-user list of trusted model code (dlopt.core.trust_list): one per test, never the user's own."""
    monkeypatch.setenv("DLOPT_TRUST_FILE", str(tmp_path_factory.mktemp("trust") / "trusted_code.json"))


@pytest.fixture
def out_root(tmp_path):
    return tmp_path / "artifacts"


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked `self_signal` (a real SIGINT to this very process) run first, before any test has started
    OpenVINO's runtime threads: a signal racing those threads can crash the whole pytest process (exit 139), as
    it did in the suite's own order. Tests marked `gpu` run only where CUDA is available; elsewhere they skip."""
    items.sort(key=lambda item: "self_signal" not in item.keywords)  # stable: the order is kept otherwise
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; this machine has none (the CUDA path is unmeasured here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
