"""Entry point of one distributed worker: `python -m dlopt.train.worker CONFIG.json` (started by torchrun)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dlopt.core.errors import DloptError


def main(argv: list[str]) -> int:
    from dlopt.train.api import train
    from dlopt.train.config import TrainConfig

    cfg = TrainConfig.from_json(json.loads(Path(argv[0]).read_text()))
    try:
        train(cfg)
    except DloptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
