"""One contract for every stage, and the one table of stages.

A stage is an object with a `name`, its `Config` (the frozen dataclass the command and pipeline.toml build), a
`section` (how pipeline.toml's `[name]` table maps onto that Config; None: the stage takes no options there),
`check(spec, config=None)` (raises UnsupportedError when the spec rules the stage, or the method the config asks
for, out) and `run(target, config, progress=None) -> Outcome`. A Config checks its options in its constructor; a
stage whose Config does not (export's) also has `validate(config)`, which the pipeline calls on the one it builds.
Every outcome extends `Outcome`, so a caller reads `stage`, `run_dir`, `report_path` and `summary` the same way
whatever ran. The CLI, the pipeline (sections, order, resume ledger) and the report read `stages()`; nothing keeps a
second list.

    from dlopt.contract.stage import get_stage
    quantize = get_stage("quantize")
    outcome = quantize.run(target, quantize.Config(method="dynamic"))
    outcome.report_path, outcome.summary

Adding a stage is one module that ends with `register_stage(STAGE)` and its name in STAGE_MODULES below (the
registration line, like a zoo family's import). No torch here: `stage_names()` answers without importing a stage.
A stage in OPT_IN (or registered with `opt_in=True`) is off unless a pipeline's `stages` names it: `default_stages()`
leaves it out.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from dlopt.core.errors import UsageError

Progress = Callable[[str], None]

# name -> the module that registers it, in pipeline order. Imported on first use (a registration, not an import).
STAGE_MODULES: dict[str, str] = {
    "train": "dlopt.train.stage",
    "prune": "dlopt.prune.stage",
    "quantize": "dlopt.quantize.stage",
    "optimize": "dlopt.optimize.pipeline_stage",
    "export": "dlopt.export.stage",
    "verify": "dlopt.verify.stage",
    "bench": "dlopt.bench.stage",
}
# off unless `stages` names them: optimize's search takes minutes where the default prune and quantize take seconds
OPT_IN: frozenset[str] = frozenset({"optimize"})


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What every stage's run returns; each stage's outcome adds its own fields after these."""

    stage: str  # the manifest stage it recorded (a variant's name for prune and quantize)
    run_dir: Path | None  # the run it wrote into (None: a file verified outside any run)
    report_path: Path | None  # the stage's own result file (None: it wrote none)
    summary: dict[str, Any] = field(default_factory=dict)  # JSON: what the manifest records as the stage's metrics


@dataclass(frozen=True)
class Section:
    """How pipeline.toml's [stage] table maps onto the stage's Config."""

    keys: tuple[str, ...] | None = None  # the Config fields it takes, in this order; None: every field (the keys
    # given are kept as they are written, the others are the command's defaults)
    defaults: Mapping[str, Any] = field(default_factory=dict)  # where the pipeline's default is not the command's
    comment: str = ""  # --print-config's line above the table


@runtime_checkable
class Stage(Protocol):
    name: str
    Config: type
    section: Section | None

    def check(self, spec: Any, config: Any = None) -> None:
        """UnsupportedError when the spec rules the stage out (or, given a config, the method it asks for)."""

    def run(self, target: Any, config: Any, progress: Progress | None = None) -> Outcome:
        """Run on the target (a dlopt.contract.target.Target the caller resolved) and record into its run."""


_order: list[str] = list(STAGE_MODULES)
_table: dict[str, Stage] = {}
_opt_in: set[str] = set(OPT_IN)


def register_stage(stage: Stage, *, before: str | None = None, opt_in: bool = False) -> Stage:
    """Add (or replace) a stage in the table; a new name goes before `before`, else last. `opt_in`: off unless a
    pipeline's `stages` names it."""
    if not isinstance(stage, Stage):
        raise TypeError(f"{stage!r} lacks the Stage contract (name, Config, section, check, run)")
    if stage.name not in _order:
        _order.insert(_order.index(before) if before in _order else len(_order), stage.name)
    if opt_in:
        _opt_in.add(stage.name)
    _table[stage.name] = stage
    return stage


def unregister_stage(name: str) -> None:
    """Take a stage registered at run time out again (a test's own stage); the built-in ones stay."""
    if name in STAGE_MODULES:
        return
    _table.pop(name, None)
    _opt_in.discard(name)
    if name in _order:
        _order.remove(name)


def stage_names() -> tuple[str, ...]:
    """Every stage's name, in pipeline order, without importing any stage."""
    return tuple(_order)


def opt_in_names() -> tuple[str, ...]:
    """The stages a pipeline runs only when its `stages` names them, in pipeline order."""
    return tuple(n for n in _order if n in _opt_in)


def default_stages() -> tuple[str, ...]:
    """The stages a pipeline runs when its config names none: every stage but the opt-in ones."""
    return tuple(n for n in _order if n not in _opt_in)


def get_stage(name: str) -> Stage:
    if name not in _table and name in STAGE_MODULES:
        importlib.import_module(STAGE_MODULES[name])  # the module registers itself
    if name not in _table:
        raise UsageError(f"unknown stage {name!r}; choose from {', '.join(_order)}")
    return _table[name]


def stages() -> tuple[Stage, ...]:
    """Every stage, in pipeline order (each module imported on first use)."""
    return tuple(get_stage(n) for n in list(_order))
