"""`pipeline.toml`: one table per stage whose keys mirror that stage's CLI options. No torch here.

    stages = ["train", "prune", "quantize", "export", "verify", "bench"]
    [train]     epochs = 10            # like `dlopt train --epochs 10`
    [prune]     ratio = 0.3            # like `dlopt prune --ratio 0.3`
    [quantize]  method = "auto"
    [export]    formats = ["onnx", "torchscript", "pt2"]
    [bench]     batch_sizes = [1, 8]

Keys are checked against the stage's own config (unknown keys get the closest valid name, values their
expected type), so the file cannot drift from what the commands accept.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlopt.errors import ConfigError, InputFileError
from dlopt.options import shown

STAGES = ("train", "prune", "quantize", "export", "verify", "bench")
TOP_KEYS = ("arch", "stages", "seed", "tiny", "sets", "input_size")
MAX_CONFIG_BYTES = 1_000_000


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


# Sections whose keys are the fields of a library config (minus the ones the pipeline sets itself).
LIBRARY_SECTIONS = {"prune": ("dlopt.prune", "PruneConfig"), "quantize": ("dlopt.quantize", "QuantizeConfig")}
PIPELINE_OWNED = {"name", "seed", "bench", "progress"}
LOCAL_SECTIONS = {"train": TrainSection, "export": ExportSection, "bench": BenchSection}


@dataclass(frozen=True)
class PipelineConfig:
    arch: str = ""
    stages: tuple[str, ...] = STAGES
    seed: int = 0
    tiny: bool = False
    input_size: int = 0  # 0 = the architecture's training default
    sets: dict[str, Any] = field(default_factory=dict)
    train: TrainSection = TrainSection()
    prune: dict[str, Any] = field(default_factory=lambda: {"ratio": 0.3})
    quantize: dict[str, Any] = field(default_factory=dict)
    export: ExportSection = ExportSection()
    bench: BenchSection = BenchSection()

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stages"] = list(self.stages)
        return data

    def has(self, stage: str) -> bool:
        return stage in self.stages


def _key(key: str) -> str:
    """A key as typed, unless it holds odd characters or is long (then its repr, cut)."""
    return key if key.replace("_", "").replace("-", "").isalnum() and len(key) <= 40 else shown(key)


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f"; did you mean {close[0]}?" if close else f"; valid keys: {', '.join(valid)}"


def library_class(section: str) -> type | None:
    module, cls_name = LIBRARY_SECTIONS[section]
    try:
        return getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError):
        return None


def library_fields(section: str) -> dict[str, Any]:
    """Field name -> default of the library config behind a section (prune, quantize)."""
    cls = library_class(section)
    if cls is None:
        return {}
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in PIPELINE_OWNED:
            continue
        out[f.name] = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
    return out


def _typed(where: str, value: Any, default: Any) -> Any:
    """Check a TOML value against the default's type (ints are accepted for floats, lists for tuples)."""
    if default is None or hasattr(default, "value"):  # enums: the library config checks the choice
        return str(value) if hasattr(default, "value") else value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
            isinstance(default, float) or isinstance(value, int))
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, list)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{where} = {shown(value)} has the wrong type; expected {type(default).__name__} "
                          f"(like the default {default!r})")
    return float(value) if isinstance(default, float) else value


def _section(name: str, table: Any, current: Any) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table of options, got {shown(table)}")
    if name in LOCAL_SECTIONS:
        defaults = {f.name: getattr(current, f.name) for f in dataclasses.fields(current)}
    else:
        defaults = {**library_fields(name), **current}
    out = {}
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        if key not in defaults:
            raise ConfigError(f"unknown key {name}.{_key(raw_key)} in [{name}]{_suggest(key, sorted(defaults))}")
        out[key] = _typed(f"{name}.{raw_key}", value, defaults[key])
    if name in LOCAL_SECTIONS:
        return dataclasses.replace(current, **out)
    return {**current, **out}


