"""Train every zoo architecture with its defaults; record the test metric and wall time.

    .venv/bin/python benchmarks/train_zoo.py                 # all, in the order below
    .venv/bin/python benchmarks/train_zoo.py lenet5 dqn      # some
    .venv/bin/python benchmarks/train_zoo.py --table-only    # rebuild docs/train.md from the results

Each architecture writes benchmarks/results/train-<name>.json; the table in docs/train.md is rebuilt from
all of them, so results from separate invocations (or machines) add up. Targets are the issue's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
DOC = ROOT.parent / "docs" / "train.md"
TABLE_START, TABLE_END = "<!-- train-zoo-table -->", "<!-- /train-zoo-table -->"
TIME_LIMIT_S = 600.0  # each default training must finish in 10 minutes on the 2-core machine

# metric, comparison, threshold: the targets with default settings
TARGETS: dict[str, tuple[str, str, float]] = {
    **{name: ("accuracy", ">=", 0.97) for name in ("cnn", "lenet5", "simple_cnn", "resnet18")},
    "mlp_digits": ("accuracy", ">=", 0.95), "vit": ("accuracy", ">=", 0.90),
    **{name: ("mse", "<=", 1e-3) for name in ("rnn", "lstm", "gru", "bilstm")},
    **{name: ("accuracy", ">=", 0.95) for name in ("text_lstm", "lstm_attention", "transformer_classifier",
                                                   "bert_classifier")},
    "seq2seq_gru": ("exact_match", ">=", 0.90), "transformer_seq2seq": ("exact_match", ">=", 0.90),
    "dqn": ("mean_return", ">=", 475.0),
}
PRIORITY = ("lenet5", "cnn", "resnet18", "mlp_digits", "lstm", "text_lstm", "seq2seq_gru", "transformer_seq2seq", "dqn")
# Variants trained besides the defaults: (result name, architecture, TrainConfig keyword arguments).
VARIANTS = {"mlp_digits": ("mlp", {"data": "digits", "sets": {"hidden_sizes": "[512,256,128]", "dropout": "0.3"}})}


def run_one(name: str) -> dict:
    from dlopt.train import TrainConfig, train

    arch, kwargs = VARIANTS.get(name, (name, {}))
    with tempfile.TemporaryDirectory(prefix="train-zoo-") as tmp:
        t0 = time.perf_counter()
        result = train(TrainConfig(arch=arch, out=Path(tmp), progress=False, **kwargs))
        wall = time.perf_counter() - t0
        files = sorted(p.name for p in Path(result.run_dir).iterdir() if p.is_file())
        for png in Path(result.run_dir).glob("*.png"):  # keep the curves and sample grids beside the numbers
            shutil.copyfile(png, RESULTS / f"train-{name}-{png.name}")
    metric = result.metric
    value = result.test.get(metric)
    row = {"name": name, "arch": arch, "options": kwargs, "metric": metric, "test": result.test, "value": value,
           "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "stopped": result.stopped,
           "wall_s": round(wall, 1), "hparams": result.hparams, "data": result.data.get("name"),
           "sizes": result.data.get("sizes"), "files": files, "device": result.device}
    target = TARGETS.get(name)
    if target and value is not None:
        _, op, threshold = target
        row["target"] = f"{op} {threshold:g}"
        row["met"] = value >= threshold if op == ">=" else value <= threshold
    row["under_time_limit"] = wall <= TIME_LIMIT_S
    return row


def _environment() -> dict:
    from dlopt.core.environment import fingerprint

    env = fingerprint()
    import torch

    return {"cpu": env.get("cpu"), "threads": torch.get_num_threads(), "torch": env.get("packages", {}).get("torch")}


def table() -> str:
    from dlopt.models.registry import get_spec

    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("train-*.json"))]
    order = {n: i for i, n in enumerate(PRIORITY)}
    rows.sort(key=lambda r: (order.get(r["name"], len(order)), r["name"]))
    lines = ["| architecture | data | metric | test value | target | met | best / run epochs | wall time (s) | < 10 min |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        value = "-" if r.get("value") is None else f"{r['value']:.4g}"
        met = {True: "yes", False: "**no**", None: "n/a"}[r.get("met")]
        data = r.get("data") or get_spec(r["arch"]).dataset  # dqn: an environment, not a dataset
        lines.append(f"| {r['name']} | {data} | {r['metric']} | {value} | {r.get('target', 'none')} | "
                     f"{met} | {r['best_epoch']} / {r['epochs_run']} | {r['wall_s']} | "
                     f"{'yes' if r['under_time_limit'] else '**no**'} |")
    return "\n".join(lines)


def write_doc() -> None:
    text = DOC.read_text() if DOC.exists() else f"# Training\n\n{TABLE_START}\n{TABLE_END}\n"
    if TABLE_START not in text:
        text += f"\n{TABLE_START}\n{TABLE_END}\n"
    head, rest = text.split(TABLE_START, 1)
    tail = rest.split(TABLE_END, 1)[1]
    DOC.write_text(f"{head}{TABLE_START}\n{table()}\n{TABLE_END}{tail}")


def main(argv: list[str]) -> int:
    import torch

    # One thread by default: on a shared 2-core machine OpenMP threads spin against other processes and a
    # small model's step gets 10-20x slower (DQN: 406 ms vs 20 ms per update measured here).
    torch.set_num_threads(int(os.environ.get("DLOPT_BENCH_THREADS", "1")))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="architectures (default: all trainable, priority first)")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args(argv)
    if not args.table_only:
        from dlopt.models.registry import list_specs

        trainable = [s.name for s in list_specs(stage="train") if s.trainer]
        names = args.names or [*PRIORITY, *(n for n in [*trainable, *VARIANTS] if n not in PRIORITY)]
        RESULTS.mkdir(parents=True, exist_ok=True)
        for name in names:
            print(f"training {name} ...", flush=True)
            row = {**run_one(name), "environment": _environment()}
            (RESULTS / f"train-{name}.json").write_text(json.dumps(row, indent=2) + "\n")
            print(f"  {row['metric']} {row['value']} (target {row.get('target', 'none')}) in {row['wall_s']} s", flush=True)
            write_doc()
    write_doc()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
