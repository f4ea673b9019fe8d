"""Property tests over CLI option values: whatever the values, dlopt exits with a message, never a traceback."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dlopt.cli.app import INTERNAL_ERROR_EXIT, app
from dlopt.errors import EXIT_CODES

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
