"""What a command assumed about the model, in one line for its summary: where the weights came from (random
initialisation unless trained or loaded), the input size and the class count, read from the run's checkpoint
record. A number the user did not give is the architecture's default, and the line says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _record(run_dir: Path, checkpoint: str | None) -> dict[str, Any]:
    from dlopt.core.errors import InputFileError
    from dlopt.core.fileio import read_json, within

    try:
        manifest = read_json(Path(run_dir) / "manifest.json", "run manifest")
        rel = checkpoint or (manifest.get("model") or {}).get("checkpoint") or "model.json"
        record = read_json(within(Path(run_dir), rel, "the run's checkpoint"), "checkpoint record")
    except (InputFileError, OSError, AttributeError):
        return {}
    return record if isinstance(record, dict) else {}


def _weights(record: dict[str, Any]) -> str:
    source = str(record.get("source") or "")
    loaded = record.get("weights_source")
    if isinstance(loaded, dict) and loaded.get("name"):
        return f"weights {loaded['name']}"
    if "untrained" in source or source.startswith("built with seed"):
        seed = source.removeprefix("built with seed ").split(" ")[0]
        return f"random weights (seed {seed}, untrained)" if seed.isdigit() else "random weights (untrained)"
    if source.startswith("dlopt train"):
        return "trained weights (dlopt train)"
    return f"weights from {source}" if source else "weights as recorded"


def _dims(config: dict[str, Any]) -> str:
    if config.get("inputs"):
        return f"inputs {config['inputs']}"
    shape = config.get("input_shape")
    if isinstance(shape, list | tuple) and shape:
        return "input " + "x".join(str(d) for d in shape)
    if isinstance(config.get("input_size"), int) and config["input_size"]:
        return f"input size {config['input_size']}"
    return "input size: the architecture's default"


def assumptions(run_dir: Path, checkpoint: str | None = None) -> str | None:
    """'random weights (built with seed 0 (untrained)); input 3x32x32; classes: not declared (a user model)'."""
    record = _record(run_dir, checkpoint)
    if not record:
        return None
    weights = _weights(record)
    if checkpoint and weights.startswith("weights from dlopt prune"):  # a variant: say what it was made from
        weights = f"{weights.removeprefix('weights from ')}, from {_weights(_record(run_dir, None))}"
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    classes = config.get("num_classes", config.get("num_labels") if config.get("labels") else None)  # hf: labels
    user = ":" in str(record.get("arch", "")) and not str(record.get("arch")).startswith(("torchvision:", "timm:",
                                                                                         "hf:"))
    said = f"{classes} classes" if isinstance(classes, int) else \
        "classes: not declared (a user model: outputs as its code makes them)" if user else \
        "classes: the architecture's default"
    return f"{weights}; {_dims(config)}; {said}"
