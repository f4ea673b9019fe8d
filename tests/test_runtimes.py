"""dlopt.runtime.formats: one record per artifact format, the only suffix map in dlopt, one ONNX Runtime session factory,
and `dlopt bench` held to the same trust rule as `dlopt verify` for files that would unpickle."""

from __future__ import annotations

import ast
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import dlopt
from dlopt.cli.app import app
from dlopt.core.errors import InputFileError, UnsafeFileError, UsageError
from dlopt.models.spec import ExportFormat
from dlopt.runtime import formats as runtimes
from dlopt.runtime.formats import FORMATS, artifact_bytes, find_format, format_of, get_format, ort_session

SOURCE = Path(dlopt.__file__).parent


@pytest.mark.parametrize("rec", FORMATS, ids=lambda r: r.format.value)
def test_every_format_round_trips_suffix_and_name(rec):
    assert format_of(Path("sub") / f"model{rec.suffix}") is rec
    assert format_of(f"MODEL{rec.suffix.upper()}") is rec  # suffixes are matched in any case
    assert get_format(rec.format.value) is rec
    assert runtimes.FORMAT_SUFFIX[rec.format] == rec.suffix and runtimes.SUFFIXES[rec.suffix] == rec.format.value
    assert rec.suffix == rec.suffix.lower() and rec.suffix.startswith(".")


def test_records_cover_every_export_format_once():
    assert sorted(r.format for r in FORMATS) == sorted(ExportFormat)
    assert len({r.suffix for r in FORMATS}) == len(FORMATS)


def test_unknown_suffix_and_name_say_the_choices():
    assert find_format("weights.safetensors") is None
    with pytest.raises(UsageError, match=r"not an export artifact; expected a \.onnx, \.ts, \.pt2, \.xml file"):
        format_of("notes.txt")
    with pytest.raises(UsageError, match="choose from onnx, torchscript, pt2, openvino"):
        get_format("tflite")


@pytest.mark.parametrize("rec", FORMATS, ids=lambda r: r.format.value)
def test_writer_and_loader_of_every_record_resolve(rec):
    assert callable(runtimes.resolve(rec.writer)) and callable(runtimes.resolve(rec.loader))


def test_pickle_capable_formats_are_exactly_the_torch_archives():
    assert {r.format for r in FORMATS if r.unpickles} == {ExportFormat.TORCHSCRIPT, ExportFormat.PT2}


def test_sidecars_count_in_size_and_ship_with_the_file(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x" * 10)
    (tmp_path / "model.onnx.data").write_bytes(b"x" * 1000)
    (tmp_path / "model.xml").write_bytes(b"x" * 7)
    assert artifact_bytes(tmp_path / "model.onnx") == 1010
    assert artifact_bytes(tmp_path / "model.xml") == 7  # no .bin yet
    (tmp_path / "model.bin").write_bytes(b"x" * 100)
    assert artifact_bytes(tmp_path / "model.xml") == 107
    from dlopt.report.decide import companions

    assert companions(str(tmp_path), "model.onnx") == ["model.onnx.data"]
    assert companions(str(tmp_path), "model.xml") == ["model.bin"]


def test_an_ir_without_its_weights_is_refused_in_one_line(tmp_path):
    (tmp_path / "model.xml").write_text("<net/>")
    with pytest.raises(InputFileError, match="no model.bin beside it"):
        runtimes.open_runner(tmp_path / "model.xml")


# -- no other module keeps its own map from artifact suffixes ------------------------------------------------------

def suffix_maps(source: str) -> list[int]:
    """Line numbers of dict literals with an artifact suffix (".onnx", ".xml"...) as a key or a value."""
    suffixes = set(runtimes.ARTIFACT_SUFFIXES)

    def is_suffix(node: ast.AST | None) -> bool:
        return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower() in suffixes

    return sorted(n.lineno for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.Dict) and any(is_suffix(x) for x in (*n.keys, *n.values)))


