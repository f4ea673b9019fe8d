"""Hostile files (issue 21): nothing a file says runs code, every file read is bounded, regular, schema-checked,
and its paths stay inside the run. Each class is tested through the CLI: exit code, one line, no traceback,
and the marker a payload would create never appears. (test_reliability.py covers plain pickle checkpoints.)"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli.app import app

runner = CliRunner()

EVIL = "import pathlib\npathlib.Path({marker!r}).touch()\n\ndef f():\n    pathlib.Path({marker!r}).touch()\n"
USER_MODEL = "import torch\n\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh())\n"


def _invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _refused(result, code: int, *fragments: str) -> str:
    """Exit `code`, one error line containing the fragments, no traceback."""
    out = result.output
    assert result.exit_code == code, out
    assert "Traceback" not in out and "internal error" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    flat = " ".join(out.split())
    for fragment in fragments:
        assert fragment in flat, (fragment, out)
    return flat


def _make_run(root: Path, name: str, **opts) -> Path:
    """A run as dlopt writes it (model record + a TorchScript and a .pt2 file recorded with their sha256), made
    through the library so these tests do not depend on the export stage's own code."""
    from dlopt.contract.target import TargetOptions, resolve_target
    from dlopt.core.runs import file_entry
    from dlopt.export.pt2 import export_pt2
    from dlopt.export.torchscript import export_torchscript
    from dlopt.models.registry import make_inputs

    target = resolve_target(TargetOptions(name=name, root=root, **opts))
    example = make_inputs(target.spec, target.config, 2)
    files = [target.run.path / "model.ts", target.run.path / "model.pt2"]
    export_torchscript(target.model, example, target.spec, files[0])
    export_pt2(target.model, example, target.spec, target.config, files[1])
    target.run.update(lambda m: m["stages"].update(
        export={"status": "done", "config": {}, "inputs": [], "metrics": {},
                "outputs": [file_entry(f, target.run.path) for f in files]}))
    return target.run.path


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory) -> Path:
    return _make_run(tmp_path_factory.mktemp("base") / "artifacts", "mlp", tiny=True)


@pytest.fixture
def run_copy(mlp_run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "artifacts" / "mlp" / mlp_run.name
    shutil.copytree(mlp_run, dst)
    return dst


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# -- class 1: a record names code ----------------------------------------------------------------------------------

def _code_refs(tmp_path: Path, marker: Path) -> dict[str, str]:
    evil = tmp_path / "x" / "evil.py"
    evil.parent.mkdir()
    evil.write_text(EVIL.format(marker=str(marker)))
    (tmp_path / "x" / "evil_mod.py").write_text(EVIL.format(marker=str(marker)))
    return {"abs_file": f"{evil}:f", "rel_file": "../x/evil.py:f", "module": "evil_mod:f", "stdlib": "os:system"}


@pytest.mark.parametrize("kind", ["abs_file", "rel_file", "module", "stdlib"])
@pytest.mark.parametrize("how", ["checkpoint", "run_dir", "latest_run", "verify", "bench", "prune", "quantize"])
def test_a_record_naming_code_is_refused(kind, how, run_copy: Path, tmp_path: Path, monkeypatch):
    marker = tmp_path / "pwned"
    ref = _code_refs(tmp_path, marker)[kind]
    monkeypatch.syspath_prepend(str(tmp_path / "x"))  # the module form would import if anything asked
    monkeypatch.chdir(run_copy)
    _edit_json(run_copy / "model.json", lambda r: r.update(arch=ref))
    out = tmp_path / "artifacts"
    args = {"checkpoint": ["export", "--checkpoint", run_copy / "model.json", "--out", tmp_path / "o"],
            "run_dir": ["export", run_copy, "--out", out], "latest_run": ["export", "--out", out],
            "verify": ["verify", run_copy], "bench": ["bench", run_copy, "--budget-s", "0.05", "--out", out],
            "prune": ["prune", run_copy, "--out", out], "quantize": ["quantize", run_copy, "--out", out]}[how]
    flat = _refused(_invoke(*args), 6, "--trust-code", "--model-code")
    assert ("evil" in flat) if kind != "stdlib" else ("module os" in flat)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["abs_file", "module"])
