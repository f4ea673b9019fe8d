"""Issue 15: user models whose outputs are tuples, dicts or nested structures of tensors, through every stage as a user
runs them (export with verification, prune and the export of the pruned copy, quantize on both backends, bench,
info). Every output is compared by name; an output that is not a tensor is refused with exit 4, never exit 70."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app

runner = CliRunner()

MODELS = '''
import collections
import torch
from torch import nn


class Base(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(8, 32), nn.Linear(32, 32)
        self.fc, self.emb = nn.Linear(32, 5), nn.Linear(32, 6)

    def hidden(self, x):
        return torch.relu(self.l2(torch.relu(self.l1(x))))


class TupleNet(Base):
    def forward(self, x):
        h = self.hidden(x)
        return self.fc(h), self.emb(h)


class DictNet(Base):
    def forward(self, x):
        h = self.hidden(x)
        return {"logits": self.fc(h), "embedding": self.emb(h)}


class NestedNet(nn.Module):
    """Images in; "aux"'s second tensor is the pooled feature map of conv2: its channels are an output."""

    def __init__(self):
        super().__init__()
        self.conv, self.conv2 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.fc, self.emb = nn.Linear(16, 5), nn.Linear(16, 6)

    def forward(self, x):
        f = torch.relu(self.conv2(torch.relu(self.conv(x)))).mean(dim=(2, 3))
        return {"logits": self.fc(f), "aux": (self.emb(f), f)}


Out = collections.namedtuple("Out", "logits embedding")


class NamedNet(Base):
    def forward(self, x):
        h = self.hidden(x)
        return Out(self.fc(h), self.emb(h))


class NotTensor(Base):
    def forward(self, x):
        return {"logits": self.fc(self.hidden(x)), "count": 3}


def tuple_model():
    return TupleNet()


def dict_model():
    return DictNet()


def nested_model():
    return NestedNet()


def namedtuple_model():
    return NamedNet()


def not_tensor():
    return NotTensor()
