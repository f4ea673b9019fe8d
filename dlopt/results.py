"""Typed records of the result files stages write and `report`, `runs` and the CLI read back.

Each is a frozen dataclass with `from_json(data)` (types checked, unknown keys ignored, missing optional fields
defaulted; a wrong type or a missing required field is one ResultError line naming the field) and `to_json()`.
`read_result(Type, path)` reads a file bounded (dlopt.fileio.read_json) and checks it the same way.

    q = read_result(QuantizeReport, run.path / "int8" / "quantize_report.json")
    q.metric_after, q.top1_agreement
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dlopt.errors import InputFileError

T = TypeVar("T")


class ResultError(InputFileError):
    """A result file of the right name whose content is not what its stage writes."""


def _check(tp: Any, value: Any, where: str) -> Any:
    """`value` decoded as `tp` (dataclasses from dicts, tuples from lists), or ResultError naming `where`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check(inner[0] if len(inner) == 1 else Any, value, where)
    if dataclasses.is_dataclass(tp):
        return tp.from_json(value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ResultError(f"{where}: expected an object, got {type(value).__name__}")
        return {str(k): _check(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ResultError(f"{where}: expected a list, got {type(value).__name__}")
        return tuple(_check(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    ok = {float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          bool: lambda v: isinstance(v, bool), str: lambda v: isinstance(v, str)}[tp]
    if not ok(value):
        raise ResultError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {str(value)[:40]!r}")
    return float(value) if tp is float else value


class Record:
    """from_json / to_json for the frozen dataclasses below."""

    @classmethod
    def from_json(cls: type[T], data: Any, where: str = "") -> T:
        if not isinstance(data, dict):
            raise ResultError(f"{where or 'the top level'}: expected an object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            key = f.metadata.get("key", f.name)
            path = f"{where}.{key}" if where else key
            if key in data:
                values[f.name] = _check(hints[f.name], data[key], path)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ResultError(f"{path}: missing")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.metadata.get("key", f.name)] = _plain(value)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class TrainResult(Record):
    """train_result.json: the test split's metrics of the trained model."""

    arch: str
    metric: str | None = None
    test: dict[str, float | None] = field(default_factory=dict)  # {"loss": .., "accuracy": ..}
    best_epoch: int | None = None
    epochs_run: int | None = None
    seconds: float | None = None

    @property
    def test_metric(self) -> float | None:
        return self.test.get(self.metric) if self.metric else None


@dataclass(frozen=True)
class PruneMetric(Record):
    name: str | None = None
    higher_is_better: bool = True
    before: float | None = None
    after_prune: float | None = None
    after_finetune: float | None = None

    @property
    def final(self) -> float | None:
        return self.after_finetune if self.after_finetune is not None else self.after_prune


@dataclass(frozen=True)
class PruneReport(Record):
    """<name>/prune_report.json."""

    arch: str
    method: str | None = None
    ratio: float | None = None
    params: dict[str, float | None] = field(default_factory=dict)  # before, after, removed
    macs: dict[str, float | None] = field(default_factory=dict)
    metric: PruneMetric | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class QuantizeReport(Record):
    """<name>/quantize_report.json: the quantized file and its metric on held-out data."""

    arch: str
    method: str | None = None
    backend: str | None = None
    artifact: str | None = None  # file name inside the variant's directory
    metric: str | None = None
    metric_before: float | None = None
    metric_after: float | None = None
    drop_points: float | None = None
    top1_agreement: float | None = None
    agreement: float | None = None
    verified: bool | None = None
    layers_int8: int | None = None
    threads: int | None = None


@dataclass(frozen=True)
class VerifiedArtifact(Record):
    artifact: str = ""
    format: str | None = None
    passed: bool = False
    criterion: str | None = None
    worst: dict[str, Any] = field(default_factory=dict)

    @property
    def max_abs(self) -> float | None:
        value = self.worst.get("max_abs")
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class VerifyReport(Record):
    """verify-report.json (written by export and verify): one verdict per exported file."""

    passed: bool | None = None
    arch: str | None = None
    artifacts: dict[str, VerifiedArtifact] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchStats(Record):
    median_ms: float
    p90_ms: float | None = None
    p99_ms: float | None = None
    iqr_ratio: float | None = None  # interquartile range / median
    n: int | None = None


@dataclass(frozen=True)
class BenchRow(Record):
    variant: str
    backend: str
    batch_size: int
    status: str
    artifact: str | None = None
    stats: BenchStats | None = None
    model_bytes: int | None = None
    speedup_vs_eager: float | None = None
    throughput_per_s: float | None = None
    noisy: bool = False  # bench judged the spread too wide to rank this row (noise_reason says why)
    noise_reason: str | None = None


@dataclass(frozen=True)
class BenchResult(Record):
    """bench.json: one row per variant x batch size, with the machine's state while it ran."""

    rows: tuple[BenchRow, ...]
    run: str | None = None
    threads: int | None = None
    device: str | None = None
    created: str | None = None
    loadavg: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluationRow(Record):
    variant: str
    runtime: str
    path: str
    metrics: dict[str, float | None] | None = None
    error: str | None = None


@dataclass(frozen=True)
class Evaluation(Record):
    """evaluation.json (the pipeline's evaluate step): every variant's metric through its own runtime."""

    metric: str
    rows: tuple[EvaluationRow, ...] = ()
    higher_is_better: bool = True
    sizes: dict[str, dict[str, int | None]] = field(default_factory=dict)
    note: str | None = None
    data: dict[str, Any] | None = None


WHAT = {TrainResult: "train result", PruneReport: "prune report", QuantizeReport: "quantize report",
        VerifyReport: "verify report", BenchResult: "bench result", Evaluation: "evaluation"}


def read_result(kind: type[T], path: Path) -> T:
    """The file at `path` as a `kind` record; ResultError (exit 3) names the file and the first bad field."""
    from dlopt.fileio import read_json

    what = WHAT.get(kind, "result")
    data = read_json(Path(path), what)
    try:
        return kind.from_json(data)  # type: ignore[attr-defined]
    except ResultError as exc:
        raise ResultError(f"{path} is not a valid {what} ({exc}); rerun the stage that writes it") from None