@pytest.mark.parametrize("command", ["train", "pipeline"])
def test_a_stored_config_naming_code_is_refused_on_resume(kind, command, run_copy: Path, tmp_path: Path, monkeypatch):
    marker = tmp_path / "pwned"
    ref = _code_refs(tmp_path, marker)[kind]
    monkeypatch.syspath_prepend(str(tmp_path / "x"))
    if command == "train":
        change = lambda m: m["stages"].update(train={"status": "interrupted", "config": {"train": {"arch": ref}}})
    else:
        change = lambda m: m.update(pipeline={"config": {"arch": ref}})
    _edit_json(run_copy / "manifest.json", change)
    _refused(_invoke(command, "--resume", run_copy, "--out", tmp_path / "o"), 6, "--trust-code")
    assert not marker.exists()


def test_recorded_code_file_is_what_is_judged_not_the_arch(run_copy: Path, tmp_path: Path):
    """A record that names a harmless reference but points its code at another file is judged by that file."""
    marker = tmp_path / "pwned"
    refs = _code_refs(tmp_path, marker)
    mine = tmp_path / "mine.py"
    mine.write_text(USER_MODEL)
    evil = Path(refs["abs_file"].rpartition(":")[0])
    _edit_json(run_copy / "model.json", lambda r: r.update(
        arch=f"{mine}:build", code={"file": str(evil), "sha256": hashlib.sha256(evil.read_bytes()).hexdigest(),
                                    "attr": "build"}))
    flat = _refused(_invoke("verify", run_copy, "--model-code", f"{mine}:build"), 6, str(evil))
    assert not marker.exists() and "--trust-code" in flat