'''

# kind -> (output names, per-sample output shapes): dict keys and nested paths name the outputs
KINDS = {
    "tuple": (["output0", "output1"], [[5], [6]]),
    "dict": (["logits", "embedding"], [[5], [6]]),
    "nested": (["logits", "aux.0", "aux.1"], [[5], [6], [16]]),
    "namedtuple": (["logits", "embedding"], [[5], [6]]),  # saved as a flat tuple: its class is the user's
}
SHAPE = {"tuple": "8", "dict": "8", "nested": "3,8,8", "namedtuple": "8"}  # --input-shape: a vector, or an image
FORMATS = ("onnx", "torchscript", "pt2")


def _invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("user_outputs")
    (root / "models.py").write_text(MODELS)
    return root


def _json(res) -> dict:
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def exported(workdir) -> dict[str, dict]:
    """One export (all three formats, verified) per kind, shared by the tests that read it."""
    return {}


def _export(workdir: Path, exported: dict, kind: str) -> dict:
    if kind not in exported:
        exported[kind] = _json(_invoke("export", f"{workdir}/models.py:{kind}_model", "--input-shape", SHAPE[kind],
                                       "--format", ",".join(FORMATS), "--out", workdir / "runs", "--json"))
    return exported[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_export_verifies_every_output_by_name(workdir, exported, kind):
    import onnx

    names, shapes = KINDS[kind]
    data = _export(workdir, exported, kind)
    assert not data["failures"] and sorted(data["artifacts"]) == sorted(FORMATS), data["failures"]
    for fmt in FORMATS:
        rep = data["verification"][fmt]
        assert rep["passed"], (fmt, rep["failures"])
        assert list(rep["outputs"]) == names, (fmt, rep["outputs"])  # every output, by name, in order
        assert [o["shape"][1:] for o in rep["outputs"].values()] == shapes
        assert all(o["passed"] and o["max_abs"] is not None for o in rep["outputs"].values())
        compared = [o["name"] for o in rep["cases"][0]["outputs"]]
        assert compared == names and len(rep["cases"]) >= 3  # several batch sizes, every output in each
    proto = onnx.load(data["artifacts"]["onnx"])
    assert [o.name for o in proto.graph.output] == names  # ONNX outputs named after the dict keys / nested paths
    assert {p.key: p.value for p in proto.metadata_props}["outputs"] == ",".join(names)
    import torch

    from dlopt.export import load_artifact

    for fmt in FORMATS:  # a runner gives every consumer (bench, quantize, evaluate) the flat tuple of tensors
        x = torch.randn(3, *map(int, SHAPE[kind].split(",")))
        got = load_artifact(Path(data["artifacts"][fmt]), trust_pickle=True)(x)
        assert isinstance(got, tuple) and [list(t.shape[1:]) for t in got] == shapes, (fmt, type(got))
    if kind == "dict":  # traced with strict=False: the .ts file returns the dict itself, keys in order
        out = torch.jit.load(data["artifacts"]["torchscript"])(x)
        assert isinstance(out, dict) and list(out) == names and out["embedding"].shape == (3, 6)


def test_export_and_verify_tables_show_each_output(workdir):
    out = workdir / "tables"
    res = _invoke("export", f"{workdir}/models.py:dict_model", "--input-shape", "8", "--format", "pt2", "--out", out)
    assert res.exit_code == 0, res.output
    table = res.output.split("per output", 1)[1]
    assert "logits" in table and "embedding" in table and table.count("pass") == 2, res.output
    run = next(out.rglob("model.pt2")).parent
    res = _invoke("verify", run, "--model-code", f"{workdir}/models.py:dict_model")  # as a user re-checks a run
    assert res.exit_code == 0, res.output
    table = res.output.split("per output", 1)[1]
    assert "logits" in table and "embedding" in table and table.count("pass") == 2, res.output


def test_nested_torchscript_says_it_returns_a_flat_tuple(workdir, exported):
    notes = " ".join(_export(workdir, exported, "nested")["notes"])
    assert "flat tuple, in this order: logits, aux.0, aux.1" in notes, notes


def test_a_namedtuple_output_is_saved_as_a_flat_tuple_and_says_so(workdir, exported):
    notes = " ".join(_export(workdir, exported, "namedtuple")["notes"])
    assert "the .pt2 program returns its tensors as a flat tuple, in this order: logits, embedding" in notes, notes


def test_verification_fails_on_the_one_wrong_output(workdir):
    """A wrong second output fails verification, named; the first output still passes."""
    import torch

    from dlopt.models.registry import build_model
    from dlopt.verify import ElementwiseTolerance, make_cases, verify_runner
    from dlopt.verify.core import named_references

    model, spec, cfg = build_model(f"{workdir}/models.py:dict_model", input_shape=(8,))
    cases = make_cases(spec, cfg)
    refs, names = named_references(model, cases, spec.output_names)

    def wrong_embedding(x: torch.Tensor) -> dict:
        out = model(x)
        return {"logits": out["logits"], "embedding": out["embedding"] + 1e-3}

    with torch.no_grad():
        report = verify_runner(wrong_embedding, cases, refs, spec, ElementwiseTolerance(), names=names)
    assert not report.passed
    assert {out for _, out, _ in report.failures()} == {"embedding"}
    per = report.per_output()
    assert per["logits"]["passed"] and not per["embedding"]["passed"]


@pytest.mark.parametrize("kind", KINDS)
def test_prune_then_export_the_pruned_copy(workdir, kind):
    names, shapes = KINDS[kind]
    out = workdir / f"prune_{kind}"
    pruned = _json(_invoke("prune", f"{workdir}/models.py:{kind}_model", "--input-shape", SHAPE[kind],
                           "--ratio", "0.3", "--out", out, "--json"))
    assert pruned["params"]["after"] < pruned["params"]["before"]
    ckpt = next(out.rglob("pruned/model.json"))
    data = _json(_invoke("export", "--checkpoint", ckpt, "--trust-code", "--format", ",".join(FORMATS),
                         "--out", out, "--json"))
    for fmt in FORMATS:
        rep = data["verification"][fmt]
        assert rep["passed"] and list(rep["outputs"]) == names, (fmt, rep["failures"])
        # every output keeps its width: a hidden layer returned as an output is an output layer too
        assert [o["shape"][1:] for o in rep["outputs"].values()] == shapes


def test_taylor_prune_of_a_dict_model_ranks_by_every_output(workdir):
    res = _invoke("prune", f"{workdir}/models.py:dict_model", "--input-shape", "8", "--ratio", "0.3",
                  "--importance", "taylor", "--out", workdir / "taylor", "--json")
    data = _json(res)
    assert data["params"]["after"] < data["params"]["before"]


@pytest.mark.parametrize("kind,backend", [("dict", "onnxruntime"), ("dict", "torch"), ("nested", "onnxruntime"),
                                          ("nested", "torch"), ("tuple", "onnxruntime"), ("namedtuple", "torch")])
def test_quantize(workdir, kind, backend):
    names, _ = KINDS[kind]
    data = _json(_invoke("quantize", f"{workdir}/models.py:{kind}_model", "--input-shape", SHAPE[kind], "--method",
                         "dynamic", "--backend", backend, "--out", workdir / f"q_{kind}_{backend}", "--json"))
    assert data["backend"] == backend and data["relative_error"] < 0.1, data
    shapes = data["verification"]["shapes"]
    assert shapes["passed"] and list(shapes["outputs"]) == names, shapes


def test_bench_runs_every_format_of_a_dict_model(workdir, exported):
    run = Path(_export(workdir, exported, "dict")["artifacts"]["onnx"]).parent
    data = _json(_invoke("bench", run, "--trust-code", "--backend", "eager,onnxruntime,pt2", "--batch-sizes", "2",
                         "--iterations", "3", "--warmup", "1", "--json"))
    rows = data["rows"]
    assert len(rows) >= 3 and all(r["status"] == "ok" for r in rows), rows


def test_bench_of_a_new_run_traces_nested_outputs(workdir):
    """torchscript (traced in memory) and OpenVINO (converted from the module) take a nested output too."""
    import importlib.util

    backends = ["eager", "torchscript", "compile", "onnxruntime"] + \
        (["openvino"] if importlib.util.find_spec("openvino") else [])
    data = _json(_invoke("bench", f"{workdir}/models.py:nested_model", "--input-shape", SHAPE["nested"], "--backend",
                         ",".join(backends), "--batch-sizes", "2", "--iterations", "3", "--warmup", "1",
                         "--out", workdir / "bench", "--json"))
    assert {r["backend"]: r["status"] for r in data["rows"]} == dict.fromkeys(backends, "ok"), data["rows"]


def test_info_lists_the_outputs_the_model_returns(workdir):
    data = _json(_invoke("info", f"{workdir}/models.py:nested_model", "--input-shape", "3,8,8", "--json"))
    assert [(o["name"], o["shape"]) for o in data["outputs"]] == [
        ("logits", [1, 5]), ("aux.0", [1, 6]), ("aux.1", [1, 16])]


@pytest.mark.parametrize("command", [("export",), ("prune", "--ratio", "0.3"), ("quantize", "--method", "dynamic")])
def test_an_output_that_is_not_a_tensor_is_refused_with_exit_4(workdir, command):
    res = _invoke(*command, f"{workdir}/models.py:not_tensor", "--input-shape", "8", "--out", workdir / "bad")
    assert res.exit_code == 4, res.output
    assert "output 'count' is int, not a tensor" in res.output and "Traceback" not in res.output
