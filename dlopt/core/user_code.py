"""Which user model code dlopt may run in this invocation.

A user model (`file.py:fn` or `package.module:fn`) is code. Named by the caller -- the NAME argument,
`--model-code`, or a direct `get_spec` call in Python -- it is the caller's own choice and runs. Named by a
file dlopt reads back (a checkpoint record, a manifest) it is data, and runs only when the caller named the
same code for this invocation or opted in with `--trust-code`; anything else is refused (UnsafeFileError).

The CLI sets the trust through option callbacks (`cli.common`), scoped to one command by `code_trust_scope`;
Python callers use `with trusted_code("my_models.py:build"):`.

The per-user trust list (`trust_file()`: $DLOPT_TRUST_FILE, else $XDG_CONFIG_HOME or ~/.config, then
dlopt/trusted_code.json) removes the friction for the user's own runs: when a run is made from, or worked on with,
code named on the command line, the file's sha256 and the run are recorded there; later commands on that run
trust the file while its sha256 still matches. A run made elsewhere, or a changed file, is refused as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dlopt.core.errors import UnsafeFileError


@dataclass(frozen=True)
class CodeTrust:
    name: str | None = None  # the command's NAME argument, when it is a user model reference
    refs: tuple[str, ...] = ()  # --model-code values and trusted_code() refs
    everything: bool = False  # --trust-code

    def allowed(self) -> set[tuple[str, str]]:
        return {key for ref in (self.name, *self.refs) if ref and (key := ref_key(ref)) is not None}


_TRUST: ContextVar[CodeTrust] = ContextVar("dlopt_code_trust", default=CodeTrust())


def is_user_ref(name: str) -> bool:
    """A user model reference (code), as opposed to a zoo name, torchvision:NAME, timm:NAME or hf:FOLDER."""
    return ":" in name and not name.startswith(("torchvision:", "timm:", "hf:"))


def ref_key(ref: str, file: str | None = None) -> tuple[str, str] | None:
    """What two references must share to be the same code: the resolved file (or the module name) and the attribute."""
    if not is_user_ref(ref):
        return None
    target, _, attr = ref.rpartition(":")
    if file or target.endswith(".py"):
        return str(Path(file or target).expanduser().resolve()), attr
    return target, attr


def absolute_ref(ref: str) -> str:
    """A file.py:fn reference with the file made absolute (as the current directory resolves it), so a run that
    records it finds the same file from any other directory; other names unchanged."""
    if not is_user_ref(ref):
        return ref
    target, _, attr = ref.rpartition(":")
    return f"{Path(target).expanduser().resolve()}:{attr}" if target.endswith(".py") else ref


def current() -> CodeTrust:
    return _TRUST.get()


def set_cli(**fields: Any) -> None:
    """Called by the CLI's option callbacks, each for its own field, once per command."""
    _TRUST.set(replace(_TRUST.get(), **fields))


@contextlib.contextmanager
def code_trust_scope() -> Iterator[None]:
    """One CLI command's trust: starts empty, and is gone when the command ends."""
    token = _TRUST.set(CodeTrust())
    try:
        yield
    finally:
        _TRUST.reset(token)


@contextlib.contextmanager
def trusted_code(*refs: str, everything: bool = False) -> Iterator[None]:
    """Python callers: let records naming these references (or any, with everything=True) run their code."""
    old = _TRUST.get()
    token = _TRUST.set(replace(old, refs=(*old.refs, *refs), everything=old.everything or everything))
    try:
        yield
    finally:
        _TRUST.reset(token)


def require_trusted(arch: str, code: dict[str, Any] | None, source: Path) -> None:
    """Refuse to run the user model code a file names unless this invocation trusts it, or the trust list
    holds that file, with the sha256 the run recorded, for the run `source` belongs to."""
    from dlopt.core.trust_list import listed, remember

    trust = _TRUST.get()
    key = ref_key(arch, (code or {}).get("file")) or (arch, "")
    if trust.everything or key in trust.allowed():
        if key in trust.allowed() and key[0].endswith(".py"):
            remember(Path(key[0]), source)  # named on the command line: later commands on this run need not
        return
    if key[0].endswith(".py") and listed(Path(key[0]), (code or {}).get("sha256"), source):
        return
    kind = "file" if code or arch.rpartition(":")[0].endswith(".py") else "module"
    raise UnsafeFileError(f"{source} names user model code ({kind} {key[0]}, function {key[1]!r}); dlopt runs code "
                          f"a file names only when you name it too: pass --model-code {key[0]}:{key[1]}, or "
                          "--trust-code if you trust the file")


def remember_named(arch: str, run_dir: Path) -> None:
    """A new run made from user code named on the command line: record it in the trust list (see the module doc)."""
    key = ref_key(arch) if is_user_ref(arch) else None
    if key is not None and key[0].endswith(".py") and key in _TRUST.get().allowed():
        from dlopt.core.trust_list import remember

        remember(Path(key[0]), run_dir)


def require_trusted_name(arch: object, source: Path) -> None:
    """For an architecture name read from a file other than a checkpoint record (a stored train or pipeline config):
    a zoo or torchvision name passes, user model code must be trusted like a record's."""
    if isinstance(arch, str) and is_user_ref(arch):
        require_trusted(arch, None, source)