@pytest.fixture
def user_run(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """A run made from a user model named by a relative path, as `dlopt export ../models/my_models.py:build`."""
    src = tmp_path / "models" / "my_models.py"
    src.parent.mkdir()
    src.write_text(USER_MODEL)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return _make_run(Path("artifacts"), "../models/my_models.py:build", input_shape=(6,)), src


def test_a_user_model_run_records_its_code_and_works_from_any_directory(user_run, tmp_path: Path, monkeypatch):
    run, src = user_run
    record = json.loads((run / "model.json").read_text())
    assert record["code"] == {"file": str(src.resolve()), "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
                              "attr": "build"}
    monkeypatch.chdir(tmp_path)  # another directory: the relative reference in "arch" no longer resolves
    _refused(_invoke("verify", run), 6, "my_models.py", "--trust-code")
    _refused(_invoke("verify", run, "--model-code", f"{tmp_path / 'other.py'}:build"), 6, "--trust-code")
    for trust in (["--trust-code"], ["--model-code", f"{src}:build"]):
        res = _invoke("verify", run, *trust)
        assert res.exit_code == 0, res.output
    # named once for this run: the per-user trust list vouches for the file in this run while it is unchanged
    assert _invoke("verify", run).exit_code == 0


def test_a_name_trusted_by_one_command_is_not_trusted_by_the_next(run_copy: Path, tmp_path: Path):
    """`dlopt info /x/evil.py:f` runs that file (the user named it); a later command reading a record that names
    the same file must not inherit that trust (bench takes no NAME argument that would reset it)."""
    marker = tmp_path / "pwned"
    ref = _code_refs(tmp_path, marker)["abs_file"]
    _invoke("info", ref, "--input-shape", "4")
    assert marker.exists()  # named on the command line: it ran
    marker.unlink()
    _edit_json(run_copy / "model.json", lambda r: r.update(arch=ref))
    _refused(_invoke("bench", run_copy, "--budget-s", "0.05", "--out", tmp_path / "b"), 6, "--trust-code")
    assert not marker.exists()


def test_a_changed_user_model_file_is_refused(user_run, tmp_path: Path):
    run, src = user_run
    marker = tmp_path / "pwned"
    src.write_text(USER_MODEL + EVIL.format(marker=str(marker)))
    _refused(_invoke("verify", run, "--trust-code"), 6, "changed since the run recorded it")
    assert not marker.exists()


def test_trust_does_not_leak_into_the_next_command(user_run, run_copy: Path, tmp_path: Path):
    run, _ = user_run
    assert _invoke("verify", run, "--trust-code").exit_code == 0
    marker = tmp_path / "pwned"
    ref = _code_refs(tmp_path, marker)["abs_file"]
    _edit_json(run_copy / "model.json", lambda r: r.update(arch=ref))
    _refused(_invoke("bench", run_copy, "--budget-s", "0.05", "--out", tmp_path / "b"), 6, "--trust-code")
    assert not marker.exists()


# -- class 2: an artifact that would unpickle or run code on load ----------------------------------------------------

class Trap:
    """Unpickling this creates the marker file: proof that a loader ran code hidden in the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').close()",)


def _rewrite(src: Path, dst: Path, change) -> Path:
    """Copy a zip archive member by member, letting `change(members, root)` edit the bytes on the way."""
    with zipfile.ZipFile(src) as zin:
        members = {i.filename: zin.read(i) for i in zin.infolist()}
    change(members, next(iter(members)).split("/")[0])
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for name, data in members.items():
            zout.writestr(name, data)
    return dst


def _payload_pickled(kind: str, marker: Path):
    def change(m: dict, root: str) -> None:
        key = f"{root}/data/{kind}s/model_{kind}s_config.json"
        cfg = json.loads(m[key])
        if kind == "weight":  # the real weight's payload becomes a pickle, its config says so
            meta = next(iter(cfg["config"].values()))
            meta["use_pickle"] = True
        else:  # an opaque object constant: torch pickle.loads it
            meta = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}
            cfg["config"]["evil"] = meta
        m[f"{root}/data/{kind}s/{meta['path_name']}"] = pickle.dumps(Trap(marker))
        m[key] = json.dumps(cfg).encode()
    return change


def _sample_inputs_pickled(marker: Path):
    def change(m: dict, root: str) -> None:
        m[f"{root}/data/sample_inputs/model.pt"] = pickle.dumps(Trap(marker))
    return change


def _aoti(marker: Path):
    def change(m: dict, root: str) -> None:
        m[f"{root}/data/aotinductor/model/model.so"] = b"\x7fELF not really"
    return change


def _legacy_version(marker: Path):
    def change(m: dict, root: str) -> None:
        m["version"] = b"1"
    return change


HOSTILE_PT2 = ("weight_use_pickle", "opaque_obj_constant", "sample_inputs", "aotinductor", "legacy_version")


def _hostile_pt2(kind: str, src: Path, dst: Path, marker: Path) -> Path:
    change = {"weight_use_pickle": _payload_pickled("weight", marker),
              "opaque_obj_constant": _payload_pickled("constant", marker),
              "sample_inputs": _sample_inputs_pickled(marker), "aotinductor": _aoti(marker),
              "legacy_version": _legacy_version(marker)}[kind]
    return _rewrite(src, dst, change)


def _bench_prepare(path: Path) -> None:
    """dlopt bench's own loader for a file row (the CLI refuses stray .ts/.pt2 earlier, for want of input shapes)."""
    from dlopt.bench.backends import Variant, prepare
    from dlopt.bench.config import Backend, Device

    backend = Backend.TORCHSCRIPT if path.suffix == ".ts" else Backend.EAGER
    prepare(Variant("file", backend, path=path), (), Device.CPU, 1)


@pytest.mark.parametrize("kind", HOSTILE_PT2)
@pytest.mark.parametrize("command", ["verify", "bench"])
def test_a_pt2_that_would_unpickle_is_refused(kind, command, mlp_run: Path, tmp_path: Path):
    from dlopt.core.errors import UnsafeFileError

    marker = tmp_path / "pwned"
    evil = _hostile_pt2(kind, mlp_run / "model.pt2", tmp_path / "evil.pt2", marker)
    reason = {"weight_use_pickle": "stored as a pickle", "opaque_obj_constant": "stored as a pickle",
              "sample_inputs": "sample inputs", "aotinductor": "AOTInductor", "legacy_version": "legacy loader"}[kind]
    if command == "verify":
        _refused(_invoke("verify", evil, "--checkpoint", mlp_run / "model.json"), 6, "--trust-pickle", str(evil), reason)
    else:
        with pytest.raises(UnsafeFileError, match=reason):
            _bench_prepare(evil)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["weight_use_pickle", "opaque_obj_constant", "sample_inputs"])
