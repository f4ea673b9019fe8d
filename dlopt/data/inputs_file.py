"""`--inputs FILE.npz`: a user's own example inputs for verify, bench and quantize calibration.

The file is data from anywhere, so it is read as hostile: a regular file of bounded size, read once (what is hashed
is what is parsed), `np.load(allow_pickle=False)` (object arrays, which need pickle, are refused), every member's
unpacked size bounded before it is unpacked (a zip bomb), then checked against the model's inputs: one array per
input, named after it (`np.savez(f, ids=..., mask=...)`) or positional (`np.savez(f, ids, mask)`: arr_0, arr_1...),
of its dtype and rank, with its fixed sizes; the leading axis is the sample (batch) axis, the same in every array.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.core.errors import InputFileError, InputMismatchError, UnsafeFileError
from dlopt.models.spec import BATCH, ArchSpec

MAX_INPUTS_BYTES = 1 << 30  # the file as stored (compressed or not)
MAX_UNPACKED_BYTES = 2 << 30  # all arrays unpacked: example inputs, not a dataset
MAX_VERIFY_SAMPLES = 256  # verify compares on at most this many of the file's samples


@dataclass(frozen=True)
class InputsFile:
    path: Path
    sha256: str
    names: tuple[str, ...]  # the spec's input names, in order
    arrays: tuple[Any, ...]  # numpy arrays in the order of spec.inputs, (N, ...) each

    @property
    def samples(self) -> int:
        return int(self.arrays[0].shape[0])

    def batch(self, start: int, size: int) -> tuple[Any, ...]:
        """Rows [start, start + size) as tensors, wrapping around the file when it has fewer samples."""
        import numpy as np
        import torch

        rows = np.arange(start, start + size) % self.samples
        return tuple(torch.from_numpy(np.ascontiguousarray(a[rows])) for a in self.arrays)

    def record(self, run_dir: Path | None = None) -> dict[str, Any]:
        """What the JSON reports and manifests say was used: the file relative to the run when inside it, else its
        name alone (an absolute path says where one machine kept it, and is stale once the run is copied; the
        sha256 identifies the content)."""
        p = self.path.resolve()
        inside = run_dir is not None and p.is_relative_to(Path(run_dir).resolve())
        return {"file": str(p.relative_to(Path(run_dir).resolve())) if inside else p.name, "sha256": self.sha256,
                "samples": self.samples,
                "arrays": {n: {"dtype": str(a.dtype), "shape": list(a.shape)} for n, a in zip(self.names, self.arrays)}}

    def describe(self) -> str:
        return f"inputs file {self.path.name} ({self.samples} samples, sha256 {self.sha256[:12]})"


def precheck(path: Path | None) -> None:
    """Fail on a missing, unreadable, non-regular or oversized --inputs file before any work (or run) starts."""
    if path is None:
        return
    import stat

    path = Path(path).expanduser()
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InputFileError(f"--inputs {path} cannot be read ({exc.strerror}); give an .npz file "
                             "(numpy.savez)") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputFileError(f"--inputs {path} is not a regular file; give an .npz file (numpy.savez)")
    if st.st_size > MAX_INPUTS_BYTES:
        raise InputFileError(f"--inputs {path} is {st.st_size / 2**20:.0f} MiB, over the {MAX_INPUTS_BYTES >> 20} MiB "
                             "limit for example inputs; save fewer samples")


def _read(path: Path) -> bytes:
    from dlopt.core.fileio import read_regular

    precheck(path)
    return read_regular(path, MAX_INPUTS_BYTES, "--inputs file")


def _members(path: Path, data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputFileError(f"--inputs {path} is not an .npz archive ({exc}); save it with numpy.savez") from None
    if not infos or any(not i.filename.endswith(".npy") for i in infos):
        raise InputFileError(f"--inputs {path} holds no arrays or other files than .npy; save it with numpy.savez")
    declared = [_declared_bytes(path, data, i) for i in infos]  # what the .npy headers would make numpy allocate
    unpacked = max(sum(i.file_size for i in infos), sum(declared))
    if unpacked > MAX_UNPACKED_BYTES:
        raise InputFileError(f"--inputs {path} unpacks to {unpacked / 2**20:.0f} MiB, over the "
                             f"{MAX_UNPACKED_BYTES >> 20} MiB limit for example inputs; save fewer samples")


def _declared_bytes(path: Path, data: bytes, info: zipfile.ZipInfo) -> int:
    """Bytes the array of one member declares in its .npy header (read before numpy allocates anything)."""
    import math

    import numpy as np

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf, zf.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _fortran, dtype = read(fh, max_header_size=10_000)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputFileError(f"--inputs {path}: {info.filename} is not a .npy array ({exc})") from None
    if dtype.hasobject:
        raise UnsafeFileError(f"--inputs {path} holds object arrays, which only pickle can load, and dlopt never "
                              "unpickles an inputs file; save plain numeric or bool arrays")
    return math.prod(shape) * dtype.itemsize


def _arrays(path: Path, data: bytes) -> dict[str, Any]:
    import numpy as np

    _members(path, data)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise UnsafeFileError(f"--inputs {path} holds object arrays, which only pickle can load, and dlopt never "
                                  "unpickles an inputs file; save plain numeric or bool arrays") from None
        raise InputFileError(f"--inputs {path} is corrupt: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputFileError(f"--inputs {path} is corrupt or truncated ({exc})") from None


def _in_order(path: Path, found: dict[str, Any], names: tuple[str, ...]) -> tuple[Any, ...]:
    positional = tuple(f"arr_{i}" for i in range(len(names)))
    if set(found) == set(names):
        return tuple(found[n] for n in names)
    if set(found) == set(positional):
        return tuple(found[n] for n in positional)
    raise InputMismatchError(f"--inputs {path} holds {', '.join(sorted(found)) or 'nothing'}; the model takes "
                             f"{len(names)} input(s): {', '.join(names)} (save them under these names, or "
                             "positionally as arr_0, arr_1...)")


def _check(path: Path, spec: ArchSpec, cfg: Any, arrays: tuple[Any, ...]) -> None:
    from dlopt.models.registry import resolve_dims

    if any(not t.shape or t.shape[0] != BATCH for t in spec.inputs):
        raise InputMismatchError(f"--inputs: {spec.name} has an input without a leading batch axis, so a file's "
                                 "samples cannot be fed to it")
    samples = {int(a.shape[0]) for a in arrays if a.ndim}
    for t, a in zip(spec.inputs, arrays):
        want = resolve_dims(t.shape, cfg, -1, -1)  # -1: any size (the batch and sequence axes)
        if str(a.dtype) != t.dtype:
            raise InputMismatchError(f"--inputs {path}: {t.name} is {a.dtype}, the model takes {t.dtype}; save it "
                                     f"as {t.dtype} (array.astype('{t.dtype}'))")
        if a.ndim != len(want):
            raise InputMismatchError(f"--inputs {path}: {t.name} has rank {a.ndim} {list(a.shape)}, the model takes "
                                     f"rank {len(want)} {_shown(want)} (samples first)")
        bad = [i for i, (d, w) in enumerate(zip(a.shape, want)) if w != -1 and d != w]
        if bad:
            raise InputMismatchError(f"--inputs {path}: {t.name} is {list(a.shape)}, the model takes "
                                     f"{_shown(want)} (axis {bad[0]} differs)")
    if len(samples) != 1 or 0 in samples:
        found = ", ".join(f"{n} {list(a.shape)}" for n, a in zip(spec.input_names, arrays))
        raise InputMismatchError(f"--inputs {path}: every array needs the same number (>= 1) of samples on its first "
                                 f"axis; found {found}")


def _shown(want: tuple[int, ...]) -> str:
    return "[" + ", ".join(("N" if i == 0 else "T") if w == -1 else str(w) for i, w in enumerate(want)) + "]"


def load_inputs(path: Path, spec: ArchSpec, cfg: Any) -> InputsFile:
    """Read and check `path` against the model's inputs; one-line typed errors for anything else."""
    path = Path(path).expanduser()
    data = _read(path)
    arrays = _in_order(path, _arrays(path, data), spec.input_names)
    _check(path, spec, cfg, arrays)
    return InputsFile(path, hashlib.sha256(data).hexdigest(), spec.input_names, arrays)
