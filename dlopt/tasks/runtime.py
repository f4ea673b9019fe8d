"""Where and how a model runs: device, mixed precision, and data-parallel gradient averaging.

Evaluation (dlopt.tasks) and training (dlopt.train) run on the same Runtime; it lives with the tasks so that a
stage evaluating a model does not import the training package.

Distributed training averages gradients by hand (all-reduce of loss-weighted sums) instead of
wrapping the model in DDP: families with two optimizers (GAN) or custom steps share one code path,
and a split global batch gives exactly the gradient of the whole batch, whatever its size.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from dlopt.core.errors import UsageError


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) when not launched by it."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed(device: torch.device) -> None:
    if world()[1] > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    if not amp:
        return None
    if device.type != "cuda":
        raise UsageError("--amp needs a CUDA GPU and none is available here; drop --amp (CPU trains in float32)")
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@dataclass
class Runtime:
    device: torch.device
    clip_norm: float = 0.0
    amp: torch.dtype | None = None
    rank: int = 0
    world_size: int = 1
    scaler: Any = None  # GradScaler for fp16 only
    last_grad_norm: float = field(default=0.0)

    @classmethod
    def create(cls, clip_norm: float, amp: bool) -> Runtime:
        device = pick_device()
        init_distributed(device)
        rank, size = world()
        dtype = amp_dtype(device, amp)
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        return cls(device, clip_norm, dtype, rank, size, scaler)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def to_device(self, obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            return obj.to(self.device, non_blocking=True)
        if isinstance(obj, (tuple, list)):
            return type(obj)(self.to_device(o) for o in obj)
        return obj

    def step(self, loss: torch.Tensor, params: Iterable[torch.nn.Parameter], optimizer: Any, weight: float = 1.0) -> None:
        """Backward of `loss * weight` (weight = local share of the global batch), average across workers,
        clip the global norm, then take the optimizer step."""
        params = [p for p in params if p.requires_grad]
        optimizer.zero_grad(set_to_none=True)
        scaled = loss * weight
        (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        self.sync_grads(params)
        if self.scaler:
            self.scaler.unscale_(optimizer)
        if self.clip_norm > 0:
            self.last_grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.clip_norm))
        if self.scaler:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def sync_grads(self, params: list[torch.nn.Parameter]) -> None:
        if self.world_size == 1:
            return
        for p in params:
            if p.grad is None:  # an empty local share still joins the all-reduce
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """BatchNorm statistics are per worker; rank 0's become everyone's at epoch end."""
        if self.world_size == 1:
            return
        for buf in module.buffers():
            dist.broadcast(buf, 0)

    def all_true(self, flag: bool) -> bool:
        if self.world_size == 1:
            return flag
        t = torch.tensor([0 if flag else 1], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return int(t.item()) == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def shard(indices: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This worker's contiguous piece of one global batch."""
    return torch.tensor_split(indices, world_size)[rank]


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was)
