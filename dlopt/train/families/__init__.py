"""The training families; importing this package registers each one. `get_family(spec)` picks the spec's loop."""

from __future__ import annotations

from dlopt.models.spec import ArchSpec
from dlopt.tasks import by_trainer
from dlopt.train.families import autoencoder, classification, dqn, gan, perceptron, regression, seq2seq, vae  # noqa: F401
from dlopt.train.family import _FAMILIES, Family


def get_family(spec: ArchSpec) -> type[Family]:
    return by_trainer(spec, _FAMILIES, "cannot be trained by dlopt", "training loop")


def list_families() -> list[str]:
    return sorted(_FAMILIES)