def test_the_detector_finds_the_maps_this_module_replaced():
    old = ('ARTIFACTS = {".onnx": Backend.ONNXRUNTIME, ".ts": Backend.TORCHSCRIPT}\n'
           'def f(path):\n    return {".onnx": "onnx", ".xml": "openvino"}.get(path.suffix, "pt2")\n'
           'SUFFIX = {ExportFormat.ONNX: ".onnx"}\n'
           'OK = {".json": "eager"}\n')
    assert suffix_maps(old) == [1, 3, 4]


def test_no_module_but_runtimes_maps_artifact_suffixes():
    files = sorted(SOURCE.rglob("*.py"))
    assert len(files) > 50 and SOURCE / "runtime" / "formats.py" in files
    found = {str(f.relative_to(SOURCE)): lines for f in files
             if f != SOURCE / "runtime" / "formats.py" and (lines := suffix_maps(f.read_text()))}
    assert found == {}, f"suffix maps outside dlopt/runtime/formats.py (use its records): {found}"


# -- nothing outside dlopt/runtime names a suffix or a runtime by hand --------------------------------------------

NOT_FILES = {"torch.onnx", "ai.onnx"}  # a logger's module name and the ONNX opset domain, not file names
RUNTIME_NAMES = ({r.runtime for r in FORMATS} | {str(r.format) for r in FORMATS}
                 | {str(r.bench_choice) for r in FORMATS}) - {"eager"}  # eager: the unexported model, no file
# Modules that still name a suffix or a runtime by hand; each should ask the records instead, and this can only
# shrink (the test fails when a listed module no longer needs its entry).
KNOWN = {
    "export/openvino.py": "its scratch ONNX file before conversion",
    "optimize/cache.py": "written while the optimize command is built",
    "optimize/stage.py": "written while the optimize command is built",
    "prune/config.py": "--target-runtime's choices",
    "quantize/histogram_calib.py": "ONNX Runtime's augmented calibration graph",
    "quantize/ort_quant.py": "ONNX Runtime's pre-processed scratch graphs",
    "verify/diagnose.py": "written while layer diagnosis is built",
    "verify/layermap.py": "written while layer diagnosis is built",
    "verify/layers.py": "written while layer diagnosis is built",
    "verify/reference.py": "written while verify --reference is built",
    "quantize/onnx_file.py": "written while quantizing a bare .onnx is built (builds by backend by hand)",
    "models/registry.py": "an example name in the list of what a NAME can be",
}


def by_hand(source: str) -> list[int]:
    """Lines that name an artifact suffix in a string (".xml", "model.onnx"; docstrings aside) or compare a value
    with a runtime or format name ("openvino", fmt == "onnx", fmt in ("torchscript", "pt2"))."""
    tree, suffixes = ast.parse(source), tuple(runtimes.ARTIFACT_SUFFIXES)
    docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef,
            ast.AsyncFunctionDef)) and n.body and isinstance(n.body[0], ast.Expr)}
    docs |= {id(k.value) for n in ast.walk(tree) if isinstance(n, ast.Call) for k in n.keywords
             if k.arg in ("help", "metavar")}  # an option's help text may show a file name
    lines = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs and \
                n.value.lower().endswith(suffixes) and " " not in n.value and n.value not in NOT_FILES:
            lines.add(n.lineno)
        if isinstance(n, ast.Compare):
            values = [x for c in (n.left, *n.comparators) for x in (c.elts if isinstance(c, (ast.Tuple, ast.List,
                      ast.Set)) else [c])]
            if any(isinstance(x, ast.Constant) and x.value in RUNTIME_NAMES for x in values):
                lines.add(n.lineno)
    return sorted(lines)


def test_the_by_hand_detector_finds_what_the_records_replaced():
    old = ('if Backend.OPENVINO not in backends and run.scan_artifacts((".xml",))[0]:\n'  # pipeline's bench step
           '    pass\n'
           'if fmt == "onnx":\n    pass\n'  # verify's metadata read
           'elif fmt in ("torchscript", "pt2"):\n    pass\n'
           'weights = path.with_suffix(".bin") if path.suffix == ".xml" else None\n'  # quantize's Built.bytes
           'model = run.path / "model.onnx"\n'
           'ok = name == "eager" or logger == "torch.onnx"\n'
           'def f():\n    """A docstring may say model.xml."""\n'
           'opt = typer.Option("--reference", metavar="REF.onnx")\n')
    assert by_hand(old) == [1, 3, 5, 7, 8]


