"""Issue 15, inputs: user models whose inputs are token ids, padding masks or several tensors (--input-shape
NAME:DTYPE:DIMS,...), and the user's own inputs file (--inputs FILE.npz) for verify, bench and quantize."""

from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dlopt.cli.app import app
from dlopt.cli.common import parse_shape
from dlopt.core.errors import ConfigError

runner = CliRunner()

TAGGER = '''
import torch
from torch import nn

class Tagger(nn.Module):  # embedding + GRU: a tag per token
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 16, padding_idx=0)
        self.gru = nn.GRU(16, 24, batch_first=True)
        self.head = nn.Linear(24, 5)

    def forward(self, ids):  # (B, T) int64 -> (B, T, 5)
        h, _ = self.gru(self.emb(ids))
        return self.head(h)

def build():
    return Tagger()
'''

ENCODER = '''
import torch
from torch import nn

class Encoder(nn.Module):  # padding mask from ids == 0, as most text models build it
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 32, padding_idx=0)
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2)
        self.head = nn.Linear(32, 3)

    def forward(self, ids):  # (B, T) int64, 0 = padding -> (B, 3)
        pad = ids == 0
        h = self.enc(self.emb(ids), src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).float()
        return self.head((h * keep).sum(1) / keep.sum(1).clamp(min=1.0))

def build():
    return Encoder()
'''

TWO_INPUTS = '''
import torch
from torch import nn

class TwoInputs(nn.Module):  # an image and a tabular vector
    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.tab = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
        self.head = nn.Linear(24, 4)

    def forward(self, img, tab):  # (B, 3, 16, 16), (B, 8) -> (B, 4)
        return self.head(torch.cat([self.conv(img), self.tab(tab)], dim=1))

def build():
    return TwoInputs()
'''

MODELS = {  # file text, --input-shape, ONNX element types of the inputs (7 = int64, 1 = float)
    "tagger": (TAGGER, "ids:int64:12", {"ids": 7}),
    "encoder": (ENCODER, "ids:int64:10", {"ids": 7}),
    "two": (TWO_INPUTS, "img:float32:3x16x16,tab:float32:8", {"img": 1, "tab": 1}),
}


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_line(res) -> str:
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


def _write(tmp_path, key: str) -> str:
    path = tmp_path / f"{key}.py"
    path.write_text(MODELS[key][0])
    return f"{path}:build"


def _export(tmp_path, key: str) -> tuple[str, dict]:
    ref = _write(tmp_path, key)
    res = _invoke("export", ref, "--input-shape", MODELS[key][1], "--exporter", "legacy", "--out", tmp_path / "art",
                  "--json")
    assert res.exit_code == 0, res.output
    return ref, json.loads(res.stdout)


# -- --input-shape -------------------------------------------------------------------------------------------------

def test_old_form_stays_one_float_input():
    assert parse_shape("3,32,32") == (3, 32, 32) and parse_shape("3x32x32") == (3, 32, 32)


def test_signature_text_is_canonical_with_the_documented_defaults():
    assert parse_shape(" ids:int64:16 , mask:bool:16") == "ids:int64:16:1-100,mask:bool:16:0-1"
    assert parse_shape("img:float32:3x32x32,tab:float32:8") == "img:float32:3x32x32,tab:float32:8"
    assert parse_shape("ids:int64:16:5-7") == "ids:int64:16:5-7"


@pytest.mark.parametrize(("text", "why"), [
    ("ids:int65:16", "unknown dtype 'int65'"),
    ("ids:int64", "is not NAME:DTYPE:DIMS"),
    ("ids:int64:0", "not positive sizes"),
    ("ids:int64:16x", "not positive sizes"),
    ("1ids:int64:16", "not an identifier"),
    ("ids:int64:16,ids:bool:16", "names repeat"),
    ("ids:int64:16:9-3", "empty or outside int64"),
    ("ids:uint8:16:0-300", "outside uint8"),
    ("x:float32:8:0-1", "for int and bool inputs"),
    ("3,a,32", "not a list of integers"),
])
def test_bad_signature_is_one_line_naming_the_form(text, why):
    with pytest.raises(ConfigError) as err:
        parse_shape(text)
    msg = str(err.value)
    assert why in msg and "\n" not in msg and ("NAME:DTYPE:DIMS" in msg or "3,32,32" in msg), msg


def test_bad_signature_through_the_cli(tmp_path):
    res = _invoke("export", _write(tmp_path, "tagger"), "--input-shape", "ids:long:12", "--out", tmp_path / "art")
    assert res.exit_code == 2 and "unknown dtype 'long'" in _one_line(res)
    assert not (tmp_path / "art").exists()