def test_the_pt2_traps_are_armed(kind, mlp_run: Path, tmp_path: Path):
    """Control: torch.export.load really runs these payloads, so the refusals above are what stops them."""
    import torch

    marker = tmp_path / "pwned"
    evil = _hostile_pt2(kind, mlp_run / "model.pt2", tmp_path / "evil.pt2", marker)
    try:
        torch.export.load(str(evil))
    except Exception:  # noqa: BLE001 - the payload runs before torch notices the file is odd
        pass
    assert marker.exists()


def test_a_torchscript_file_no_run_records_is_refused_by_verify_and_bench(mlp_run: Path, tmp_path: Path):
    from dlopt.core.errors import UnsafeFileError

    stray = tmp_path / "copy.ts"
    stray.write_bytes((mlp_run / "model.ts").read_bytes())
    _refused(_invoke("verify", stray, "--checkpoint", mlp_run / "model.json"), 6, "--trust-pickle", "TorchScript")
    with pytest.raises(UnsafeFileError, match="--trust-pickle"):
        _bench_prepare(stray)
    _bench_prepare(mlp_run / "model.ts")  # recorded by its run's manifest: bench loads it


def test_trust_pickle_is_the_users_explicit_opt_in(mlp_run: Path, tmp_path: Path):
    """With --trust-pickle the same file is loaded (and its payload runs): the refusal above is the only barrier."""
    marker = tmp_path / "pwned"
    evil = _hostile_pt2("weight_use_pickle", mlp_run / "model.pt2", tmp_path / "evil.pt2", marker)
    res = _invoke("verify", evil, "--checkpoint", mlp_run / "model.json", "--trust-pickle")
    assert "Traceback" not in res.output and marker.exists(), res.output


def test_dlopt_own_pt2_and_trusted_files_still_load(mlp_run: Path, tmp_path: Path):
    from dlopt.runtime.loader import load_artifact

    stray = tmp_path / "copy.pt2"
    stray.write_bytes((mlp_run / "model.pt2").read_bytes())
    load_artifact(stray)  # plain tensors and weights_only sample inputs: nothing to unpickle, no trust needed
    load_artifact(mlp_run / "model.ts")  # recorded with its sha256 in the run's manifest
    res = _invoke("verify", tmp_path / "copy.pt2", "--checkpoint", mlp_run / "model.json")
    assert res.exit_code == 0, res.output


