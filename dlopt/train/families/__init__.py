"""The training families; importing this package registers each one. `get_family(spec)` picks the spec's loop."""

from __future__ import annotations

from dlopt.core.errors import UnsupportedError
from dlopt.models.spec import ArchSpec
from dlopt.train.families import autoencoder, classification, dqn, gan, perceptron, regression, seq2seq, vae  # noqa: F401
from dlopt.train.family import _FAMILIES, Family


def get_family(spec: ArchSpec) -> type[Family]:
    if not spec.trainer:
        raise UnsupportedError(f"{spec.name} cannot be trained by dlopt: {spec.why_not('train')}")
    if spec.trainer not in _FAMILIES:
        raise UnsupportedError(f"{spec.name} names the unknown training loop {spec.trainer!r}; "
                               f"known loops: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[spec.trainer]


def list_families() -> list[str]:
    return sorted(_FAMILIES)