def test_example_inputs_have_the_signature_dtypes_and_ranges(tmp_path):
    from dlopt.models.registry import get_spec, make_inputs, make_model_config, spec_for

    ref = _write(tmp_path, "tagger")
    base = get_spec(ref)
    sig = parse_shape("ids:int64:12,mask:bool:12,on:bool:3:1-2,tok:int32:4:7-9,img:float16:2x2")
    cfg = make_model_config(base, input_shape=sig)
    spec = spec_for(base, cfg)
    ids, mask, on, tok, img = make_inputs(spec, cfg, batch_size=64)
    assert spec.input_names == ("ids", "mask", "on", "tok", "img")
    assert ids.dtype == torch.int64 and ids.shape == (64, 12) and ids.min() >= 1 and ids.max() < 100
    assert ids.unique().numel() > 20  # varied ids, not a constant
    assert mask.dtype == torch.bool and not mask.any()  # all False: a key_padding_mask that attends everywhere
    assert on.all() and tok.dtype == torch.int32 and set(tok.unique().tolist()) <= {7, 8}
    assert img.dtype == torch.float16 and img.shape == (64, 2, 2)


def test_each_signature_is_its_own_spec(tmp_path):
    from dlopt.models.registry import get_spec, make_model_config, spec_for

    ref = _write(tmp_path, "two")
    base = get_spec(ref)
    old = make_model_config(base, input_shape=(3, 16, 16))
    assert spec_for(base, old) is base and base.input_names == ("input",)
    a = spec_for(base, make_model_config(base, input_shape=parse_shape("img:float32:3x16x16,tab:float32:8")))
    b = spec_for(base, make_model_config(base, input_shape=parse_shape("img:float32:3x8x8,tab:float32:8")))
    again = spec_for(base, make_model_config(base, input_shape=parse_shape("img:float32:3x16x16,tab:float32:8")))
    assert a is again and a is not b and a.input_names == ("img", "tab")
    assert a.inputs[0].shape == ("batch", 3, 16, 16) and b.inputs[0].shape == ("batch", 3, 8, 8)


