"""Resident memory on Linux: current RSS, and the peak (VmHWM) after resetting it via /proc/self/clear_refs.

Why not tracemalloc: it sees only Python allocations, not torch's or ONNX Runtime's native buffers.
Writing "5" to /proc/self/clear_refs resets the kernel's peak-RSS mark to the current RSS, so the
peak of a window of calls can be read without a second process. Elsewhere both readings are None.
"""

from __future__ import annotations

from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def _status_kb(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def reset_peak() -> bool:
    """Reset the peak-RSS mark; False where the kernel does not allow it."""
    try:
        _CLEAR.write_text("5")
    except OSError:
        return False
    return True


def peak_mb() -> float | None:
    kb = _status_kb("VmHWM")
    return None if kb is None else kb / 1024


class PeakWindow:
    """`with PeakWindow() as w: ...` then w.delta_mb: peak RSS inside the window above RSS at its start."""

    def __init__(self) -> None:
        self.delta_mb: float | None = None
        self._start: float | None = None
        self._ok = False

    def __enter__(self) -> PeakWindow:
        self._ok = reset_peak()
        self._start = rss_mb()
        return self

    def __exit__(self, *exc: object) -> None:
        peak = peak_mb()
        if self._ok and peak is not None and self._start is not None:
            self.delta_mb = max(0.0, peak - self._start)
