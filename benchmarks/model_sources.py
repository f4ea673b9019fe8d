"""Models from where users keep them, through dlopt's stages as a user runs them (the `dlopt` CLI, one subprocess
per cell, each with a time limit), with no --input-shape anywhere:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/model_sources.py [--only hf,hfpipe,timm,onnx] [--timeout-s 900]

  hf    five Hugging Face folders saved from small configs (tests/fixtures/hf_folders.py: DistilBERT and BERT
        classifiers, GPT-2, a ViT classifier, a Whisper encoder): export ONNX + .pt2 + OpenVINO with verification,
        int8 (`dlopt quantize RUN`, auto), bench (eager, ONNX Runtime, OpenVINO at batch 1).   Target: 5/5.
  hfpipe  `dlopt pipeline ./distilbert --inputs tokens.npz` (one thread, batch 1): every stage a transformers
        folder allows, then a ship pick judged by agreement with fp32 on the file's held-out rows.   Target: a pick.
  timm  resnet50, efficientnet_b0, convnext_atto, vit_tiny_patch16_224, mobilenetv3_small_100 at their own input
        size, with seeded unit-scale weights (no pretrained weights here; BatchNorm statistics re-estimated on random
        inputs and the logits scaled to RMS 1, so verification is not vacuous): export + verify, bench, structured
        prune 0.3 and int8 where Torch-Pruning / the runtimes can, else the one line dlopt printed.
  onnx  a ResNet-18 trained on the bundled digits (`dlopt train resnet18`), exported by hand with torch.onnx.export,
        then `dlopt quantize r18.onnx --inputs digits.npz` (int8 verified on held-out rows, timed against the fp32
        file on the best runtime here at batch 1, one thread, interleaved), `dlopt verify INT8 --reference
        r18.onnx` and `dlopt optimize r18.onnx --inputs digits.npz` (6 minutes).   Target: int8 >= 2x faster
        than its fp32 file.

Each cell records status (pass / fail / timeout), seconds, exit code and, on failure, the line dlopt printed.
JSON: benchmarks/results/model_sources.json, rewritten after every cell.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "model_sources.json"
DLOPT = str(Path(sys.executable).parent / "dlopt")
SECTIONS = ("hf", "hfpipe", "timm", "onnx")
TIMM = ("resnet50", "efficientnet_b0", "convnext_atto", "vit_tiny_patch16_224", "mobilenetv3_small_100")
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))


def cell(args: list[Any], timeout_s: float) -> dict[str, Any]:
    """One dlopt command: status, seconds, exit code, its JSON (when it printed some) or its error line."""
    t0 = time.perf_counter()
    env = {**os.environ, "COLUMNS": "200"}
    try:
        proc = subprocess.run([DLOPT, *map(str, args)], capture_output=True, text=True, timeout=timeout_s, env=env,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "seconds": round(time.perf_counter() - t0, 1), "command": _shown(args)}
    out: dict[str, Any] = {"status": "pass" if proc.returncode == 0 else "fail", "exit_code": proc.returncode,
                           "seconds": round(time.perf_counter() - t0, 1), "command": _shown(args)}
    try:
        out["json"] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pass
    if proc.returncode:
        errors = [ln for ln in proc.stderr.splitlines() + proc.stdout.splitlines() if ln.startswith("error")]
        out["line"] = (errors or (proc.stderr.strip().splitlines() or ["(no output)"])[-1:])[0][:400]
    return out


def _shown(args: list[Any]) -> str:
    return "dlopt " + " ".join(Path(a).name if isinstance(a, Path) else str(a) for a in args)


class Results:
    def __init__(self, sections: list[str]) -> None:
        """Sections not rerun (--only) keep what the last run measured, with its date."""
        old = json.loads(OUT.read_text()) if OUT.is_file() else {}
        now = datetime.now(UTC).isoformat(timespec="seconds")
        self.data: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                                     "loadavg_start": os.getloadavg()[0]}
        for name in SECTIONS:
            fresh = name in sections or name not in old
            self.data[name] = {} if fresh else old[name]
            self.data[f"{name}_created"] = now if fresh else old.get(f"{name}_created", old.get("created"))
            for key in (f"{name}_target", f"{name}_seconds"):
                if not fresh and key in old:
                    self.data[key] = old[key]

    def put(self, section: str, row: str, name: str, value: dict[str, Any]) -> None:
        kept = {k: v for k, v in value.items() if k != "json"}
        self.data[section].setdefault(row, {})[name] = kept
        print(f"{section:5} {row:22} {name:8} {value['status']:8} {value['seconds']:7.1f}s "
              f"{value.get('line', '')[:140]}", flush=True)
        self.save()

    def save(self) -> None:
        self.data["loadavg_end"] = os.getloadavg()[0]
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(self.data, indent=2, default=str) + "\n")


def run_hf(res: Results, work: Path, timeout_s: float) -> None:
    from hf_folders import KINDS, save_folder

    for kind in KINDS:
        folder = save_folder(kind, work / "hf" / kind, scale=5.0)
        got = cell(["export", folder, "--format", "onnx,pt2,openvino", "--out", work / "runs", "--json"], timeout_s)
        if "json" in got:
            got["verified"] = {f: v["passed"] for f, v in got["json"].get("verification", {}).items()}
        res.put("hf", kind, "export", got)
        run = got.get("json", {}).get("run")
        if not run:
            continue
        got = cell(["quantize", run, "--json"], timeout_s)
        if "json" in got:
            got.update({k: got["json"].get(k) for k in ("recipe", "verified", "top1_agreement", "relative_error",
                                                          "speedup_vs_fp32_b1", "fp32_reference")})
            got["recipe"] = (got["recipe"] or {}).get("label")
        res.put("hf", kind, "int8", got)
        got = cell(["bench", run, "--backend", "eager,onnxruntime,openvino", "--batch-sizes", "1", "--iterations",
                    "30", "--warmup", "3", "--json"], timeout_s)
        got["median_ms"] = _medians(got.get("json"))
        res.put("hf", kind, "bench", got)
    done = [k for k in KINDS if all(v.get("status") == "pass" for v in res.data["hf"].get(k, {}).values())
            and len(res.data["hf"].get(k, {})) == 3]
    res.data["hf_target"] = {"passed": len(done), "of": len(KINDS), "met": len(done) == len(KINDS)}
    res.save()


def token_rows(path: Path, n: int = 256, vocab: int = 120, length: int = 32) -> Path:
    """A user's tokens file: ids within the folder's vocabulary, padded rows masked (seeded)."""
    import numpy as np

    rng = np.random.default_rng(0)
    ids = rng.integers(3, vocab, size=(n, length)).astype(np.int64)
    mask = np.ones_like(ids)
    for i, used in enumerate(rng.integers(8, length + 1, size=n)):
        ids[i, used:], mask[i, used:] = 0, 0
    np.savez(path, input_ids=ids, attention_mask=mask)
    return path


def run_hf_pipeline(res: Results, work: Path, timeout_s: float) -> None:
    """`dlopt pipeline ./distilbert --inputs tokens.npz`: every stage it can run, then a ship pick judged by
    agreement with fp32 on the file's held-out rows (the folder has no data of its own)."""
    from hf_folders import save_folder

    folder = save_folder("distilbert", work / "hf-pipeline" / "distilbert", scale=5.0)
    tokens = token_rows(work / "tokens.npz")
    config = work / "pipeline-t1.toml"  # one thread: on a shared 2-core machine two threads time mostly the load
    config.write_text("[bench]\nthreads = 1\nbatch_sizes = [1]\n")
    got = cell(["pipeline", folder, "--inputs", tokens, "--config", config, "--out", work / "runs", "--json"],
               2 * timeout_s)
    report = Path(got.get("json", {}).get("report") or "").with_name("report.json")
    if report.is_file():
        ship = json.loads(report.read_text()).get("ship") or {}
        pick = ship.get("pick") or {}
        got["steps"] = {s["name"]: s["status"] for s in got["json"].get("steps", [])}
        got["pick"] = {k: pick.get(k) for k in ("label", "p50_ms", "speedup", "judged_by", "iqr_pct")} if pick else None
        got["excluded"] = ship.get("excluded")
        got["rule"] = ship.get("rule")
    got["ends_with_pick"] = bool(got.get("pick"))
    res.put("hfpipe", "distilbert", "pipeline", got)
    res.data["hfpipe_target"] = {"ends_with_pick": got["ends_with_pick"], "met": got["ends_with_pick"]}