# -- class 3: a file of the right name and the wrong shape -----------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000
BAD_RECORDS = {
    "a list": ("[]", "not a dlopt checkpoint record"),
    "a string config": (lambda r: {**r, "config": "hidden_sizes=8"}, "config"),
    "a 400-digit integer": (lambda r: {**r, "config": {**r["config"], "num_classes": 10**400}}, "401 digits"),
    "deeply nested arrays": ('{"format": "dlopt-checkpoint", "arch": "mlp", "config": {"x": ' + DEEP + "}}",
                             "nested too deeply"),
    "nested within the parser's reach": (lambda r: {**r, "metrics": {"m": json.loads("[" * 60 + "]" * 60)}},
                                         "nested deeper"),
    "non-UTF-8 bytes": (b'{"format": "dlopt-checkpoint", "arch": "ml\xff\xfe"}', "not UTF-8"),
    "an arch that is a list": (lambda r: {**r, "arch": ["mlp"]}, "arch"),
    "a structure that sets dunder attributes": (lambda r: {**r, "structure": {
        "format": "dlopt-pruned-structure/1", "attributes": {"": {"__class__": 1}}, "shapes": {}}}, "structure"),
    "a negative tensor shape": (lambda r: {**r, "structure": {
        "format": "dlopt-pruned-structure/1", "attributes": {}, "shapes": {"0.weight": [-1, 4]}}}, "structure"),
}


def _write_hostile(path: Path, content) -> None:
    if callable(content):
        content = json.dumps(content(json.loads(path.read_text())))
    path.write_bytes(content if isinstance(content, bytes) else content.encode())


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
@pytest.mark.parametrize("how", ["checkpoint", "run"])
def test_a_record_of_the_wrong_shape_fails_with_one_line(case, how, run_copy: Path, tmp_path: Path):
    content, needle = BAD_RECORDS[case]
    _write_hostile(run_copy / "model.json", content)
    args = (["export", "--checkpoint", run_copy / "model.json", "--out", tmp_path / "o"] if how == "checkpoint"
            else ["verify", run_copy])
    _refused(_invoke(*args), 3, needle)
    assert not (tmp_path / "o").exists()


BAD_MANIFESTS = {
    "a list": ("[]", "top level"),
    "stages as a string": (lambda m: {**m, "stages": "export"}, "stages"),
    "outputs as an object": (lambda m: {**m, "stages": {"export": {"outputs": {"path": "model.ts"}}}}, "outputs"),
    "a 400-digit integer": (lambda m: {**m, "schema_version": 10**400}, "401 digits"),
    "deeply nested arrays": ('{"stages": ' + DEEP + "}", "nested too deeply"),
    "non-UTF-8 bytes": (b'{"arch": "\xc3\x28"}', "not UTF-8"),
    "not JSON": ("{'arch': 'mlp'}", "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_a_manifest_of_the_wrong_shape_fails_with_one_line_and_runs_names_it(case, mlp_run: Path, run_copy: Path):
    content, needle = BAD_MANIFESTS[case]
    _write_hostile(run_copy / "manifest.json", content)
    _refused(_invoke("verify", run_copy), 3, needle)
    root = run_copy.parent.parent
    shutil.copytree(mlp_run, root / "mlp" / "good")  # one good run beside the bad one
    res = _invoke("runs", "--out", root, "--json")
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output and "skipped" in res.output and run_copy.name in " ".join(res.output.split())
    listed = json.loads(res.stdout)
    assert [Path(r["run"]).name if "run" in r else r for r in listed] and len(listed) == 1


@pytest.fixture
def alarm():
    """A read that blocks fails the test after 20 s instead of hanging it."""
    import signal

    def boom(*_):
        raise TimeoutError("a read blocked")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "dev_urandom", "directory", "huge"])
