"""Stopping long native calls: a time limit for artifact runs, and Ctrl-C that still works inside them.

ONNX Runtime: the call runs in a worker thread with its own RunOptions; Ctrl-C or the time limit sets
RunOptions.terminate, which ONNX Runtime checks between kernels, so the run ends and the worker with it.
TorchScript and .pt2 (torch) calls have no such switch, and a worker thread left running in one aborts the process
at exit, so they run on the calling thread: the limit is checked between calls, a first Ctrl-C says that the call
cannot be stopped and is acted on when it returns, and a second Ctrl-C quits at once (exit 130), leaving the stage
to the next command's cleanup of dead processes' runs, as a kill would.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dlopt.core.errors import INTERRUPTED_EXIT_CODE, CheckFailedError, UsageError

T = TypeVar("T")
POLL_S = 0.1  # how often the waiting thread looks at the clock (and lets Ctrl-C in)


class TimeLimitError(CheckFailedError):
    """A run of an artifact went past its time limit (exit 1): the check could not finish."""


@dataclass(frozen=True)
class Deadline:
    at: float  # time.monotonic() when the limit passes
    seconds: float  # the limit, for the message
    option: str  # the option that sets it, for the message


_DEADLINE: ContextVar[Deadline | None] = ContextVar("dlopt_deadline", default=None)


@contextmanager
def time_limit(seconds: float | None, option: str = "--time-limit-s") -> Iterator[None]:
    """Artifact runs inside this block stop (TimeLimitError) once `seconds` have passed; None: no limit."""
    if seconds is not None and not seconds > 0:  # NaN too
        raise UsageError(f"{option} {seconds} is not allowed: give a number of seconds above 0")
    token = _DEADLINE.set(None if seconds is None else Deadline(time.monotonic() + seconds, seconds, option))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _over_limit(path: Path, why: str = "") -> TimeLimitError:
    d = _DEADLINE.get()
    assert d is not None
    return TimeLimitError(f"running {path} took longer than the {d.seconds:g} s limit{why}; give a larger "
                          f"{d.option} if the model is only slow, else do not trust this file (a Loop can run "
                          "for ever)")


def check_deadline(path: Path, why: str = "") -> None:
    """TimeLimitError if the current time limit (if any) has passed."""
    d = _DEADLINE.get()
    if d is not None and time.monotonic() >= d.at:
        raise _over_limit(path, why)


def stoppable(fn: Callable[[], T], run_options: Any, path: Path) -> T:
    """fn() in a worker thread; fn must pass `run_options` to every onnxruntime session.run it makes. Ctrl-C
    (KeyboardInterrupt here) or the time limit sets run_options.terminate = True, which stops the run within a
    kernel; then KeyboardInterrupt or TimeLimitError is raised here. For bench loops too (dlopt.bench)."""
    d = _DEADLINE.get()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the waiting thread, which raises it
            box["error"] = exc

    worker = threading.Thread(target=work, name="dlopt-ort-run", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(POLL_S if d is None else max(0.0, min(POLL_S, d.at - time.monotonic())))
            if d is not None and worker.is_alive() and time.monotonic() >= d.at:
                _terminate(worker, run_options)
                raise _over_limit(path)
    except KeyboardInterrupt:
        _terminate(worker, run_options)
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]


def _terminate(worker: threading.Thread, run_options: Any) -> None:
    run_options.terminate = True
    worker.join(10.0)  # ORT checks the flag between kernels: a single kernel finishes first



@contextmanager
def waiting_for_native_call(path: Path) -> Iterator[None]:
    """Around a torch call that cannot be stopped: the first Ctrl-C prints why nothing happens yet (Python raises
    KeyboardInterrupt when the call returns), a second one exits 130 at once. Only on the main thread with
    Python's own SIGINT handler and no other wakeup fd (asyncio's); anywhere else nothing changes."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    if previous != -1:  # someone else listens for signals: leave theirs alone
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()
        yield
        return
    watcher = threading.Thread(target=_watch, args=(reader, path), name="dlopt-ctrl-c", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(-1)
        writer.send(b"\0")  # no signal is numbered 0: it tells the watcher to stop
        watcher.join(1.0)
        reader.close()
        writer.close()


def _watch(reader: socket.socket, path: Path) -> None:
    presses = 0
    while (data := reader.recv(64)) and 0 not in data:
        presses += data.count(signal.SIGINT)
        if presses == 1:
            sys.stderr.write(f"Ctrl-C: {path.name} is in a TorchScript/.pt2 call, which cannot be stopped mid-call; "
                             "dlopt stops when it returns. Press Ctrl-C again to quit now (the stage is then left "
                             "for the next command to clean up)\n")
        elif presses >= 2:
            sys.stderr.write("interrupted: quit during a TorchScript/.pt2 call; the stage's files are cleaned up by "
                             "the next command on this run\n")
            sys.stderr.flush()
            os._exit(INTERRUPTED_EXIT_CODE)
        sys.stderr.flush()
