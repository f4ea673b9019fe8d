"""Where dlopt writes when not told: a leaf module, so the CLI's option declarations (read by `dlopt --help`)
do not import the run machinery (dlopt.core.runs) to learn a default."""

from __future__ import annotations

from pathlib import Path

DEFAULT_ROOT = Path("artifacts")  # --out: runs go to <root>/<arch>/<time>-<id>/