def _stages(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise ConfigError(f"stages = {value!r}: expected a list of names from {', '.join(STAGES)}")
    bad = [s for s in items if s not in STAGES]
    if not items:
        raise ConfigError(f"stages = []: name at least one of {', '.join(STAGES)} (or leave stages out for all)")
    if bad:
        raise ConfigError(f"unknown stage {bad[0]!r}{_suggest(bad[0], list(STAGES))} (stages: {', '.join(STAGES)})")
    return tuple(s for s in STAGES if s in items)  # always run in pipeline order


def apply(cfg: PipelineConfig, data: dict[str, Any], origin: str = "config") -> PipelineConfig:
    """Overlay a parsed TOML document (or CLI options shaped the same way) on `cfg`, validating every key."""
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key == "verify":
            if value != {}:
                raise ConfigError(f"[verify] takes no options (got {shown(value)}): verification follows export with "
                                  "each spec's tolerance; keep or drop 'verify' in stages")
        elif key in STAGES:
            changes[key] = _section(key, value, changes.get(key, getattr(cfg, key)))
        elif key == "stages":
            changes[key] = _stages(value)
        elif key in TOP_KEYS:
            if key == "sets" and not isinstance(value, dict):
                raise ConfigError("sets must be a table of build options (e.g. sets = { num_classes = 5 }) "
                                  f"in {origin}")
            changes[key] = dict(value) if key == "sets" else _typed(key, value, getattr(PipelineConfig(), key))
        else:
            raise ConfigError(f"unknown key {_key(key)} in {origin}{_suggest(str(key), [*TOP_KEYS, *STAGES])}")
    return dataclasses.replace(cfg, **changes)


def validate(cfg: PipelineConfig) -> PipelineConfig:
    """Build every stage's own config now (the rules and messages of its command), so a bad value fails before
    the first step runs and before a run directory exists; then size the model on the meta device."""
    from dlopt.options import check_int, check_seed

    check_seed("", cfg.seed)
    check_int("", "input_size", cfg.input_size, 0, 1 << 16)
    try:
        for build in (_train_config, _prune_config, _quantize_config, _export_config, _bench_config):
            build(cfg)
    except (TypeError, ValueError) as exc:  # a stored config from an older dlopt, say: name the stage
        raise ConfigError(f"[{build.__name__.strip('_').split('_')[0]}]: {' '.join(str(exc).split())[:200]}") from None
    if cfg.arch:
        _check_model_size(cfg)
    return cfg


def _train_config(cfg: PipelineConfig) -> Any:
    from dlopt.train.config import TrainConfig

    t = cfg.train  # 0 / "" in the table = the family's default
    if t.data_path and not Path(t.data_path).exists():
        raise InputFileError(f"train.data_path = {shown(t.data_path)} does not exist; give your data's file or folder")
    return TrainConfig(arch=cfg.arch, data=t.data or None, data_path=Path(t.data_path) if t.data_path else None,
                       epochs=t.epochs or None, batch_size=t.batch_size or None, lr=t.lr or None, seed=cfg.seed,
                       tiny=cfg.tiny, limit=t.limit or None, progress=False)


def _prune_config(cfg: PipelineConfig) -> Any:
    cls = library_class("prune")
    return cls and cls(**{**cfg.prune, "seed": cfg.seed, "name": "pruned"})


def _quantize_config(cfg: PipelineConfig) -> Any:
    cls = library_class("quantize")
    return cls and cls(**{**cfg.quantize, "seed": cfg.seed, "name": "int8"})


def _export_config(cfg: PipelineConfig) -> Any:
    from dlopt.export import ExportConfig, check_config

    e = cfg.export
    config = ExportConfig(formats=tuple(e.formats), exporter=e.exporter, batch_size=e.batch_size,
                          verify=cfg.has("verify"))
    check_config(config)
    return config


def _bench_config(cfg: PipelineConfig) -> Any:
    from dlopt.bench.config import BenchConfig

    b = cfg.bench  # threads 0 = torch's default
    return BenchConfig(backends=tuple(b.backends), batch_sizes=tuple(b.batch_sizes), threads=b.threads or None,
                       budget_s=b.budget_s, seed=cfg.seed)


def _check_model_size(cfg: PipelineConfig) -> None:
    """The model the build or train step would make, sized without memory (dlopt.options.check_model_size)."""
    from dlopt.options import check_model_size
    from dlopt.registry import _builder, get_spec, make_model_config
    from dlopt.train.config import build_defaults

    spec = get_spec(cfg.arch)
    sets = {**build_defaults(spec.train_defaults), **cfg.sets}
    if cfg.input_size:
        sets["input_size"] = cfg.input_size
    check_model_size(spec.name, _builder(spec), make_model_config(spec, sets, tiny=cfg.tiny))


def load_config(path: Path, base: PipelineConfig = PipelineConfig()) -> PipelineConfig:
    path = Path(path)
    try:
        if path.exists() and not path.is_file():  # a FIFO or a device would block or never end
            raise InputFileError(f"pipeline config {path} is not a regular file; give a .toml file")
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise InputFileError(f"pipeline config {path} is over {MAX_CONFIG_BYTES // 1000} kB; a pipeline.toml is "
                                 "a few lines (see --print-config)")
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputFileError(f"pipeline config {path} not found; `dlopt pipeline NAME --print-config` prints one") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix the line it names") from None
    return apply(base, data, origin=str(path))
