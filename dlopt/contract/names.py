"""Variant names (`--name`): a run's sub-directory and manifest key, so they are checked, never changed."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from dlopt.core.errors import ConfigError
from dlopt.models.options import shown

# Names that are already a record or a folder in every run: a variant named so would replace it.
RESERVED_NAMES = frozenset({"train", "prune", "quantize", "export", "verify", "bench", "pipeline", "build", "evaluate",
                            "report", "model", "runs", "manifest", "export-pruned", "quantize-pruned", "optimize",
                            "optimized"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_RUN_FILE_SUFFIXES = frozenset({".json", ".jsonl", ".md", ".html", ".png", ".csv", ".safetensors", ".lock", ".tmp",
                                ".txt"})  # + every artifact format's suffix and sidecars (dlopt.runtime.formats)


def _run_file_suffixes() -> frozenset[str]:
    from dlopt.runtime.formats import FORMATS

    sidecars = {os.path.splitext(s)[1] for r in FORMATS for s in r.sidecars}
    return _RUN_FILE_SUFFIXES | {r.suffix for r in FORMATS} | sidecars


def check_stage_name(section: str, name: Any, others: Iterable[str] = ()) -> None:
    """A variant's name is its manifest key and its sub-directory, so it must be used exactly as given.

    `others` are the names other stages use by default (quantize's int8 for prune, say): taken as well.
    """
    said = f"{section}.name = {shown(name)}"
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{said} is not allowed: --name must be 1 to 64 letters, digits, '.', '_' or '-', starting "
                          "with a letter or digit (it becomes the run's sub-directory, unchanged)")
    lowered = name.lower()  # case-insensitive file systems would merge Train/ and train/
    from dlopt.contract.stage import stage_names  # every stage records under its own name, an added one too

    taken = RESERVED_NAMES | set(stage_names()) | {o.lower() for o in others}
    if lowered in taken or lowered.startswith("verify-") or os.path.splitext(lowered)[1] in _run_file_suffixes():
        raise ConfigError(f"{said} is reserved: a run already uses it for another stage's record or file; "
                          f"choose another --name (e.g. {section}-2)")
