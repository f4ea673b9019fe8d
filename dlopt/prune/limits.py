"""Known limits of Torch-Pruning, the library behind structured pruning: said (exit 4) before the work starts.

    check_structured(module)        # UnsupportedError at once for a model kind the library cannot prune
    with upstream_limits(): ...     # an exception raised inside torch_pruning becomes UnsupportedError, and so
                                    # does growing past half the available memory (a watchdog thread)

The pre-check looks only at the module classes (microseconds), so a model that would make the dependency
graph run for minutes or grow past the machine's memory is refused before the graph is built. Measured at
224x224 (benchmarks/tv_matrix.py): shufflenet_v2_x0_5 fails inside the graph (ZeroDivisionError in its
reshape index mapping: the channel shuffle is a view -> transpose -> view it cannot follow); swin_t ran 13
minutes and grew past 22 GB in `get_pruning_group` (the index mappings of the shifted-window partition and
`torch.roll` grow without bound; at 64x64 it was still there after 90 s); maxvit_t the same.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from dlopt.core.errors import UnsupportedError

UPSTREAM = "torch_pruning"
WHAT_TO_DO = ("prune it with --method unstructured (weights zeroed, shapes kept), or export and quantize it "
              "unpruned")


@dataclass(frozen=True)
class Limit:
    classes: tuple[str, ...]  # module classes (module.qualname) whose presence triggers the limit
    what: str  # which limit, in the user's words


LIMITS = (
    Limit(("torchvision.models.shufflenetv2.InvertedResidual",),
          "ShuffleNet's channel shuffle (view -> transpose -> view) breaks Torch-Pruning's dependency graph "
          "(a known upstream limit: its reshape index mapping divides by zero)"),
    Limit(("torchvision.models.swin_transformer.ShiftedWindowAttention",
           "torchvision.models.swin_transformer.ShiftedWindowAttentionV2"),
          "Swin's shifted-window attention (window partition, torch.roll) makes Torch-Pruning's dependency graph "
          "grow without bound (swin_t at 224x224: past 22 GB of memory and 13 minutes, never finishing)"),
    Limit(("torchvision.models.maxvit.PartitionAttentionLayer",),
          "MaxViT's block/grid partition attention makes Torch-Pruning's dependency graph grow without bound "
          "(maxvit_t: past 22 GB of memory, never finishing)"),
)


def _class_names(module: nn.Module) -> set[str]:
    """Every module class in the model, subclasses counted as their torchvision bases too."""
    names = set()
    for m in module.modules():
        for cls in type(m).__mro__:
            names.add(f"{cls.__module__}.{cls.__qualname__}")
    return names


def check_structured(module: nn.Module) -> None:
    """UnsupportedError (exit 4) naming the limit and what to do, for a model Torch-Pruning cannot prune."""
    present = _class_names(module)
    for limit in LIMITS:
        found = [c for c in limit.classes if c in present]
        if found:
            raise UnsupportedError(f"structured pruning cannot handle {found[0].rsplit('.', 1)[-1]}: {limit.what}; "
                                   f"{WHAT_TO_DO}")


def _upstream_frame(exc: BaseException) -> str | None:
    """`function in file` when the innermost frame of `exc` outside torch and the standard library is
    Torch-Pruning's (its own limit), else None (dlopt's or the model's code raised: not an upstream limit)."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = frame.filename.replace("\\", "/")
        if f"/{UPSTREAM}/" in path:
            return f"{frame.name} in {UPSTREAM}/{path.split(f'/{UPSTREAM}/')[-1]}"
        if "/torch/" in path or ("/lib/python3" in path and "site-packages" not in path):
            continue
        return None
    return None


MEMORY_SHARE = 0.5  # structured pruning may grow the process by at most this share of the memory available at start


class _OverBudget(BaseException):
    """Raised in the main thread by the memory watchdog's signal (not an Exception: no `except Exception` in the
    library swallows it)."""


def _rss() -> int | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None  # not Linux: no watchdog
    return pages * os.sysconf("SC_PAGE_SIZE")


def _available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


@contextlib.contextmanager
def _memory_watchdog(budget: int | None) -> Iterator[None]:
    """Interrupt the block (main thread only) once the process has grown by more than `budget` bytes: a model
    kind the pre-check does not know can still make Torch-Pruning's graph grow without bound."""
    start = _rss()
    if start is None or budget is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    stop, fired = threading.Event(), threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            rss = _rss()
            if rss is not None and rss - start > budget:
                fired.set()
                # no OS signal: Python runs the handler below in the main thread at its next bytecode
                _thread.interrupt_main(signal.SIGUSR1)
                return

    def on_signal(signum: int, frame: Any) -> None:
        if fired.is_set():
            raise _OverBudget()

    previous = signal.signal(signal.SIGUSR1, on_signal)
    thread = threading.Thread(target=watch, name="dlopt-prune-memory", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        signal.signal(signal.SIGUSR1, previous)


@contextlib.contextmanager
def upstream_limits(memory_budget: int | None = None) -> Iterator[None]:
    """An error raised inside Torch-Pruning's own code (not dlopt's, not the model's) is its limit: exit 4. So is
    growing by more than `memory_budget` bytes (default: half the memory available at the start)."""
    if memory_budget is None:
        avail = _available()
        memory_budget = int(avail * MEMORY_SHARE) if avail else None
    try:
        with _memory_watchdog(memory_budget):
            yield
    except _OverBudget:
        raise UnsupportedError(f"structured pruning stopped: the process grew by more than {_gb(memory_budget or 0)} "
                               "(half the memory available) while Torch-Pruning worked on this model, a limit of "
                               f"that library for this model's structure; {WHAT_TO_DO}") from None
    except (KeyboardInterrupt, MemoryError, UnsupportedError):
        raise
    except Exception as exc:
        where = _upstream_frame(exc)
        if where is None:
            raise
        text = " ".join(str(exc).split())[:120]
        raise UnsupportedError(f"Torch-Pruning failed on this model ({type(exc).__name__}"
                               f"{': ' + text if text else ''}, in {where}): a limit of that library; "
                               f"{WHAT_TO_DO}") from None


def _gb(budget: int) -> str:
    return f"{budget / 2**30:.1f} GB" if budget >= 2**27 else f"{budget / 2**20:.0f} MB"
