"""The option sections of pipeline.toml and how each becomes its command's own config. No torch here.

A section's keys are a small dataclass's fields (train, export, bench: what the pipeline exposes of the command)
or the fields of a library config (prune, quantize: every option of the command). `*_config(cfg)` builds the
command's config from the pipeline config, with the command's own checks: that is the section's validation.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlopt.core.errors import InputFileError
from dlopt.models.options import shown

PIPELINE_OWNED = {"name", "seed", "bench", "progress"}  # library config fields the pipeline sets itself


@dataclass(frozen=True)
class TrainSection:
    epochs: int = 0  # 0 = the training family's default
    batch_size: int = 0  # 0 = the family's default
    lr: float = 0.0  # 0 = the family's default
    data: str = ""  # "" = the architecture's own dataset
    data_path: str = ""
    limit: int = 0  # 0 = all training samples


@dataclass(frozen=True)
class ExportSection:
    formats: list[str] = field(default_factory=lambda: ["onnx", "torchscript", "pt2"])  # those the spec supports
    exporter: str = "dynamo"
    batch_size: int = 2


@dataclass(frozen=True)
class BenchSection:
    backends: list[str] = field(default_factory=lambda: ["eager", "onnxruntime", "torchscript", "pt2"])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8])
    threads: int = 0  # 0 = torch's default (all cores)
    budget_s: float = 10.0  # per batch size, shared by all variants


def library_class(ref: tuple[str, str]) -> type | None:
    module, cls_name = ref
    try:
        return getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError):
        return None


def library_defaults(ref: tuple[str, str]) -> dict[str, Any]:
    """Field name -> default of a library config (minus the fields the pipeline sets itself)."""
    cls = library_class(ref)
    if cls is None:
        return {}
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in PIPELINE_OWNED:
            continue
        out[f.name] = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
    return out


def train_config(cfg: Any) -> Any:
    from dlopt.train.config import TrainConfig

    t = cfg.train  # 0 / "" in the table = the family's default
    if t.data_path and not Path(t.data_path).exists():
        raise InputFileError(f"train.data_path = {shown(t.data_path)} does not exist; give your data's file or folder")
    return TrainConfig(arch=cfg.arch, data=t.data or None, data_path=Path(t.data_path) if t.data_path else None,
                       epochs=t.epochs or None, batch_size=t.batch_size or None, lr=t.lr or None, seed=cfg.seed,
                       tiny=cfg.tiny, limit=t.limit or None, progress=False)


def library_config(section: str, ref: tuple[str, str], name: str) -> Callable[[Any], Any]:
    """The builder of a library-backed [section]: the command's config from the section's keys, with the pipeline's
    seed and the variant `name` the stage records under (the command's own checks run in its constructor)."""
    def build(cfg: Any) -> Any:
        cls = library_class(ref)
        return cls and cls(**{**getattr(cfg, section), "seed": cfg.seed, "name": name})

    return build


PRUNE_CONFIG = ("dlopt.prune", "PruneConfig")
QUANTIZE_CONFIG = ("dlopt.quantize", "QuantizeConfig")


def export_config(cfg: Any) -> Any:
    from dlopt.export import ExportConfig, check_config

    e = cfg.export
    config = ExportConfig(formats=tuple(e.formats), exporter=e.exporter, batch_size=e.batch_size,
                          verify=cfg.has("verify"))
    check_config(config)
    return config


def bench_config(cfg: Any) -> Any:
    from dlopt.bench.config import BenchConfig

    b = cfg.bench  # threads 0 = torch's default
    return BenchConfig(backends=tuple(b.backends), batch_sizes=tuple(b.batch_sizes), threads=b.threads or None,
                       budget_s=b.budget_s, seed=cfg.seed)
