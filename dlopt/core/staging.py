"""Stage outputs that appear only when the stage is done, and cleanup of what killed processes leave behind.

A stage writes into `<run>/.staging/<name>.<pid>.<rand>/` (laid out like the run); on success each top-level
entry moves into the run: a directory the stage owns (its variant, e.g. `int8/`) is swapped in as a whole
(`renameat2(RENAME_EXCHANGE)` where the kernel has it), other files move one by one with `os.replace`.
A process is identified by pid, host and start time, so a stale `running` stage whose process is gone can be
told from a live one (and a reused pid from the original process).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STAGING = ".staging"
QUANTIZE_SCRATCH = "dlopt-quantize-"  # tempfile prefix; the pid follows, so scratch of dead processes is found
PAUSE_ENV = "DLOPT_TEST_PAUSE_AT"  # test-only: "<stage>:<point>" makes that point sleep (see pause_point)
PAUSE_MARKER_ENV = "DLOPT_TEST_PAUSE_MARKER"  # test-only: file created when the pause starts


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22); None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # after "(comm)": state is field 3, starttime field 22
    return None if fields[0] in ("Z", "X") else fields[19]


def this_process() -> dict[str, Any]:
    """pid, host and start time of this process, as a stage record stores them."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": _proc_start(os.getpid())}


def pid_alive(pid: int, proc_start: str | None = None) -> bool:
    """True while `pid` runs on this host (and, where its start time was recorded, is the same process)."""
    if pid <= 0:
        return False
    if Path("/proc").is_dir() and sys.platform.startswith("linux"):
        now = _proc_start(pid)
        return now is not None and (proc_start is None or now == proc_start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_alive(record: dict[str, Any]) -> bool | None:
    """Whether the process a stage record names is alive; None when it cannot be told (another host, no pid)."""
    pid = record.get("pid")
    if not isinstance(pid, int) or record.get("host") != socket.gethostname():
        return None
    return pid_alive(pid, record.get("proc_start"))


def new_staging(run_path: Path, name: str) -> Path:
    path = run_path / STAGING / f"{name}.{os.getpid()}.{secrets.token_hex(3)}"
    path.mkdir(parents=True)
    return path


def _pid_of(entry: Path, prefix: str = "") -> int | None:
    """The pid in `<name>.<pid>.<rand>` (staging) or `<prefix><pid>-<rand>` (scratch)."""
    name = entry.name.removeprefix(prefix).removesuffix(".old")
    part = name.split("-")[0] if prefix else (name.rsplit(".", 2)[-2] if name.count(".") >= 2 else "")
    return int(part) if part.isdigit() else None


def clean_dead(folder: Path, prefix: str = "") -> list[Path]:
    """Remove entries of `folder` (matching prefix) whose owning pid is no longer running; returns them."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if prefix and not entry.name.startswith(prefix):
            continue
        pid = _pid_of(entry, prefix)
        if pid is None or pid == os.getpid() or pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            removed.append(entry)
    return removed


def clean_quantize_scratch() -> list[Path]:
    import tempfile

    return clean_dead(Path(tempfile.gettempdir()), QUANTIZE_SCRATCH)


def quantize_scratch_prefix() -> str:
    return f"{QUANTIZE_SCRATCH}{os.getpid()}-"


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def swap_dir(new: Path, final: Path) -> None:
    """Put directory `new` at `final`; an existing `final` is replaced as a whole, then deleted.

    With RENAME_EXCHANGE a reader sees the old complete directory or the new one, never neither."""
    if not final.exists():
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(new, final)
        return
    if not _exchange(new, final):
        old = new.with_name(new.name + ".old")
        os.replace(final, old)
        os.replace(new, final)
        new = old
    shutil.rmtree(new, ignore_errors=True)  # now holds the old contents


def move_files(src: Path, dest: Path) -> None:
    """Move every file under `src` to the same place under `dest`, each with os.replace."""
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)


def _rename_new(src: Path, final: Path) -> None:
    """Rename, refusing to replace anything at `final` (RENAME_NOREPLACE where the kernel has it)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        fn = None
    if fn is not None and fn(-100, os.fsencode(src), -100, os.fsencode(final), 1) == 0:
        return
    if fn is not None and ctypes.get_errno() == errno.EEXIST:
        raise FileExistsError(errno.EEXIST, "exists", str(final))
    if final.exists():
        raise FileExistsError(errno.EEXIST, "exists", str(final))
    os.rename(src, final)


def commit(staging: Path, run_path: Path, owned: tuple[str, ...], fresh: tuple[str, ...] = ()) -> None:
    """Move the staged tree into the run: owned top-level directories swap whole, `fresh` ones must not exist
    yet (FileExistsError: another process made it meanwhile), the rest move file by file."""
    taken = [n for n in fresh if (run_path / n).exists()]
    if taken:
        raise FileExistsError(errno.EEXIST, "exists", str(run_path / taken[0]))
    for entry in sorted(staging.iterdir()):
        final = run_path / entry.name
        if entry.name in fresh:
            _rename_new(entry, final)
        elif entry.is_dir() and (entry.name in owned or not final.exists()):
            swap_dir(entry, final)
        elif entry.is_dir():
            move_files(entry, final)
        else:
            os.replace(entry, final)
    shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C while a finished stage's files move into place and its record says so: a SIGINT that comes
    meanwhile is raised right after (the stage is done), never between the move and the record."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = signal.signal(signal.SIGINT, lambda *_: got.append(1))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if got and callable(old):
            old(signal.SIGINT, None)  # Python's handler (or whoever's was there): KeyboardInterrupt now
        elif got and old == signal.SIG_DFL:
            os.kill(os.getpid(), signal.SIGINT)


def pause_point(stage: str, point: str) -> None:
    """Test-only hook: when DLOPT_TEST_PAUSE_AT is "<stage>:<point>", sleep here (so a test can kill the process
    at a known moment); DLOPT_TEST_PAUSE_MARKER, if set, names a file created when the pause starts."""
    if os.environ.get(PAUSE_ENV) != f"{stage}:{point}":
        return
    marker = os.environ.get(PAUSE_MARKER_ENV)
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(float(os.environ.get("DLOPT_TEST_PAUSE_S", "120")))
