"""Safe file writing: atomic replace, sha256, names that cannot escape their root, pickle sniffing."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dlopt.errors import OutputError, UnsafeFileError

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_TEMP = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp")  # mkstemp(prefix=".NAME.", suffix=".tmp"): 8 random chars
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".joblib"}


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


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
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


def _write_error(target: Path, exc: OSError) -> OutputError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"cannot write {target}: the disk is full ({exc.strerror}); free space or choose "
                           "another --out, then rerun")
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
