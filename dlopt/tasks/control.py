"""Control tasks: a policy network acting in a gymnasium environment (no dataset); metric: mean episode return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from dlopt.core.errors import MissingDependencyError
from dlopt.tasks.base import Task, register_task


@dataclass(frozen=True)
class DQNSettings:
    env_id: str = "CartPole-v1"
    gamma: float = 0.99
    memory: int = 100_000  # replay capacity (transitions)
    steps_per_epoch: int = 1_024
    learn_start: int = 1_000  # random-policy steps before the first update
    train_every: int = 256  # environment steps between bursts of updates
    updates: int = 128  # gradient steps per burst; the target network is copied after each burst
    eps_start: float = 1.0
    eps_end: float = 0.04
    eps_decay_steps: int = 8_000
    val_episodes: int = 20
    test_episodes: int = 100


def make_env(env_id: str) -> Any:
    try:
        import gymnasium
    except ImportError:
        raise MissingDependencyError("DQN training needs gymnasium; pip install gymnasium") from None
    return gymnasium.make(env_id)


@register_task
class DQNTask(Task):
    name = "dqn"
    mode = "max"
    uses_data = False  # stages that need a data split (quantize's calibration, verify's real data) skip it
    settings = DQNSettings()

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, float]:
        """Mean return of greedy episodes on fixed seeds (validation and test use different seeds)."""
        episodes = self.settings.test_episodes if split == "test" else self.settings.val_episodes
        base = 10_000_000 if split == "test" else 5_000_000
        env, total = make_env(self.settings.env_id), 0.0
        was = model.training
        model.eval()
        with torch.no_grad():
            for i in range(episodes):
                obs, done = env.reset(seed=base + self.seed * 1_000 + i)[0], False
                while not done:
                    action = int(model(torch.as_tensor(obs, dtype=torch.float32, device=self.rt.device)[None]).argmax())
                    obs, reward, terminated, truncated, _ = env.step(action)
                    total += float(reward)
                    done = terminated or truncated
        model.train(was)
        return {"mean_return": total / episodes}
