"""Issue 15: `dlopt quantize --inputs FILE.npz` on a model with no data judges int8 against fp32 on the user's own
samples (held out from calibration), not on random inputs, and records the file by name and sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app

runner = CliRunner()

# Inputs in [0, 0.1): static int8 calibrated on them clips random N(0,1) inputs (values 10-30x over the range), so
# the same artifact agrees with fp32 on the file's held-out rows and not on random inputs. No biases: the output
# scales with the input and cannot hide an error behind a constant.
NARROW = '''
import torch
from torch import nn

class Narrow(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.head = nn.Linear(8, 1, bias=False)

    def forward(self, x):  # (B, 3, 8, 8) -> (B, 1)
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))

def build():
    torch.manual_seed(0)
    return Narrow()
'''
SHAPE = "x:float32:3x8x8"


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, str, str]:
    tmp = tmp_path_factory.mktemp("narrow")
    (tmp / "narrow.py").write_text(NARROW)
    ref = f"{tmp / 'narrow.py'}:build"
    res = _invoke("export", ref, "--input-shape", SHAPE, "--exporter", "legacy", "--format", "onnx",
                  "--out", tmp / "art", "--json")
    assert res.exit_code == 0, res.output
    return tmp, ref, json.loads(res.stdout)["run"]


def _file(path: Path, samples: int) -> Path:
    rng = np.random.default_rng(3)
    x = (0.1 * rng.random((samples, 3, 8, 8))).astype("float32")
    x[:, 0, 0, 0] = np.arange(samples) / 1e4  # row i is recognisable by its first value
    np.savez(path, x=x)
    return path


def _quantize(run: str, ref: str, path: Path, name: str) -> tuple[int, dict]:
    res = _invoke("quantize", run, "--method", "static", "--exporter", "legacy", "--max-drop", "100",
                  "--inputs", path, "--model-code", ref, "--name", name, "--json")
    return res.exit_code, (json.loads(res.stdout) if res.stdout.lstrip().startswith("{") else {"output": res.output})


def test_agreement_is_judged_on_held_out_rows_of_the_users_file(exported):
    tmp, ref, run = exported
    path = _file(tmp / "mine.npz", 40)
    code, out = _quantize(run, ref, path, "q40")
    assert code == 0 and out["verified"], out
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    note = next(n for n in out["notes"] if n.startswith("agreement judged on"))
    assert "inputs file mine.npz" in note and digest in note and "rows 30-39 (10 samples held out" in note, note
    assert out["calibration"]["samples"] == 20 and "rows 0-19" in out["calibration"]["source"]
    assert out["relative_error"] < 0.1  # the verdict's figure, on the file's rows
    assert "inputs file mine.npz" in out["accuracy_basis"] and "random" not in out["accuracy_basis"], out
    assert str(tmp) not in json.dumps(out["calibration"]) + json.dumps(out["notes"])  # the name, not where it lay


def test_the_same_int8_file_fails_on_random_inputs(exported):
    """What makes the test above discriminating: judged on random N(0,1) inputs (what quantize used before),
    the artifact calibrated on the file is far off fp32."""
    import torch

    from dlopt.quantize.calibrate import random_inputs
    from dlopt.quantize.ort_quant import runner_for

    tmp, ref, run = exported
    path = _file(tmp / "mine2.npz", 40)
    code, out = _quantize(run, ref, path, "q40b")
    assert code == 0 and out["relative_error"] < 0.1, out
    model, spec, cfg = _user_model(tmp)  # build() seeds its weights: the run's model
    int8 = runner_for(Path(out["artifact"]))
    errors = []
    for (x,) in random_inputs(spec, cfg, 64, 7):
        with torch.inference_mode():
            want = model(x)
        errors.append(float((int8(x)[0] - want).norm() / want.norm()))
    assert min(errors) > 0.1, errors


def test_a_file_too_small_to_split_is_reused_and_says_so(exported):
    tmp, ref, run = exported
    code, out = _quantize(run, ref, _file(tmp / "few.npz", 5), "q5")
    assert code == 0, out
    note = next(n for n in out["notes"] if n.startswith("agreement judged on"))
    assert "all 5 samples (the same ones calibration used)" in note and "none could be held out" in note
    assert out["calibration"]["samples"] == 5


def test_split_rows_are_disjoint_and_are_the_files_rows(tmp_path):
    from dlopt.quantize.calibrate import file_split

    spec, cfg = _user_spec(tmp_path)
    path = _file(tmp_path / "rows.npz", 40)
    split = file_split(path, spec, cfg, 256, (256, 1024), tmp_path)
    firsts = {k: [round(float(v) * 1e4) for b in batches for v in b[0][:, 0, 0, 0]]
              for k, batches in (("calib", split.calib.batches), ("probe", split.probe), ("held", split.held))}
    assert firsts == {"calib": list(range(20)), "probe": list(range(20, 30)), "held": list(range(30, 40))}
    assert split.calib.source.startswith("inputs file rows.npz (sha256 ")  # inside the run: run-relative
    capped = file_split(path, spec, cfg, 8, (256, 1024), None)
    assert capped.calib.samples == 8 and "inputs file rows.npz" in capped.basis


def test_the_record_is_run_relative_inside_the_run_else_the_name(tmp_path):
    from dlopt.data.inputs_file import load_inputs

    spec, cfg = _user_spec(tmp_path)
    (tmp_path / "run" / "data").mkdir(parents=True)
    inside = _file(tmp_path / "run" / "data" / "in.npz", 3)
    outside = _file(tmp_path / "out.npz", 3)
    assert load_inputs(inside, spec, cfg).record(tmp_path / "run")["file"] == "data/in.npz"
    rec = load_inputs(outside, spec, cfg).record(tmp_path / "run")
    assert rec["file"] == "out.npz" and rec["sha256"] == hashlib.sha256(outside.read_bytes()).hexdigest()


def _user_model(tmp_path: Path):
    from dlopt.cli.common import parse_shape
    from dlopt.models.registry import build_model

    (tmp_path / "narrow.py").write_text(NARROW)
    model, spec, cfg = build_model(f"{tmp_path / 'narrow.py'}:build", input_shape=parse_shape(SHAPE))
    return model.eval(), spec, cfg


def _user_spec(tmp_path: Path):
    return _user_model(tmp_path)[1:]


# -- what the 224x224 profile cut: no second export, no probe pass that decides nothing, no probe scored twice ----

def test_the_runs_verified_onnx_is_reused_only_while_it_is_the_same_file(exported, tmp_path):
    import shutil
    from types import SimpleNamespace

    from dlopt.core.runs import Run
    from dlopt.quantize.session import verified_export

    _tmp, _ref, run = exported
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    target = SimpleNamespace(spec=SimpleNamespace(entry=None), run=Run.open(copy), checkpoint=copy / "model.json")
    assert verified_export(target, "legacy") == copy / "model.onnx"
    assert verified_export(target, "dynamo") is None  # another exporter's graph: exported again
    with (copy / "model.json").open("ab") as fh:
        fh.write(b" ")  # not the checkpoint the export was made from
    assert verified_export(target, "legacy") is None
    shutil.rmtree(copy)
    shutil.copytree(run, copy)
    with (copy / "model.onnx").open("ab") as fh:
        fh.write(b"\0")  # not the file the export stage verified
    assert verified_export(target, "legacy") is None


def test_no_probe_pass_when_no_drop_can_exceed_the_budget():
    from types import SimpleNamespace

    import torch

    from dlopt.quantize.judge import Judge

    calls = []

    def runner(x):
        calls.append(1)
        return (x + 0.01,)

    held = [(torch.randn(4, 10),)]
    judge = Judge(None, SimpleNamespace(task="classification", metric="none"), None, lambda x: x, held, held)
    assert judge.cannot_exceed(100.0) and not judge.cannot_exceed(99.0)
    judge.loss(runner, "val", None)
    judge.loss(runner, "val", None)
    assert len(calls) == 1  # the chosen candidate's probe score is not measured again by the search
    flat = Judge(None, SimpleNamespace(task="classification", metric="none"), None, lambda x: x,
                 [(torch.randn(4, 1),)], [(torch.randn(4, 1),)])
    assert not flat.cannot_exceed(100.0)  # relative error has no ceiling: the search may still be needed


def test_a_failed_verdict_says_which_check_on_what_and_what_to_try():
    from dlopt.quantize.judge import failure_line

    report = {"verification": {"task": {"top1_agreement": {"criterion": "top-1 agreement >= 0.95", "failure": "0.663"}},
                               "shapes": {"passed": True}},
              "top1_agreement": 0.663, "relative_error": 0.198, "accuracy_basis": "parity with fp32 on held-out data",
              "search": {"stopped": "not searched: a drop cannot exceed 100 points"}, "kept_float": [],
              "calibration": {"source": "random valid inputs: no dataset"}}
    line = failure_line(report)
    assert line.startswith("top-1 agreement >= 0.95 failed: 0.663 (top1 agreement 0.663, relative error 0.198; "
                           "parity with fp32 on held-out data)")
    assert "--max-drop 1" in line and "--inputs FILE.npz" in line and "--method fp16" in line
    searched = {**report, "search": {"stopped": "best of 3 attempts"}, "kept_float": ["a", "b"],
                "calibration": {"source": "train split"}}
    line = failure_line(searched)
    assert "2 layer(s) were already kept in float" in line and "--max-drop" not in line and "--inputs" not in line


def test_flat_held_out_inputs_are_said_to_be_flat():
    """A classifier whose output is a large common offset plus a little per-input variation (resnet50 with seeded
    weights on digits: RMS 54, 4 between images): the note says so; varied outputs get no note."""
    from types import SimpleNamespace

    import torch

    from dlopt.quantize.judge import Judge

    gen = torch.Generator().manual_seed(0)
    offset = 50.0 * torch.randn(1, 10, generator=gen)
    spec = SimpleNamespace(task="classification", metric="none")
    flat = [(offset + torch.randn(32, 10, generator=gen),)]
    note = Judge(None, spec, None, lambda x: x, flat, flat).flat_inputs_note()
    assert note and "barely move the fp32 output" in note and "distinct top-1 class(es) over 32 inputs" in note
    varied = [(torch.randn(32, 10, generator=gen),)]
    assert Judge(None, spec, None, lambda x: x, varied, varied).flat_inputs_note() is None


def test_a_failed_verdict_on_the_cli_is_one_line_naming_the_check_and_its_basis(exported):
    """Calibration rows in [0, 0.1), held-out rows 100x wider: the int8 file clips them, the verdict fails, and the
    command's one line says which check failed, its figures, that it was judged on the user's file, what to try."""
    tmp, ref, run = exported
    path = _file(tmp / "wide.npz", 40)
    x = np.load(path)["x"]
    x[20:] *= 100.0
    np.savez(path, x=x)
    res = _invoke("quantize", run, "--method", "static", "--exporter", "legacy", "--max-drop", "100",
                  "--inputs", path, "--model-code", ref, "--name", "qwide")
    assert res.exit_code == 1, res.output
    line = next(ln for ln in res.output.splitlines() if "failed verification" in ln)
    assert "Traceback" not in res.output
    assert "relative error" in line and "inputs file wide.npz" in line and "try " in line, line
