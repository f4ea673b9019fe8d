"""Build options from the CLI: typed, validated, with messages that name the valid choices."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlopt.core.errors import ConfigError, DloptError, UnknownArchError
from dlopt.models.options import parse_sets
from dlopt.models.registry import create_model, get_spec, make_model_config


def test_parse_sets_and_types() -> None:
    spec = get_spec("mlp")
    cfg = make_model_config(spec, parse_sets(["num_classes=5", "hidden_sizes=[8, 4]", "dropout=0"]))
    assert cfg.num_classes == 5 and cfg.hidden_sizes == (8, 4) and cfg.dropout == 0.0


def test_bool_option() -> None:
    cfg = make_model_config(get_spec("rnn"), parse_sets(["bidirectional=true"]))
    assert cfg.bidirectional is True


@pytest.mark.parametrize("item,needle", [
    ("nokey", "key=value"), ("=3", "key=value"), ("colour=red", "valid options"), ("num_classes=2.5", "wrong type"),
    ("num_classes=abc", "not a valid value"), ("num_classes=0", "out of range"), ("dropout=1.5", "out of range"),
    ("dropout=-0.1", "out of range"), ("hidden_sizes=[8, 0]", "out of range"), ("hidden_sizes=[]", "non-empty"), ("hidden_sizes=[1, 'a']", "wrong type"),
])
def test_bad_sets(item: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        make_model_config(get_spec("mlp"), parse_sets([item]))


def test_input_size_only_where_it_exists() -> None:
    assert make_model_config(get_spec("resnet18"), input_size=64).input_size == 64
    with pytest.raises(ConfigError, match="takes no --input-size"):
        make_model_config(get_spec("text_lstm"), input_size=64)


def test_model_level_validation_is_a_config_error() -> None:
    spec = get_spec("vit")
    with pytest.raises(ConfigError, match="divisible"):
        create_model(spec, make_model_config(spec, {"num_heads": "5"}, tiny=True))


def test_unknown_arch_suggests() -> None:
    with pytest.raises(UnknownArchError, match="did you mean resnet18"):
        get_spec("resnet19")


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(["num_classes", "hidden_sizes", "dropout", "in_features", "bogus"]), value=st.text(max_size=12))
def test_any_set_value_gives_a_model_or_a_one_line_error(key: str, value: str) -> None:
    """Whatever the value, the result is a built model or a DloptError; any other exception fails the test."""
    try:
        spec = get_spec("mlp")
        model = create_model(spec, make_model_config(spec, parse_sets([f"{key}={value}"]), tiny=True))
    except DloptError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert model.head.out_features >= 1