def _medians(data: Any) -> dict[str, float]:
    rows = (data or {}).get("rows", []) if isinstance(data, dict) else []
    out = {}
    for r in rows:
        median = r.get("median_ms") or (r.get("stats") or {}).get("median_ms")
        if median is not None:
            out[f"{r.get('variant', r.get('label', '?'))} {r.get('backend', '')}".strip()] = median
    return out


def seeded_timm(name: str, path: Path) -> dict[str, Any]:
    """timm's init (seed 0), BatchNorm statistics re-estimated on random inputs, logits scaled to RMS 1."""
    import torch
    from safetensors.torch import save_file

    from dlopt.models.registry import build_model

    torch.manual_seed(0)
    model, _spec, cfg = build_model(f"timm:{name}")
    size = cfg.input_size
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    x = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        if bns:
            model.train()
            for chunk in x.split(4):
                model(chunk)
        model.eval()
        head = model.get_classifier()
        if not head.weight.any():  # a zero-initialised head (ViT): a seeded normal one
            torch.nn.init.normal_(head.weight, std=head.weight[0].numel() ** -0.5,
                                  generator=torch.Generator().manual_seed(3))
        rms = float(model(x).float().pow(2).mean().sqrt())
        head.weight.mul_(1.0 / rms)
        if head.bias is not None:
            head.bias.mul_(1.0 / rms)
    save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}, str(path))
    return {"input_size": size, "batchnorms": len(bns), "logit_rms_before_scaling": rms}


