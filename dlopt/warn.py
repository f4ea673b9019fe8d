"""Turn torch's deprecation noise into one calm line per distinct message."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator

_QUIET_LOGGERS = ("torch.utils._pytree", "torch.onnx", "torch._dynamo", "torch._export", "onnxscript")
NOISY = (FutureWarning, DeprecationWarning, UserWarning)


def first_sentence(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    for stop in (". ", "; "):
        if stop in line:
            line = line.split(stop, 1)[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


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
            seen: set[str] = set()
            for w in caught:
                if not issubclass(w.category, NOISY):
                    continue
                line = first_sentence(w.message)
                if line not in seen:
                    seen.add(line)
                    emit(f"note ({w.category.__name__}): {line}")
