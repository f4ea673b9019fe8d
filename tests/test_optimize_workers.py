"""Two `dlopt optimize` workers sharing one study (--storage URL --study NAME): every trial is recorded once, both
workers contribute, and each ends with a pick. On SQLite, and on a throwaway PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

TRIALS = 6
COMMON = ["--trials", str(TRIALS), "--runtimes", "eager,torchscript", "--threads", "1", "--finetune-epochs", "0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from dlopt.train.api import train
    from dlopt.train.config import TrainConfig

    root = tmp_path_factory.mktemp("optimize-workers")
    return Path(train(TrainConfig(arch="mlp", out=root, tiny=True, epochs=3, progress=False)).run_dir)


def _two_workers(run: Path, url: str) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "dlopt", "optimize", str(run), "--storage", url, "--study", "shared", *COMMON]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=900)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def _check_shared(url: str, done: list[subprocess.CompletedProcess]) -> None:
    import optuna

    from dlopt.optimize.study import with_driver

    assert [d.returncode for d in done] == [0, 0], [d.stderr[-1500:] for d in done]
    study = optuna.load_study(study_name="shared", storage=with_driver(url))
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    # each worker checks the count before it asks, so together they may pass it by one trial each, never more
    assert TRIALS <= len(complete) <= TRIALS + 1
    assert sorted(t.number for t in study.trials) == list(range(len(study.trials)))  # no number twice, none lost
    assert all(t.values and len(t.values) == 2 and "result" in t.user_attrs for t in complete)
    pids = {t.user_attrs["worker"]["pid"] for t in complete}
    assert len(pids) == 2  # both workers contributed
    assert all(t.user_attrs["fingerprint"]["cpu"]["cores"] for t in complete)


def test_two_workers_share_one_sqlite_study(trained, tmp_path):
    run = tmp_path / "artifacts" / "mlp" / trained.name
    shutil.copytree(trained, run)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    _check_shared(url, _two_workers(run, url))
    assert not (run / "optimize" / "study.db").exists()  # the shared storage, not the run's own


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(command: str) -> subprocess.CompletedProcess:
    """PostgreSQL refuses to run as root: as root, run it as `nobody` through su."""
    if os.geteuid() != 0:
        return subprocess.run(["sh", "-c", command], check=False, capture_output=True, text=True, timeout=120)
    return subprocess.run(["su", "nobody", "-s", "/bin/sh", "-c", command], check=False, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def postgres():
    """A throwaway server on a loopback port, its data in a temporary folder; stopped and removed afterwards."""
    bins = {n: shutil.which(n) or f"/usr/local/bin/{n}" for n in ("initdb", "pg_ctl")}
    if not all(Path(b).is_file() for b in bins.values()):
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed here")
    if os.geteuid() == 0 and not shutil.which("su"):
        pytest.skip("running as root without su: PostgreSQL refuses to run as root")
    folder = Path(tempfile.mkdtemp(prefix="dlopt-pg-", dir="/tmp"))  # readable by the server's user
    if os.geteuid() == 0:
        shutil.chown(folder, "nobody")
    port = _free_port()
    init = _as_server_user(f"{bins['initdb']} -D {folder}/data -U optuna --auth=trust")
    assert init.returncode == 0, init.stderr[-800:]
    start = _as_server_user(f"{bins['pg_ctl']} -D {folder}/data -l {folder}/log -w -o "
                            f"'-p {port} -k {folder} -c listen_addresses=127.0.0.1' start")
    assert start.returncode == 0, start.stderr[-800:]
    try:
        yield f"postgresql://optuna@127.0.0.1:{port}/postgres"
    finally:
        _as_server_user(f"{bins['pg_ctl']} -D {folder}/data -m immediate stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_one_postgresql_study(trained, tmp_path, postgres):
    run = tmp_path / "artifacts" / "mlp" / trained.name
    shutil.copytree(trained, run)
    _check_shared(postgres, _two_workers(run, postgres))
