"""The exact command that resumes an interrupted run, for the Ctrl-C line of commands that have --resume.

A command with --resume calls `offer_resume(...)` before its long call; if Ctrl-C stops it, the error boundary
(dlopt.cli.app) asks `resume_line()` and prints `dlopt pipeline --resume RUN_DIR ...` instead of "rerun the
command". RUN_DIR is the --resume given, or the run this command created (found by its manifest appearing under
--out), so nothing inside the library has to report it.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from dlopt.core.layout import DEFAULT_ROOT

MANIFEST_GLOB = "*/*/manifest.json"  # <root>/<arch>/<run id>/ (dlopt.core.runs.Run.create)
_state: dict[str, object] = {"argv": (), "line": None}


def set_argv(argv: Sequence[str]) -> None:
    """The command line as typed after `dlopt` (dlopt.cli.app sets it per invocation); forgets any offer."""
    _state.update(argv=tuple(argv), line=None)


def resume_line() -> str | None:
    """The command that resumes what was interrupted, or None when no run was made to resume."""
    line = _state["line"]
    return line() if callable(line) else None


def _runs(root: Path) -> set[Path]:
    return {p.parent for p in Path(root).glob(MANIFEST_GLOB)}


def offer_resume(command: str, resume: Path | None, root: Path = DEFAULT_ROOT) -> None:
    """From now until the command ends, Ctrl-C prints how to resume: the same command line with
    `--resume RUN_DIR` in place of any --resume given (RUN_DIR: `resume`, else the run made under `root`)."""
    before = set() if resume is not None else _runs(root)
    argv: tuple[str, ...] = _state["argv"]  # type: ignore[assignment]

    def line() -> str | None:
        made = sorted(_runs(root) - before, key=lambda p: (p / "manifest.json").stat().st_mtime)
        run_dir = resume if resume is not None else (made[-1] if made else None)
        return None if run_dir is None else command_line(argv, command, Path(run_dir))

    _state["line"] = line


def command_line(argv: Sequence[str], command: str, run_dir: Path) -> str:
    """`dlopt [global options] COMMAND --resume RUN_DIR [its other arguments]`, quoted for a POSIX shell."""
    words = list(argv)
    at = words.index(command) + 1 if command in words else len(words)
    head, rest = words[:at] if command in words else [*words, command], words[at:]
    kept, skip = [], False
    for word in rest:
        if skip:
            skip = False
        elif word == "--resume":
            skip = True
        elif not word.startswith("--resume="):
            kept.append(word)
    return shlex.join(["dlopt", *head, "--resume", str(run_dir), *kept])

