"""Third-party output during quantization: NNCF's progress bars and INFO lines, ONNX Runtime calibration's prints,
tqdm bars. They never reach stdout (where the result table and `--json` go); with `-v` (dlopt's logger at DEBUG)
they go to stderr, otherwise nowhere."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator

LOGGERS = ("nncf",)  # libraries whose handlers hold sys.stdout from import time, so redirecting it misses them


def verbose() -> bool:
    return logging.getLogger("dlopt").isEnabledFor(logging.DEBUG)


@contextlib.contextmanager
def _env(name: str, value: str | None) -> Iterator[None]:
    old = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if value is not None:
            os.environ.pop(name) if old is None else os.environ.__setitem__(name, old)


@contextlib.contextmanager
def third_party_output() -> Iterator[None]:
    loud = verbose()
    sink = sys.stderr if loud else io.StringIO()
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, [(h, getattr(h, "stream", None)) for h in logger.handlers]))
        for h in logger.handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                h.setStream(sink)
        if not loud:
            logger.setLevel(logging.ERROR)
    try:
        # Without -v stderr goes to the sink too: dlopt.runtime.openvino points NNCF's stdout at sys.stderr itself.
        quiet_err = contextlib.nullcontext() if loud else contextlib.redirect_stderr(sink)
        with contextlib.redirect_stdout(sink), quiet_err, _env("TQDM_DISABLE", None if loud else "1"):
            yield
    finally:
        for logger, level, handlers in saved:
            logger.setLevel(level)
            for h, stream in handlers:
                if stream is not None and isinstance(h, logging.StreamHandler):
                    h.setStream(stream)
