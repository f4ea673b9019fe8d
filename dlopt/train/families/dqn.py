"""DQN on gymnasium's CartPole-v1: replay memory, a target network, epsilon-greedy exploration decaying
linearly, Double-DQN targets and the SmoothL1 (Huber) loss.

Updates come in bursts, as in RL Baselines3 Zoo's tuned CartPole settings: every `train_every` environment
steps, `updates` gradient steps against a frozen target network, which is then copied from the online one.
Learning every step against a slowly moving target (tau 0.005) was tried first and hovered around a return
of 100-200 after 25k steps.

An "epoch" is `steps_per_epoch` environment steps; every epoch starts a fresh episode from a seed
derived from (seed, epoch), so the replay memory, target network, step count and the exploration
generator are the whole state and a resumed run continues exactly. Validation: greedy episodes on
fixed seeds; the metric, mean_return, is over `test_episodes` (100) greedy episodes for the test.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F

from dlopt.tasks.control import DQNTask, make_env
from dlopt.train.config import HParams
from dlopt.train.family import Family, NonFiniteLoss, register_family


@register_family
class DQN(DQNTask, Family):
    distributed = False  # one environment, one learner
    defaults = HParams(epochs=50, batch_size=64, lr=2.3e-3, weight_decay=0.0, clip_norm=10.0, patience=0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        s, n = self.settings, self.settings.memory
        size = self.model_cfg.state_size
        self.memory = {"state": torch.zeros(n, size), "action": torch.zeros(n, dtype=torch.long),
                       "reward": torch.zeros(n), "next_state": torch.zeros(n, size), "done": torch.zeros(n)}
        self.filled, self.cursor, self.env_steps = 0, 0, 0
        self.gen = torch.Generator().manual_seed(self.seed)
        self.env = make_env(s.env_id)
        self.target: torch.nn.Module | None = None

    def optimizers(self, model: torch.nn.Module) -> dict[str, torch.optim.Optimizer]:
        self.target = copy.deepcopy(model).eval().requires_grad_(False)
        return super().optimizers(model)

    def steps_per_epoch(self) -> int:  # optimizer steps (the schedule and the progress bar count these)
        s = self.settings
        return s.steps_per_epoch // s.train_every * s.updates

    def epsilon(self) -> float:
        s = self.settings
        frac = min(1.0, self.env_steps / s.eps_decay_steps)
        return s.eps_start + frac * (s.eps_end - s.eps_start)

    def _act(self, model: torch.nn.Module, state: torch.Tensor) -> int:
        if float(torch.rand((), generator=self.gen)) < self.epsilon():
            return int(torch.randint(self.model_cfg.num_actions, (), generator=self.gen))
        with torch.no_grad():
            return int(model(state.unsqueeze(0).to(self.rt.device)).argmax())

    def _remember(self, *transition: Any) -> None:
        for key, value in zip(self.memory, transition):
            self.memory[key][self.cursor] = torch.as_tensor(value)
        self.cursor = (self.cursor + 1) % self.settings.memory
        self.filled = min(self.filled + 1, self.settings.memory)

    def _learn(self, model: torch.nn.Module, opt: Any) -> float:
        idx = torch.randint(self.filled, (self.hp.batch_size,), generator=self.gen)
        b = {k: v[idx].to(self.rt.device) for k, v in self.memory.items()}
        q = model(b["state"]).gather(1, b["action"].unsqueeze(1)).squeeze(1)
        with torch.no_grad():  # Double DQN: the online net picks the action, the target net values it
            best = model(b["next_state"]).argmax(1, keepdim=True)
            target = b["reward"] + self.settings.gamma * (1 - b["done"]) * self.target(b["next_state"]).gather(1, best).squeeze(1)
        loss = F.smooth_l1_loss(q, target)
        self.rt.step(loss, model.parameters(), opt)
        return float(loss.detach())

    def _burst(self, model: torch.nn.Module, opts: dict, scheds: list, epoch: int, on_step: Any) -> list[float]:
        losses = []
        for step in range(self.settings.updates):
            loss = self._learn(model, opts["model"])
            if not math.isfinite(loss):
                raise NonFiniteLoss(epoch, step, {"loss": loss})
            for sched in scheds:
                sched.step()
            losses.append(loss)
            on_step({"loss": loss})
        self.target.load_state_dict(model.state_dict())
        return losses

    def run_epoch(self, model: torch.nn.Module, opts: dict, scheds: list, epoch: int, on_step: Any) -> dict[str, float]:
        model.train()
        state = torch.as_tensor(self.env.reset(seed=self.seed * 100_003 + epoch)[0], dtype=torch.float32)
        losses, returns, episode = [], [], 0.0
        for _ in range(self.settings.steps_per_epoch):
            action = self._act(model, state)
            obs, reward, terminated, truncated, _ = self.env.step(action)
            nxt = torch.as_tensor(obs, dtype=torch.float32)
            self._remember(state, action, float(reward), nxt, float(terminated))
            self.env_steps += 1
            episode += float(reward)
            state = nxt
            if terminated or truncated:
                returns.append(episode)
                episode = 0.0
                state = torch.as_tensor(self.env.reset()[0], dtype=torch.float32)
            if self.filled >= self.settings.learn_start and self.env_steps % self.settings.train_every == 0:
                losses += self._burst(model, opts, scheds, epoch, on_step)
        mean_return = sum(returns) / len(returns) if returns else episode
        return {"loss": sum(losses) / max(1, len(losses)), "episode_return": mean_return, "epsilon": self.epsilon()}

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"memory.{k}": v[: self.filled].clone() for k, v in self.memory.items()}
        tensors.update({f"target.{k}": v.detach().cpu().clone() for k, v in self.target.state_dict().items()})
        tensors["generator"] = self.gen.get_state()
        return tensors, {"filled": self.filled, "cursor": self.cursor, "env_steps": self.env_steps}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.filled, self.cursor, self.env_steps = meta["filled"], meta["cursor"], meta["env_steps"]
        for key, buf in self.memory.items():
            buf[: self.filled] = tensors[f"memory.{key}"]
        self.target.load_state_dict({k[len("target."):]: v for k, v in tensors.items() if k.startswith("target.")})
        self.gen.set_state(tensors["generator"])
