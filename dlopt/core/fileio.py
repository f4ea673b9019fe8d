"""Safe file writing: atomic replace, sha256, names that cannot escape their root, pickle sniffing."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dlopt.core.errors import InputFileError, OutputError, UnsafeFileError

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_TEMP = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp")  # mkstemp(prefix=".NAME.", suffix=".tmp"): 8 random chars
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".joblib"}
MAX_JSON_BYTES = 16 << 20  # records and manifests are kilobytes; 16 MB leaves room and bounds memory
MAX_JSON_DEPTH = 32  # dlopt writes at most ~6 levels
MAX_JSON_INT = 2**63  # anything a config or a shape can mean fits int64


def safe_name(name: str) -> str:
    """A single path component made from user text: no separators, no '..', no leading dot."""
    cleaned = _SAFE.sub("-", name).strip("-.")
    if not cleaned:
        raise OutputError(f"name {name!r} has no usable characters; use letters, digits, '.', '_' or '-'")
    return cleaned[:120]


def inside(root: Path, candidate: Path) -> Path:
    """`candidate` resolved, refusing anything outside `root` (symlinks and '..' included)."""
    root_r, cand_r = root.resolve(), candidate.resolve()
    if cand_r != root_r and root_r not in cand_r.parents:
        raise OutputError(f"{candidate} is outside the output root {root}; choose a path inside it")
    return cand_r


def within(root: Path, relative: str | Path, what: str) -> Path:
    """A path read from a file (manifest, record), resolved inside `root`; anything else is refused as bad input."""
    text = str(relative)
    if not text or "\x00" in text:
        raise InputFileError(f"{what} path {text!r} is empty or invalid; the file is damaged or was not written by dlopt")
    try:
        return inside(Path(root), Path(root) / text)
    except OutputError:
        raise InputFileError(f"{what} path {text!r} points outside {root}; dlopt only follows paths inside the run "
                             "(the file was edited or is hostile)") from None


def read_regular(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. FIFOs, devices and directories are refused before
    they are opened (so nothing hangs), and the open is non-blocking and re-checked against a swap."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InputFileError(f"{what} {path} cannot be read ({exc.strerror})") from None
    _check_regular(path, st, limit, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputFileError(f"{what} {path} cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        _check_regular(path, os.fstat(fh.fileno()), limit, what)  # the path may have been swapped since stat
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise InputFileError(f"{what} {path} is larger than {limit} bytes; it is not a file dlopt wrote")
    return data


def _check_regular(path: Path, st: os.stat_result, limit: int, what: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else \
            "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file"
        raise InputFileError(f"{what} {path} is {kind}; dlopt reads only regular files")
    if st.st_size > limit:
        raise InputFileError(f"{what} {path} is {st.st_size} bytes, more than the {limit} a {what} may be; "
                             "it is not a file dlopt wrote")


def read_json(path: Path, what: str, limit: int = MAX_JSON_BYTES) -> Any:
    """Parse a bounded, regular, UTF-8 JSON file; nesting deeper than MAX_JSON_DEPTH or integers beyond int64
    are refused (they only come from hostile or corrupt files). Every failure is one InputFileError line."""
    raw = read_regular(path, limit, what)
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{what} {path} is not UTF-8 text (byte {exc.start}); it is corrupt") from None
    except RecursionError:
        raise InputFileError(f"{what} {path} is nested too deeply; it is corrupt or hostile") from None
    except ValueError as exc:  # JSONDecodeError, and ints past Python's digit limit
        raise InputFileError(f"{what} {path} is not valid JSON ({str(exc)[:120]}); it may be truncated") from None
    problem = json_bounds_problem(data)
    if problem:
        raise InputFileError(f"{what} {path} {problem}; it is corrupt or hostile")
    return data


def json_bounds_problem(data: Any) -> str | None:
    """Why parsed JSON is out of bounds (depth, integer size), or None. Iterative: no recursion to exhaust."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return f"is nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= MAX_JSON_INT:
            return f"holds an integer of {len(str(abs(value)))} digits (more than int64)"
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The file's sha256. A FIFO or device planted under a file's name is refused, never read (it would hang)."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fh.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise InputFileError(f"{path} is not a regular file (a FIFO, device or directory); dlopt reads only "
                                 "regular files")
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target`, on any error it is removed.

    Readers therefore see either the old file or the complete new one, never a half-written one.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise _write_error(target.parent, exc) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode of a new file
        os.replace(tmp_path, target)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise _write_error(target, exc) from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def torch_archive(target: Path) -> Iterator[io.BytesIO]:
    """A buffer for torch.jit.save / torch.export.save, written to `target` atomically when the block succeeds.

    torch's zip writer throws from its destructor when a disk write fails, which aborts the process (a C++ stack,
    exit 134, the stage left `running`); writing the finished bytes from Python makes a full disk an OutputError.
    Costs one archive's size in memory."""
    buffer = io.BytesIO()
    yield buffer
    with atomic_path(target) as tmp:
        tmp.write_bytes(buffer.getbuffer())


DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)  # the disk, not dlopt: exit 5 with what to do


def write_error(target: Path, exc: OSError) -> OutputError:
    """The one-line OutputError (exit 5) for an OSError met while writing `target`."""
    return _write_error(target, exc)


def _write_error(target: Path, exc: OSError) -> OutputError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"cannot write {target}: the disk is full ({exc.strerror}); free space or choose "
                           "another --out, then rerun")
    if exc.errno == errno.EFBIG:
        return OutputError(f"cannot write {target}: it is larger than this process may write ({exc.strerror}; see "
                           "`ulimit -f`); raise the limit or choose another --out, then rerun")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {target}: {exc.strerror}; choose a writable --out")
    return OutputError(f"cannot write {target}: {exc.strerror or exc}; check space and permissions")


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete the temporary files atomic_path leaves when its process is killed (SIGKILL skips cleanup)."""
    removed = []
    for tmp in Path(directory).rglob(".*.tmp"):
        if tmp.is_file() and _TEMP.fullmatch(tmp.name):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def looks_like_pickle(path: Path) -> bool:
    """True for torch.save zips (they hold a data.pkl) and raw pickles (protocol 2+ opcode)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    if head[:1] == b"\x80" and head[1:2] in {bytes([p]) for p in range(2, 6)}:
        return True
    if head == b"PK\x03\x04":
        import zipfile

        with contextlib.suppress(zipfile.BadZipFile, OSError), zipfile.ZipFile(path) as zf:
            return any(n.endswith(".pkl") for n in zf.namelist())
    return path.suffix.lower() in PICKLE_SUFFIXES


def refuse_pickle(path: Path, trust_pickle: bool) -> None:
    if looks_like_pickle(path) and not trust_pickle:
        raise UnsafeFileError(
            f"{path} is a pickle, and loading a pickle can run arbitrary code; convert it to safetensors, "
            "or pass --trust-pickle if you trust its source"
        )