def run_timm(res: Results, work: Path, timeout_s: float) -> None:
    for name in TIMM:
        weights = work / f"{name}.safetensors"
        res.data["timm"].setdefault(name, {})["weights"] = seeded_timm(name, weights)
        got = cell(["export", f"timm:{name}", "--weights", weights, "--format", "onnx,pt2,openvino",
                    "--out", work / "runs", "--json"], timeout_s)
        if "json" in got:
            got["verified"] = {f: v["passed"] for f, v in got["json"].get("verification", {}).items()}
        res.put("timm", name, "export", got)
        run = got.get("json", {}).get("run")
        if not run:
            continue
        got = cell(["bench", run, "--backend", "eager,onnxruntime,openvino", "--batch-sizes", "1", "--iterations",
                    "10", "--warmup", "2", "--json"], timeout_s)
        got["median_ms"] = _medians(got.get("json"))
        res.put("timm", name, "bench", got)
        got = cell(["prune", run, "--ratio", "0.3", "--finetune-epochs", "0", "--json"], timeout_s)
        if "json" in got:
            got["params"] = got["json"].get("params")
        res.put("timm", name, "prune", got)
        got = cell(["quantize", run, "--method", "static", "--backend", "onnxruntime", "--calibration-samples", "8",
                    "--max-drop", "100", "--json"], timeout_s)
        if "json" in got:
            got.update({k: got["json"].get(k) for k in ("verified", "top1_agreement", "speedup_vs_fp32_b1")})
        res.put("timm", name, "int8", got)