def test_an_importable_builder_takes_a_signature_too(tmp_path, monkeypatch):
    pkg = tmp_path / "mypkg_h1a"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(TWO_INPUTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    res = _invoke("info", "mypkg_h1a.models:build", "--input-shape", "img:float32:3x16x16,tab:float32:8", "--json")
    assert res.exit_code == 0, res.output
    inputs = json.loads(res.stdout)["inputs"]
    assert [(i["name"], i["shape"], i["dtype"]) for i in inputs] == [("img", [1, 3, 16, 16], "float32"),
                                                                     ("tab", [1, 8], "float32")]


# -- every stage on the three models -----------------------------------------------------------------------------

@pytest.mark.parametrize("key", list(MODELS))
def test_export_verifies_every_format_with_named_typed_inputs(tmp_path, key):
    import onnx

    ref, data = _export(tmp_path, key)
    assert set(data["verification"]) == {"onnx", "torchscript", "pt2"}
    assert all(r["passed"] for r in data["verification"].values()), data["verification"]
    graph = onnx.load(data["artifacts"]["onnx"]).graph
    types = {i.name: i.type.tensor_type.elem_type for i in graph.input}
    assert types == MODELS[key][2]
    assert all(i.type.tensor_type.shape.dim[0].dim_param for i in graph.input), "the batch axis is not dynamic"
    from dlopt.core.user_code import trusted_code
    from dlopt.models.checkpoint import load_checkpoint

    with trusted_code(ref):  # the run's record rebuilds the same signature
        ck = load_checkpoint(f"{data['run']}/model.json")
    assert ck.spec.input_names == tuple(MODELS[key][2])


@pytest.mark.parametrize("key", list(MODELS))
def test_bench_and_quantize(tmp_path, key):
    ref, data = _export(tmp_path, key)
    run = data["run"]
    res = _invoke("bench", run, "--backend", "eager,onnxruntime", "--batch-sizes", "1,3", "--iterations", "3",
                  "--model-code", ref, "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["rows"]
    ok = {(r["variant"].split(":")[0].split(" ")[0], r["batch_size"]) for r in rows if r["status"] == "ok"}
    assert ok >= {("eager", 3), ("onnxruntime", 3)}, ok
    res = _invoke("quantize", run, "--method", "dynamic", "--exporter", "legacy", "--max-drop", "100",
                  "--model-code", ref)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "not available" in text and "none before / after" not in text  # no 0 / 0 for a model without a metric


@pytest.mark.parametrize("key", [
    "tagger",
    "encoder",
])
def test_prune(tmp_path, key):
    ref, data = _export(tmp_path, key)
    res = _invoke("prune", data["run"], "--ratio", "0.3", "--model-code", ref, "--json")
    assert res.exit_code == 0, res.output


def test_prune_of_two_inputs_is_done_or_a_named_limit(tmp_path):
    """Torch-Pruning itself (MetaPruner on this model, no dlopt) leaves the head 13 wide for 16 concatenated
    features: structured prune may say so (exit 4, what to do); unstructured prune works on the two inputs."""
    ref, data = _export(tmp_path, "two")
    res = _invoke("prune", data["run"], "--ratio", "0.3", "--model-code", ref, "--json")
    assert res.exit_code == 0 or (res.exit_code == 4 and "--method unstructured" in _one_line(res)), res.output
    res = _invoke("prune", data["run"], "--ratio", "0.3", "--method", "unstructured", "--model-code", ref, "--json")
    assert res.exit_code == 0, res.output


# -- --inputs FILE.npz ----------------------------------------------------------------------------------------------

def _padded_ids(n: int = 9, t: int = 10) -> np.ndarray:
    ids = np.random.default_rng(0).integers(1, 100, (n, t)).astype("int64")
    for i in range(n):
        ids[i, 2 + (i * 3) % (t - 2):] = 0  # real padding: random inputs never exercise the mask
    return ids


def test_verify_runs_on_the_users_inputs(tmp_path):
    ref, data = _export(tmp_path, "encoder")
    path = tmp_path / "mine.npz"
    np.savez(path, ids=_padded_ids())
    res = _invoke("verify", data["run"], "--inputs", path, "--model-code", ref, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    cases = out["artifacts"]["onnx"]["cases"]
    assert {c["source"] for c in cases} == {"file"} and sum(c["batch"] for c in cases) >= 9
    report = json.loads((tmp_path / data["run"] / "verify-report.json").read_text())
    assert report["inputs"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report["inputs"]["file"] == path.name and report["inputs"]["samples"] == 9  # outside the run: the name


def test_export_verifies_on_the_users_inputs_positionally(tmp_path):
    ref = _write(tmp_path, "two")
    path = tmp_path / "pos.npz"
    rng = np.random.default_rng(1)
    np.savez(path, rng.normal(size=(4, 3, 16, 16)).astype("float32"), rng.normal(size=(4, 8)).astype("float32"))
    res = _invoke("export", ref, "--input-shape", MODELS["two"][1], "--exporter", "legacy", "--format", "onnx",
                  "--out", tmp_path / "art", "--inputs", path, "--json")
    assert res.exit_code == 0, res.output
    cases = json.loads(res.stdout)["verification"]["onnx"]["cases"]
    assert cases and {c["source"] for c in cases} == {"file"}


@pytest.fixture(scope="module")
def tagger_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tagger")
    return _export(tmp, "tagger") + (tmp,)


@pytest.mark.parametrize(("arrays", "needle"), [
    ({"tokens": np.ones((3, 12), "int64")}, "the model takes 1 input(s): ids"),
    ({"ids": np.ones((3, 12), "int32")}, "ids is int32, the model takes int64"),
    ({"ids": np.ones((3, 12), "float64")}, "ids is float64, the model takes int64"),
    ({"ids": np.ones((12,), "int64")}, "ids has rank 1"),
    ({"ids": np.ones((3, 11), "int64")}, "the model takes [N, 12]"),
    ({"ids": np.ones((0, 12), "int64")}, "same number (>= 1) of samples"),
])
def test_inputs_that_do_not_fit_are_refused_in_one_line(tagger_run, arrays, needle):
    ref, data, tmp = tagger_run
    path = tmp / "bad.npz"
    np.savez(path, **arrays)
    res = _invoke("verify", data["run"], "--inputs", path, "--model-code", ref)
    assert res.exit_code == 2 and needle in _one_line(res), res.output


def test_a_pickled_npz_is_refused(tagger_run):
    ref, data, tmp = tagger_run
    path = tmp / "pickled.npz"
    np.savez(path, ids=np.array([{"os": "system"}], dtype=object))
    res = _invoke("verify", data["run"], "--inputs", path, "--model-code", ref)
    assert res.exit_code == 6 and "pickle" in _one_line(res)


def test_not_an_npz_and_a_zip_bomb_are_refused(tagger_run, monkeypatch):
    import io

    ref, data, tmp = tagger_run
    path = tmp / "text.npz"
    path.write_text("ids,1,2,3\n")
    res = _invoke("verify", data["run"], "--inputs", path, "--model-code", ref)
    assert res.exit_code == 3 and "not an .npz archive" in _one_line(res)
    bomb = tmp / "bomb.npz"
    member = io.BytesIO()
    np.lib.format.write_array(member, np.zeros((1 << 16, 8), "int64"))  # 4 MiB of zeros, a few kB stored
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ids.npy", member.getvalue())
    import dlopt.data.inputs_file as inputs_file

    monkeypatch.setattr(inputs_file, "MAX_UNPACKED_BYTES", 1 << 20)
    res = _invoke("verify", data["run"], "--inputs", bomb, "--model-code", ref)
    assert res.exit_code == 3 and "unpacks to 4 MiB" in _one_line(res)


def test_an_array_header_that_declares_terabytes_is_refused_before_allocation(tagger_run):
    """A .npy header is read before numpy allocates the array it declares: 2**40 float64 in a 100-byte member."""
    import io

    ref, data, tmp = tagger_run
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": "<i8", "fortran_order": False, "shape": (2**37, 8)})
    member.write(b"\0" * 8)
    liar = tmp / "liar.npz"
    with zipfile.ZipFile(liar, "w") as zf:
        zf.writestr("ids.npy", member.getvalue())
    res = _invoke("verify", data["run"], "--inputs", liar, "--model-code", ref)
    assert res.exit_code == 3 and "MiB limit for example inputs" in _one_line(res)


def test_bench_times_on_the_users_inputs(tagger_run):
    ref, data, tmp = tagger_run
    path = tmp / "ids.npz"
    np.savez(path, ids=_padded_ids(5, 12))
    res = _invoke("bench", data["run"], "--backend", "eager", "--batch-sizes", "2", "--iterations", "3",
                  "--inputs", path, "--model-code", ref, "--json")
    assert res.exit_code == 0, res.output
    used = json.loads(res.stdout)["config"]["inputs_used"]
    assert used["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and used["samples"] == 5


def test_quantize_calibrates_on_the_users_inputs(tmp_path):
    ref, data = _export(tmp_path, "two")
    path = tmp_path / "calib.npz"
    rng = np.random.default_rng(2)
    np.savez(path, img=rng.normal(size=(40, 3, 16, 16)).astype("float32"),
             tab=rng.normal(size=(40, 8)).astype("float32"))
    res = _invoke("quantize", data["run"], "--method", "static", "--exporter", "legacy", "--max-drop", "100",
                  "--inputs", path, "--model-code", ref, "--json")
    assert res.exit_code == 0, res.output
    calib = json.loads(res.stdout)["calibration"]  # no data of its own: a quarter probes, a quarter is held out
    assert calib["samples"] == 20 and hashlib.sha256(path.read_bytes()).hexdigest() in calib["source"]


def test_static_without_data_names_the_inputs_option(tagger_run):
    ref, data, _tmp = tagger_run
    res = _invoke("quantize", data["run"], "--method", "static", "--model-code", ref)
    assert res.exit_code == 2 and "--inputs FILE.npz" in " ".join(res.output.split())


def test_pipeline_takes_the_signature(tmp_path):
    """`dlopt pipeline FILE:build --input-shape NAME:DTYPE:DIMS,...` builds, records and exports the named inputs."""
    import onnx

    ref = _write(tmp_path, "two")
    res = _invoke("pipeline", ref, "--input-shape", MODELS["two"][1], "--stages", "export", "--out", tmp_path / "pl",
                  "--json")
    assert res.exit_code == 0, res.output
    run = next((tmp_path / "pl").glob("*/*/manifest.json")).parent
    assert json.loads((run / "model.json").read_text())["config"]["inputs"] == MODELS["two"][1]
    assert [i.name for i in onnx.load(run / "model.onnx").graph.input] == ["img", "tab"]


@pytest.mark.parametrize("command", ["export", "bench", "quantize"])
def test_a_missing_inputs_file_fails_before_a_run_is_made(tmp_path, command):
    ref = _write(tmp_path, "tagger")
    res = _invoke(command, ref, "--input-shape", "ids:int64:12", "--inputs", tmp_path / "nope.npz",
                  "--out", tmp_path / "art")
    assert res.exit_code == 3 and "--inputs" in _one_line(res) and "nope.npz cannot be read" in res.output
    assert not (tmp_path / "art").exists()


def test_inputs_without_verification_is_a_usage_error(tmp_path):
    path = tmp_path / "ids.npz"
    np.savez(path, ids=_padded_ids(3, 12))
    res = _invoke("export", _write(tmp_path, "tagger"), "--input-shape", "ids:int64:12", "--no-verify",
                  "--inputs", path, "--out", tmp_path / "art")
    assert res.exit_code == 2 and "drop --no-verify" in _one_line(res)
    assert not (tmp_path / "art").exists()