def test_no_module_outside_the_runtime_names_a_suffix_or_a_runtime_by_hand():
    found = {str(f.relative_to(SOURCE)): lines for f in sorted(SOURCE.rglob("*.py"))
             if f.relative_to(SOURCE).parts[0] != "runtime" and (lines := by_hand(f.read_text()))}
    assert set(found) - set(KNOWN) == set(), {k: v for k, v in found.items() if k not in KNOWN}
    assert set(KNOWN) - set(found) == set(), "no longer names one by hand: drop it from KNOWN"


# -- the ONNX Runtime session factory ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "net.onnx"
    net = torch.nn.Sequential(torch.nn.Linear(6, 3), torch.nn.ReLU()).eval()
    with warnings.catch_warnings():  # the legacy exporter's deprecation notice: a tiny graph is all this needs
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (torch.randn(2, 6),), str(path), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}})
    return path


def test_ort_session_applies_threads_level_and_providers(tiny_onnx):
    import onnxruntime as ort

    s = ort_session(tiny_onnx, threads=2, inter_threads=1, optimization="basic")
    opts = s.get_session_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (2, 1)
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert s.get_providers() == ["CPUExecutionProvider"]
    assert ort_session(tiny_onnx).get_session_options().graph_optimization_level == \
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_ort_call_passes_run_options(tiny_onnx):
    import numpy as np

    s = ort_session(tiny_onnx, threads=1)
    feed = {"x": np.ones((2, 6), dtype=np.float32)}
    (out,) = runtimes.ort_call(s, feed, runtimes.ort_run_options())()
    assert out.shape == (2, 3)
    stop = runtimes.ort_run_options(log_severity=4)
    assert stop.log_severity_level == 4
    stop.terminate = True  # what a Ctrl-C handler sets: the run must stop, so the options reached it
    with pytest.raises(Exception, match="(?i)terminat"):
        runtimes.ort_call(s, feed, stop)()


def test_ort_session_refuses_a_bad_file_or_level_in_one_line(tmp_path, tiny_onnx):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07 not protobuf" * 4)
    with pytest.raises(InputFileError, match="broken.onnx is not a loadable ONNX model"):
        ort_session(bad)
    with pytest.raises(UsageError, match="one of disable, basic, extended, all"):
        ort_session(tiny_onnx, optimization="max")


# -- bench holds .ts/.pt2 files to verify's trust rule ------------------------------------------------------------