def run_onnx(res: Results, work: Path, timeout_s: float) -> None:
    import numpy as np
    import torch

    got = cell(["train", "resnet18", "--epochs", "3", "--out", work / "runs", "--json"], 3 * timeout_s)
    res.put("onnx", "resnet18", "train", got)
    run = Path(got.get("json", {}).get("run_dir") or "")
    if not (run / "model.json").is_file():
        raise SystemExit(f"training resnet18 failed: {got.get('line')}")
    from dlopt.data import load_data
    from dlopt.models.checkpoint import load_checkpoint

    ck = load_checkpoint(run / "model.json")
    model = ck.model.eval()
    onnx_path = work / "r18.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, ck.config.input_size, ck.config.input_size),), str(onnx_path),
                      dynamo=True, input_names=["image"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    test = load_data(ck.spec, ck.config).test
    images = np.stack([test[i][0].numpy() for i in range(min(len(test), 256))]).astype(np.float32)
    np.savez(work / "digits.npz", image=images)
    res.data["onnx"]["resnet18"]["file"] = {"bytes": onnx_path.stat().st_size, "inputs_rows": len(images),
                                            "exported_by": "torch.onnx.export(dynamo=True), by hand"}
    got = cell(["quantize", onnx_path, "--inputs", work / "digits.npz", "--out", work / "runs", "--json"], timeout_s)
    if "json" in got:
        got.update({k: got["json"].get(k) for k in ("verified", "top1_agreement", "speedup_vs_fp32_b1",
                                                      "fp32_reference", "latency_ms_b1", "artifact")})
        got["recipe"] = (got["json"].get("recipe") or {}).get("label")
        got["candidates"] = [{k: c.get(k) for k in ("recipe", "val_drop", "latency_ms_b1", "speedup_vs_fp32",
                                                    "passed", "failed")} for c in got["json"]["auto"]["candidates"]]
    res.put("onnx", "resnet18", "int8", got)
    if got.get("artifact"):
        ver = cell(["verify", got["artifact"], "--reference", onnx_path, "--inputs", work / "digits.npz", "--json"],
                   timeout_s)
        if "json" in ver:
            ver["criterion"] = next(iter(ver["json"]["artifacts"].values()))["criterion"]
        res.put("onnx", "resnet18", "verify", ver)
    opt = cell(["optimize", onnx_path, "--inputs", work / "digits.npz", "--threads", "1", "--batch-size", "1",
                "--time-budget", "6m", "--out", work / "runs", "--json"], timeout_s)
    if "json" in opt:
        pick = opt["json"].get("pick") or {}
        opt.update(pick=pick.get("label"), p50_ms=pick.get("p50_ms"), drop=(pick.get("verdict") or {}).get("drop"),
                   speedup_vs_fp32_file=pick.get("speedup_vs_baseline"), baseline=pick.get("baseline_reference"),
                   basis=opt["json"].get("basis"), reached=opt["json"].get("reached"),
                   trials=(opt["json"].get("study") or {}).get("complete"),
                   stopped=(opt["json"].get("search") or {}).get("stopped"))
    res.put("onnx", "resnet18", "optimize", opt)
    speedup = got.get("speedup_vs_fp32_b1")
    res.data["onnx_target"] = {"speedup_vs_fp32_b1": speedup, "target": 2.0,
                               "met": bool(speedup and speedup >= 2.0 and got.get("verified")),
                               "optimize_pick": opt.get("pick"), "optimize_speedup_vs_fp32_file":
                               opt.get("speedup_vs_fp32_file")}
    res.save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--timeout-s", type=float, default=900.0)
    args = parser.parse_args()
    res = Results(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="dlopt-sources-") as tmp:
        work = Path(tmp)
        for section, fn in (("hf", run_hf), ("hfpipe", run_hf_pipeline), ("onnx", run_onnx), ("timm", run_timm)):
            if section in args.only.split(","):
                t0 = time.perf_counter()
                fn(res, work, args.timeout_s)
                res.data[f"{section}_seconds"] = round(time.perf_counter() - t0, 1)
                res.save()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