@pytest.mark.parametrize("name", ["manifest.json", "model.json", "model.ts"])
def test_a_file_that_is_not_a_regular_bounded_file_is_refused_without_hanging(kind, name, run_copy, tmp_path, alarm):
    target = run_copy / name
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    elif kind.startswith("dev_"):
        target.symlink_to(f"/dev/{kind[4:]}")
    elif kind == "directory":
        target.mkdir()
    else:
        target.write_bytes(b" " * (17 << 20))
    if name == "model.ts":  # an artifact the manifest records, replaced by something that is not a file
        if kind == "huge":
            return  # a big artifact is legitimate; only non-regular files are refused
        _refused(_invoke("verify", run_copy), 3, "points outside" if kind.startswith("dev_") else "not a regular file")
        return
    needle = {"fifo": "a FIFO", "dev_zero": "a device", "dev_urandom": "a device", "huge": "more than",
              "directory": "a directory" if name == "manifest.json" else "model.json/model.json not found"}[kind]
    args = ["verify", run_copy] if name == "manifest.json" else ["export", "--checkpoint", target, "--out", tmp_path]
    _refused(_invoke(*args), 3, needle)
    if name == "manifest.json":
        res = _invoke("runs", "--out", run_copy.parent.parent)
        assert res.exit_code == 0 and "skipped" in res.output, res.output


# -- class 4: paths inside files ------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["model_checkpoint", "export_output", "stage_input", "symlinked_output"])
def test_a_path_read_from_a_manifest_stays_inside_the_run(where, run_copy: Path, tmp_path: Path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for f in ("model.json", "model.safetensors", "model.ts"):
        shutil.copy(run_copy / f, outside / f)
    manifest = json.loads((run_copy / "manifest.json").read_text())
    export = manifest["stages"]["export"]
    if where == "model_checkpoint":
        manifest["model"]["checkpoint"] = "../../../elsewhere/model.json"
        args, needle = ["export", run_copy, "--format", "onnx", "--out", tmp_path / "o"], "model.checkpoint"
    elif where == "export_output":
        export["outputs"] = [{**export["outputs"][0], "path": str(outside / "model.ts")}]
        args, needle = ["verify", run_copy], "outputs"
    elif where == "stage_input":
        export["inputs"] = [{"path": str(outside / "model.json"), "sha256": None}]
        args, needle = ["verify", run_copy], "outside"
    else:  # the recorded name is innocent, the file behind it is a symlink out of the run
        (run_copy / "model.ts").unlink()
        (run_copy / "model.ts").symlink_to(outside / "model.ts")
        args, needle = ["verify", run_copy], "outside"
    (run_copy / "manifest.json").write_text(json.dumps(manifest))
    _refused(_invoke(*args), 3, needle)


# -- class 5: resource bombs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".pt2", ".ts"])
@pytest.mark.parametrize("shape", ["one huge member", "many members"])
def test_a_zip_bomb_is_refused_before_extraction(suffix, shape, mlp_run: Path, tmp_path: Path, monkeypatch):
    """A tiny file that would expand past the ceiling is refused, even with --trust-pickle (it is not a trust issue)."""
    from dlopt.runtime import archive

    monkeypatch.setattr(archive, "RATIO_FLOOR", 1 << 20)  # the same rule at test scale: 1 MB instead of 256 MB
    monkeypatch.setattr(archive, "MAX_MEMBERS", 500)
    bomb = tmp_path / f"bomb{suffix}"

    def change(m: dict, root: str) -> None:
        if shape == "one huge member":
            m[f"{root}/data/weights/weight_0"] = b"\0" * (4 << 20)
        else:
            m.update({f"{root}/extra/f{i}": b"" for i in range(1000)})
    _rewrite(mlp_run / f"model{suffix}", tmp_path / "plain.zip", change)
    with zipfile.ZipFile(tmp_path / "plain.zip") as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    assert bomb.stat().st_size < (1 << 20)
    for trust in ([], ["--trust-pickle"]):
        _refused(_invoke("verify", bomb, "--checkpoint", mlp_run / "model.json", *trust), 3, "zip bomb",
                 archive.MAX_UNCOMPRESSED_ENV)
    if shape == "one huge member":  # the override lifts the byte ceiling for a file the user vouches for
        monkeypatch.setenv(archive.MAX_UNCOMPRESSED_ENV, str(1 << 40))
        with zipfile.ZipFile(bomb) as zf:
            archive.check_bomb(bomb, zf)