@pytest.fixture(scope="module")
def foreign_ts(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("foreign") / "model.ts"
    torch.jit.save(torch.jit.script(torch.nn.Linear(4, 2)), str(path))
    return path


def _error_line(output: str) -> str:
    lines = [ln for ln in output.strip().splitlines() if ln.startswith("error")]
    assert len(lines) == 1, output
    return lines[0]


def _check_message(path: Path) -> str:
    with pytest.raises(UnsafeFileError) as refused:  # the check `dlopt verify` runs before it loads anything
        runtimes.check_trusted(path)
    line = " ".join(str(refused.value).split())
    return line[:line.index("; ") + 1]  # the refusal and its reason; the remedy that follows is the command's


def test_bench_refuses_an_unrecorded_torchscript_file_like_verify(foreign_ts, tmp_path):
    result = CliRunner().invoke(app, ["bench", str(foreign_ts), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 6, result.output
    line = " ".join(_error_line(result.output).split())
    assert _check_message(foreign_ts) in line
    assert "bench the run that wrote it" in line and "dlopt verify FILE --trust-pickle" in line  # bench has no flag
    assert not (tmp_path / "runs").exists()  # refused before any run directory is made


def test_bench_refuses_an_unrecorded_file_inside_a_run(foreign_ts, tmp_path):
    from dlopt.core.runs import Run

    run = Run.create(tmp_path / "runs", "mlp", {})
    planted = run.path / "model.ts"
    shutil.copy(foreign_ts, planted)
    result = CliRunner().invoke(app, ["bench", str(planted), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 6, result.output
    assert _check_message(planted) in " ".join(_error_line(result.output).split())


def test_export_records_and_hashes_companion_files(tmp_path):
    """An IR's .bin (like ONNX external data) is part of the artifact: the export stage records and hashes it, so
    the trust rule and resume see a changed or missing weights file."""
    import json

    result = CliRunner().invoke(app, ["export", "mlp", "--tiny", "--format", "openvino", "--no-verify",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    manifest = json.loads(next(tmp_path.glob("mlp/*/manifest.json")).read_text())
    outputs = {o["path"]: o for o in manifest["stages"]["export"]["outputs"]}
    assert {"model.xml", "model.bin"} <= set(outputs) and len(outputs["model.bin"]["sha256"]) == 64


# -- bench backends come from records -----------------------------------------------------------------------------

def test_every_bench_backend_has_one_record_that_resolves():
    from dlopt.bench.config import Backend

    assert sorted(r.backend.value for r in runtimes.BENCH_RUNTIMES) == sorted(b.value for b in Backend)
    assert all(callable(runtimes.resolve(r.prepare)) for r in runtimes.BENCH_RUNTIMES)
    assert all(runtimes.bench_runtime(r.bench_backend) for r in FORMATS)  # every format's backend is benchable


def test_bench_prepare_dispatches_through_the_record_only(monkeypatch):
    """A runtime is one record: prepare() reaches a new backend's function through BY_BACKEND, no branch of its own."""
    import sys
    from types import SimpleNamespace

    from dlopt.bench.backends import Prepared, Variant, prepare
    from dlopt.bench.config import Backend, Device

    calls = []

    def fake(v, inputs, device, threads):
        calls.append((v.name, threads))
        return Prepared(lambda: None, 0.0, None, "")

    monkeypatch.setitem(sys.modules, "fake_runtime", SimpleNamespace(prepare=fake))
    monkeypatch.setitem(runtimes.BY_BACKEND, "openvino", runtimes.BenchRuntime(Backend.OPENVINO,
                                                                               "fake_runtime:prepare"))
    prepare(Variant("row", Backend.OPENVINO, module=torch.nn.Linear(2, 2)), (torch.ones(1, 2),), Device.CPU, 3)
    assert calls == [("row", 3)]


def test_bench_prepare_refuses_an_untrusted_pickle_file_whatever_backend(foreign_ts):
    """The trust rule sits in prepare(), before any backend's loader: a .ts handed to eager (or any record) too."""
    from dlopt.bench.backends import Variant, prepare
    from dlopt.bench.config import Backend, Device

    for backend in (Backend.TORCHSCRIPT, Backend.EAGER, Backend.COMPILE):
        with pytest.raises(UnsafeFileError):
            prepare(Variant("x", backend, path=foreign_ts), (torch.ones(1, 4),), Device.CPU, 1)
    prepare(Variant("x", Backend.TORCHSCRIPT, path=foreign_ts, trust_pickle=True), (torch.ones(1, 4),), Device.CPU, 1)


# -- start-up: `dlopt --help` reads no model table ----------------------------------------------------------------

def test_help_imports_no_model_table_nor_runtime():
    """The registry (every zoo module), the run machinery, openvino, onnxruntime and nncf stay out of `dlopt --help`
    (benchmarks/startup.py measures the time); `from dlopt import build_model` still works, on first use."""
    import subprocess
    import sys

    code = ("import sys; from dlopt.cli.app import app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'openvino', 'onnxruntime', 'nncf') "
            "or m.startswith(('dlopt.models.registry', 'dlopt.models.zoo')) or m in ('dlopt.core.runs', 'dlopt.core.staging')]; "
            "assert not bad, bad; "
            "from dlopt import build_model, list_specs; assert callable(build_model) and list_specs(); "
            "import dlopt; assert 'build_model' in dir(dlopt)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dlopt.nope  # noqa: B018
