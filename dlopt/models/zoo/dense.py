"""Specs: perceptron, mlp, dqn."""

from __future__ import annotations

from dataclasses import dataclass

from dlopt.models.spec import BATCH, ArchSpec, Stage, Task, TensorSpec
from dlopt.models.zoo.table import CLASSIFIER, register


@dataclass(frozen=True)
class PerceptronConfig:
    in_features: int = 2  # two logic-gate inputs


@dataclass(frozen=True)
class MLPConfig:
    in_features: int = 20  # make_classification's 20 features; 784 for the digits variant
    hidden_sizes: tuple[int, ...] = (64, 32, 16)  # digits variant: (512, 256, 128)
    num_classes: int = 2
    dropout: float = 0.2  # digits variant: 0.3


@dataclass(frozen=True)
class DQNConfig:
    state_size: int = 4  # CartPole: position, velocity, angle, angular velocity
    hidden_sizes: tuple[int, ...] = (128, 128)
    num_actions: int = 2  # push left, push right


register(ArchSpec(
    name="perceptron", trainer="perceptron",
    summary="one linear unit with a step activation, trained with the perceptron rule",
    builder="dlopt.models.nets.dense:Perceptron",
    config=PerceptronConfig,
    inputs=(TensorSpec("input", (BATCH, "in_features")),),
    outputs=(TensorSpec("output", (BATCH, 1)),),
    task=Task.CLASSIFICATION, dataset="gates", metric="accuracy",
    stages=frozenset(Stage) - {Stage.PRUNE},
    limits={"prune": "a single linear unit has no channels or neurons to remove"},
    source="000, 003",
))

register(ArchSpec(
    name="mlp",
    summary="Linear -> ReLU -> BatchNorm1d -> Dropout per hidden layer (20 -> 64 -> 32 -> 16 -> 2)",
    builder="dlopt.models.nets.dense:MLP",
    config=MLPConfig,
    tiny={"hidden_sizes": (8, 4)},
    inputs=(TensorSpec("input", (BATCH, "in_features")),),
    outputs=(TensorSpec("logits", (BATCH, "num_classes")),),
    **CLASSIFIER, dataset="tabular",
    source="000, 001, 002, 003",
))

register(ArchSpec(
    name="dqn", trainer="dqn",
    summary="Q-network 4 -> 128 -> 128 -> 2 with ReLU; replay memory and a target network in training",
    builder="dlopt.models.nets.dense:QNetwork",
    config=DQNConfig,
    tiny={"hidden_sizes": (8, 8)},
    inputs=(TensorSpec("state", (BATCH, "state_size")),),
    outputs=(TensorSpec("q_values", (BATCH, "num_actions")),),
    task=Task.REINFORCEMENT, dataset="cartpole", metric="mean_return",
    source="004",
))


