"""Turn torch's deprecation noise into one calm line per distinct message."""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Callable, Iterator

_QUIET_LOGGERS = ("torch.utils._pytree", "torch.utils.cpp_extension", "torch.onnx", "torch._dynamo", "torch._inductor",
                  "torch._export", "onnxscript")
NOISY = (FutureWarning, DeprecationWarning, UserWarning)


@contextlib.contextmanager
def logger_level(name: str | None, level: int) -> Iterator[None]:
    """Raise one logger's level for a block (None = the root logger), then put it back."""
    logger = logging.getLogger(name)
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


def count(n: int, noun: str) -> str:
    """'1 epoch', '3 epochs': counts read as people write them."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def first_sentence(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    for stop in (". ", "; "):
        if stop in line:
            line = line.split(stop, 1)[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _family(line: str) -> str:
    """`torch.jit.trace` is deprecated / `torch.jit.freeze` is deprecated -> `torch.jit.*` is deprecated."""
    return re.sub(r"`(torch\.\w+)\.[\w.]+`", r"`\1.*`", line)


@contextlib.contextmanager
def calm_warnings(emit: Callable[[str], None]) -> Iterator[None]:
    """Collect warnings raised inside; afterwards emit one short line per distinct message."""
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            counts: dict[tuple[str, str], int] = {}
            for w in caught:
                if issubclass(w.category, NOISY):
                    key = (w.category.__name__, _family(first_sentence(w.message)))
                    counts[key] = counts.get(key, 0) + 1
            for (category, line), n in counts.items():
                emit(f"note ({category}): {line}" + (f" ({n} warnings of this kind)" if n > 1 else ""))
