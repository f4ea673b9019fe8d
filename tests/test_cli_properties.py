"""Property tests over CLI option values: whatever the values, dlopt exits with a message, never a traceback."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dlopt.cli.app import INTERNAL_ERROR_EXIT, app
from dlopt.core.errors import EXIT_CODES

runner = CliRunner()
names = st.sampled_from(["mlp", "lenet5", "lstm", "gan", "resnet18", "nope", "", "torchvision:x", "a.py:f"])
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=10)


def _check(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code in EXIT_CODES and result.exit_code != INTERNAL_ERROR_EXIT, (args, result.output)
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        assert result.output.strip().startswith("error:"), (args, result.output)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=names, key=st.sampled_from(["num_classes", "hidden_size", "dropout", "widths", "x"]), value=texts,
       batch=st.one_of(st.integers(-3, 3).map(str), texts))
def test_info_options(name: str, key: str, value: str, batch: str) -> None:
    _check(["info", name, "--tiny", "--set", f"{key}={value}", "--batch-size", batch])


@settings(max_examples=25, deadline=None)
@given(size=st.one_of(st.integers(-5, 300).map(str), texts), shape=texts)
def test_input_size_and_shape(size: str, shape: str) -> None:
    _check(["info", "lenet5", "--input-size", size])
    _check(["info", "a_file_that_is_not_there.py:fn", "--input-shape", shape])


numbers = st.one_of(st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str), texts)
NOWHERE = "/nonexistent-dlopt-dir"


@settings(max_examples=30, deadline=None)
@given(epochs=numbers, batch=numbers, lr=numbers, optimizer=st.one_of(st.sampled_from(["adamw", "sgd"]), texts),
       limit=numbers)
def test_train_options(epochs: str, batch: str, lr: str, optimizer: str, limit: str) -> None:
    # an unknown dataset stops the command before any training once the values parse
    _check(["train", "mlp", "--data", "no-such-data", "--epochs", epochs, "--batch-size", batch, "--lr", lr,
            "--optimizer", optimizer, "--limit", limit, "--out", NOWHERE])


@settings(max_examples=30, deadline=None)
@given(fmt=st.one_of(st.sampled_from(["onnx", "ts", "pt2", "all", "onnx,xyz"]), texts), opset=numbers, batch=numbers,
       exporter=st.one_of(st.sampled_from(["dynamo", "legacy"]), texts))
def test_export_options(fmt: str, opset: str, batch: str, exporter: str) -> None:
    _check(["export", "--checkpoint", f"{NOWHERE}/model.json", "--format", fmt, "--opset", opset, "--batch-size", batch,
            "--exporter", exporter, "--out", NOWHERE])


@settings(max_examples=30, deadline=None)
@given(backend=st.one_of(st.sampled_from(["eager", "onnxruntime", "all", "eager,nope"]), texts), batch=numbers,
       seq=numbers, threads=numbers, budget=numbers, batches=texts)
def test_bench_and_verify_options(backend: str, batch: str, seq: str, threads: str, budget: str, batches: str) -> None:
    _check(["bench", f"{NOWHERE}/model.onnx", "--backend", backend, "--batch-sizes", batch, "--seq-len", seq,
            "--threads", threads, "--budget-s", budget, "--out", NOWHERE])
    _check(["verify", f"{NOWHERE}/model.onnx", "--batch-sizes", batches, "--out", NOWHERE])
