"""`pipeline.toml`: one table per stage whose keys mirror that stage's CLI options. No torch here.

    stages = ["train", "prune", "quantize", "export", "verify", "bench"]   # the default; add "optimize" to search
    [train]     epochs = 10            # like `dlopt train --epochs 10`
    [prune]     ratio = 0.3            # like `dlopt prune --ratio 0.3`
    [quantize]  method = "auto"
    [export]    formats = ["onnx", "torchscript", "pt2"]
    [bench]     batch_sizes = [1, 8]
    [optimize]  trials = 8             # like `dlopt optimize --trials 8`; runs only when `stages` names optimize

Keys are checked against the stage's own config (unknown keys get the closest valid name, values their
expected type), so the file cannot drift from what the commands accept. Which sections exist, their defaults, their
order and their validation come from the stage table (dlopt.contract.stage, as dlopt.pipeline.stages.table() fills
it in), read when needed; each section is built into its stage's own config once (`stage_configs`).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlopt.core.errors import ConfigError, InputFileError
from dlopt.models.options import shown
from dlopt.pipeline import stages as table
from dlopt.pipeline.sections import library_defaults
from dlopt.pipeline.stages import StageDef, default_stages, stage_names

TOP_KEYS = ("arch", "stages", "seed", "tiny", "sets", "input_size", "inputs")
MAX_CONFIG_BYTES = 1_000_000


def by_name() -> dict[str, StageDef]:
    """The stages `stages = [...]` names, from the stage table (read when called, so a stage added is seen)."""
    return {s.name: s for s in table.table() if s.selectable}


def default_sections() -> dict[str, Any]:
    """Each stage's [section] at its defaults, in table order."""
    return {s.name: s.section() for s in by_name().values() if s.section is not None}


@dataclass(frozen=True)
class PipelineConfig:
    arch: str = ""
    stages: tuple[str, ...] = field(default_factory=default_stages)  # all but the opt-in ones, in pipeline order
    seed: int = 0
    tiny: bool = False
    input_size: int = 0  # 0 = the architecture's training default
    inputs: str = ""  # --inputs FILE.npz: verify, bench and int8 calibration on these samples (and the report's basis)
    sets: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=default_sections)  # stage -> its [section] (cfg.train, ...)

    def __getattr__(self, name: str) -> Any:
        sections = self.__dict__.get("sections") or {}
        if name in sections:
            return sections[name]
        raise AttributeError(f"PipelineConfig has no field or stage section {name!r}")

    def to_json(self) -> dict[str, Any]:
        data = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "sections"}
        data["stages"] = list(self.stages)
        for name, value in self.sections.items():
            data[name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
        return data

    def has(self, stage: str) -> bool:
        return stage in self.stages


def _key(key: str) -> str:
    """A key as typed, unless it holds odd characters or is long (then its repr, cut)."""
    return key if key.replace("_", "").replace("-", "").isalnum() and len(key) <= 40 else shown(key)


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f"; did you mean {close[0]}?" if close else f"; valid keys: {', '.join(valid)}"


def library_fields(section: str) -> dict[str, Any]:
    """Field name -> default of the library config behind a section (prune, quantize); {} for other sections."""
    stage = by_name().get(section)
    return library_defaults(stage.library) if stage is not None and stage.library else {}


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
    local = dataclasses.is_dataclass(current)
    if local:
        defaults = {f.name: getattr(current, f.name) for f in dataclasses.fields(current)}
    else:
        defaults = {**library_fields(name), **current}
    out = {}
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        if key not in defaults:
            raise ConfigError(f"unknown key {name}.{_key(raw_key)} in [{name}]{_suggest(key, sorted(defaults))}")
        out[key] = _typed(f"{name}.{raw_key}", value, defaults[key])
    if local:
        return dataclasses.replace(current, **out)
    return {**current, **out}


def _stages(value: Any) -> tuple[str, ...]:
    names = stage_names()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise ConfigError(f"stages = {value!r}: expected a list of names from {', '.join(names)}")
    bad = [s for s in items if s not in names]
    if not items:
        raise ConfigError(f"stages = []: name at least one of {', '.join(names)} (or leave stages out for "
                          f"{', '.join(default_stages())})")
    if bad:
        raise ConfigError(f"unknown stage {bad[0]!r}{_suggest(bad[0], list(names))} (stages: {', '.join(names)})")
    return tuple(s for s in names if s in items)  # always run in pipeline order


def apply(cfg: PipelineConfig, data: dict[str, Any], origin: str = "config") -> PipelineConfig:
    """Overlay a parsed TOML document (or CLI options shaped the same way) on `cfg`, validating every key."""
    changes: dict[str, Any] = {}
    sections = dict(cfg.sections)
    for key, value in data.items():
        stage = by_name().get(key)
        if stage is not None and stage.section is None:
            if value != {}:
                raise ConfigError(f"[{key}] takes no options (got {shown(value)}): {stage.no_options}")
        elif stage is not None:
            sections[key] = _section(key, value, sections[key])
        elif key == "stages":
            changes[key] = _stages(value)
        elif key in TOP_KEYS:
            if key == "sets" and not isinstance(value, dict):
                raise ConfigError("sets must be a table of build options (e.g. sets = { num_classes = 5 }) "
                                  f"in {origin}")
            changes[key] = dict(value) if key == "sets" else _typed(key, value, getattr(PipelineConfig(), key))
        else:
            valid = [*TOP_KEYS, *stage_names()]
            raise ConfigError(f"unknown key {_key(key)} in {origin}{_suggest(str(key), valid)}")
    return dataclasses.replace(cfg, **changes, sections=sections)


def idle_sections(cfg: PipelineConfig) -> list[str]:
    """The opt-in stages whose [section] was given options although `stages` does not name them: they will not run,
    which the user should hear (a note: a narrower --stages on the command line is a fair thing to ask for)."""
    from dlopt.contract.stage import opt_in_names

    defaults = default_sections()
    return [name for name in sorted(opt_in_names()) if name not in cfg.stages and name in cfg.sections
            and cfg.sections[name] != defaults.get(name)]


def validate(cfg: PipelineConfig) -> PipelineConfig:
    """Build every stage's own config now (the rules and messages of its command), so a bad value fails before
    the first step runs and before a run directory exists; then size the model on the meta device."""
    stage_configs(cfg)
    return cfg


def stage_configs(cfg: PipelineConfig) -> dict[str, Any]:
    """validate(), returning what it built: stage name -> the config its steps run with (built once per run)."""
    from dlopt.models.options import check_int, check_seed

    check_seed("", cfg.seed)
    check_int("", "input_size", cfg.input_size, 0, 1 << 16)
    out: dict[str, Any] = {}
    for stage in by_name().values():
        try:
            if stage.build is not None:
                out[stage.name] = stage.build(cfg)
        except (TypeError, ValueError) as exc:  # a stored config from an older dlopt, say: name the stage
            raise ConfigError(f"[{stage.name}]: {' '.join(str(exc).split())[:200]}") from None
    if cfg.arch:
        _check_model_size(cfg)
    return out


def _check_model_size(cfg: PipelineConfig) -> None:
    """The model the build or train step would make, sized without memory (dlopt.models.options.check_model_size)."""
    from dlopt.models.options import check_model_size
    from dlopt.models.registry import _builder, get_spec, make_model_config
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
