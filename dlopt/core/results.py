"""Typed records of the result files stages write and `report`, `runs` and the CLI read back.

Each is a frozen dataclass (the machinery is dlopt.core.records): `from_json(data)` checks types, ignores unknown
keys and defaults missing optional fields (an older file still reads; a wrong type or a missing required field
is one ResultError line naming the field); `to_json()` is what its stage writes. Writers build the record
and write it with `write_result`, which refuses one that does not read back as itself, so the file's keys
are exactly the fields declared here. Free-form parts (per-layer tables, configs) stay `dict[str, Any]`.

    q = read_result(QuantizeReport, run.path / "int8" / "quantize_report.json")
    q.metric_after, q.top1_agreement
    write_result(QuantizeReport.of(assembled_dict), staged / "quantize_report.json")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dlopt.core.records import Record, RecordWriteError, ResultError, checked_json, optional

__all__ = ["BenchResult", "BenchRow", "BenchStats", "Evaluation", "EvaluationRow", "PruneMetric", "PruneReport",
           "QuantizeReport", "Record", "RecordWriteError", "ResultError", "TrainResult", "VerifiedArtifact",
           "VerifyReport", "read_result", "write_result"]

T = TypeVar("T")


@dataclass(frozen=True)
class TrainResult(Record):
    """train_result.json (and what `train()` returns): the test split's metrics of the trained model."""

    arch: str
    run_dir: str = ""
    metric: str | None = None
    test: dict[str, float | None] = field(default_factory=dict)  # {"loss": .., "accuracy": ..}
    best_epoch: int | None = None
    epochs_run: int | None = None
    stopped: str | None = None  # why training ended before its last epoch (early stop, non-finite loss)
    seconds: float | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # the dataset's name, sizes, preprocessing
    world_size: int = 1
    device: str = "cpu"
    history: tuple[dict[str, Any], ...] = ()  # one row per epoch: losses, validation metric, lr, seconds
    bn_stats: str | None = optional()  # BatchNorm statistics re-estimated before each evaluation, and why

    @property
    def test_metric(self) -> float | None:
        return self.test.get(self.metric) if self.metric else None


@dataclass(frozen=True)
class PruneMetric(Record):
    name: str | None = None
    higher_is_better: bool | None = True  # None when the run has no data to score on
    before: float | None = None
    after_prune: float | None = None
    after_finetune: float | None = None
    data: dict[str, Any] | str | None = None  # the data options scored on, or "none: <why>"

    @property
    def final(self) -> float | None:
        return self.after_finetune if self.after_finetune is not None else self.after_prune


@dataclass(frozen=True)
class PruneReport(Record):
    """<name>/prune_report.json. Keys marked optional() appear only for the methods or options that make them."""

    arch: str
    stage: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the PruneConfig asked for
    method: str | None = None
    ratio: float | None = None
    importance: str | None = None
    global_pruning: bool | None = field(default=None, metadata={"key": "global"})
    iterative_steps: int | None = None
    params: dict[str, float | None] = field(default_factory=dict)  # before, after, removed
    macs: dict[str, float | None] = field(default_factory=dict)
    widths: dict[str, Any] = field(default_factory=dict)  # before/after: layer -> widths
    kept_layers: dict[str, str] | None = optional()  # structured: layer -> why it was left whole
    attention_modules: tuple[str, ...] | None = optional()
    width_plan: dict[str, Any] | None = optional()
    blocks: dict[str, Any] | None = optional()  # --drop-blocks: found, dropped, ranking, why
    sparsity: dict[str, float] | None = optional()  # unstructured
    note: str | None = optional()
    seconds: float | None = None
    file_bytes: dict[str, int | None] = field(default_factory=dict)
    metric: PruneMetric | None = None
    finetune: tuple[dict[str, Any], ...] = ()  # one entry per fine-tuning round
    checkpoint: str | None = None  # the pruned record, relative to the run
    achieved: dict[str, Any] | None = optional()  # structured: share asked for against share achieved
    layers: dict[str, dict[str, Any]] | None = optional()  # structured: one row per layer and why
    notes: tuple[str, ...] = ()
    speedup_path: tuple[dict[str, Any], ...] | None = optional()  # --target-speedup: the steps taken
    speedup_plot: str | None = optional()  # --target-speedup: the path as a PNG in the variant's directory
    latency: dict[str, Any] | None = optional()  # before/after timings: batch 1 by default (its `method`), --bench


@dataclass(frozen=True)
class QuantizeReport(Record):
    """<name>/quantize_report.json: the quantized file and its metric on held-out data."""

    arch: str
    stage: str | None = None
    method: str | None = None
    backend: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    chosen_by: str | None = None  # "auto" or "asked"
    auto: dict[str, Any] | None = None  # what auto measured to choose
    artifact: str | None = None  # file name inside the variant's directory
    size_bytes: dict[str, float | None] = field(default_factory=dict)
    metric: str | None = None
    accuracy_basis: str | None = None
    metric_before: float | None = None
    metric_after: float | None = None
    drop_points: float | None = None
    top1_agreement: float | None = None
    relative_error: float | None = None
    latency_ms_b1: dict[str, float | None] = field(default_factory=dict)
    speedup_vs_eager_b1: float | None = None  # the runtime and int8 together, against eager PyTorch fp32
    speedup_vs_fp32_b1: float | None = optional()  # int8 alone: against fp32 on the same runtime (fp32_reference)
    fp32_reference: str | None = optional()  # "onnxruntime fp32": the fp32 file timed on the int8 file's runtime
    runtime_speedup_vs_eager_b1: float | None = optional()  # that runtime's fp32 against eager fp32
    int8_worthwhile: bool | None = optional()  # int8 at least 1.1x faster than fp32 on its runtime
    int8_verdict: str | None = optional()  # "int8 brings nothing here (...): ship the fp32 ONNX file"
    threads: int | None = None
    layers_int8: int | None = None
    layers_float: int | None = None
    float_layers: tuple[str, ...] = ()
    kept_float: tuple[str, ...] = ()  # the layers the accuracy-aware search kept in float
    float_why: str | None = optional()
    search: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)  # shapes (the sweep) and task checks
    verified: bool | None = None
    notes: tuple[str, ...] = ()
    seconds: float | None = None
    agreement: float | None = optional()  # written by older versions instead of top1_agreement


@dataclass(frozen=True)
class VerifiedArtifact(Record):
    """One format's verdict (dlopt.verify.VerifyReport.to_dict())."""

    artifact: str = ""
    format: str | None = None
    criterion: str | None = None
    passed: bool = False
    tolerance: dict[str, Any] | None = None
    degenerate: dict[str, str] = field(default_factory=dict)  # output -> why the check proved nothing
    judged_relative: dict[str, str] = optional({})  # output -> why it was judged against its own scale
    reference: dict[str, Any] = field(default_factory=dict)  # output -> its scale
    outputs: dict[str, Any] = field(default_factory=dict)  # output -> its worst error over the cases, and verdict
    worst: dict[str, Any] = field(default_factory=dict)
    failures: tuple[tuple[str, ...], ...] = ()  # (shape, output, reason)
    cases: tuple[dict[str, Any], ...] = ()

    @property
    def max_abs(self) -> float | None:
        value = self.worst.get("max_abs")
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class VerifyReport(Record):
    """verify-report.json (written by export, the pipeline and verify): one verdict per exported file."""

    arch: str | None = None
    stage: str | None = None
    weights_source: dict[str, Any] | None = optional()  # verify --weights: where the reference weights came from
    inputs: dict[str, Any] | None = optional()  # --inputs FILE.npz compared on: file, sha256, samples, arrays
    passed: bool | None = None
    artifacts: dict[str, VerifiedArtifact] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class BenchStats(Record):
    """Latency of one call in milliseconds (dlopt.bench.stats.Stats.to_dict())."""

    n: int | None = None
    median_ms: float
    mean_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    iqr_ms: float | None = None
    std_ms: float | None = None
    percentiles_ms: dict[str, float] = field(default_factory=dict)  # "99.9" -> ms, the percentiles asked for
    iqr_ratio: float | None = None  # interquartile range / median


@dataclass(frozen=True, kw_only=True)
class BenchRow(Record):
    """One variant at one shape. A row that did not run (status unavailable or failed) has `reason` and its
    measurement fields null; `noisy` and `speedup_noisy` appear only when true."""

    variant: str
    backend: str
    batch_size: int
    seq_len: int | None = None
    precision: str | None = None
    artifact: str | None = None
    status: str
    reason: str | None = optional()
    setup_s: float | None = None
    first_call_s: float | None = None
    warmup_s: float | None = None
    warmup_calls: int | None = None
    rss_setup_mb: float | None = None
    peak_rss_call_mb: float | None = None
    peak_cuda_mb: float | None = None
    model_bytes: int | None = None
    model_bytes_source: str | None = None
    stop: str | None = None  # why timing stopped: converged, budget, budget spent, max_calls, iterations
    calls_wanted: int | None = optional()  # stop "budget spent": the min_calls it fell short of (stats.n it got)
    stats: BenchStats | None = None
    throughput_per_s: float | None = None
    flops: int | None = None
    gflops: float | None = None
    pct_peak: float | None = None  # share of the machine's measured peak
    noisy: bool = optional(False)  # bench judged the spread too wide to rank this row (noise_reason says why)
    noise_reason: str | None = optional()
    speedup_vs_eager: float | None = None
    speedup_noisy: bool = optional(False)  # this row or its baseline is noisy: the ratio is not meaningful
    baseline: str | None = optional()  # without a PyTorch model (a run made from an ONNX file): the row this one's
    # speed-up is over, the fp32 file on the same runtime
    speedup_vs_baseline: float | None = optional()  # the baseline's median / this row's median
    measured: str | None = optional()  # when (ISO time): rows of earlier, wider benches are kept (dlopt.bench.history)
    threads: int | None = optional()  # the threads this row was timed with
    artifact_sha256: str | None = optional()  # the file as timed: a kept row whose file changed since is dropped


@dataclass(frozen=True, kw_only=True)
class BenchResult(Record):
    """bench.json: one row per variant x batch size, with the machine's state while it ran."""

    schema: str | None = None  # "dlopt.bench/1"
    created: str | None = None
    target: str | None = None
    arch: str | None = None
    run: str | None = None
    model_config: dict[str, Any] | None = None
    device: str | None = None
    threads: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    loadavg: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    peak: dict[str, Any] = field(default_factory=dict)  # the machine's measured peak (roofline)
    budget: dict[str, Any] | None = optional()  # seconds allowed and used, and what was cut (dlopt.bench.budget)
    no_eager: str | None = optional()  # why no row has speedup_vs_eager ("n/a: an ONNX file, no PyTorch model")
    rows: tuple[BenchRow, ...]
    notes: tuple[str, ...] = ()


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
    split: str | None = None
    rows: tuple[EvaluationRow, ...] = ()
    sizes: dict[str, dict[str, int | None]] = field(default_factory=dict)  # variant -> parameters, macs
    skipped: tuple[dict[str, str], ...] = ()  # files no done stage vouches for: path, reason
    data: dict[str, Any] | None = None
    higher_is_better: bool = True
    note: str | None = optional()  # why some rows are not measured


WHAT = {TrainResult: "train result", PruneReport: "prune report", QuantizeReport: "quantize report",
        VerifyReport: "verify report", BenchResult: "bench result", Evaluation: "evaluation"}


def read_result(kind: type[T], path: Path) -> T:
    """The file at `path` as a `kind` record; ResultError (exit 3) names the file and the first bad field."""
    from dlopt.core.fileio import read_json

    what = WHAT.get(kind, "result")
    data = read_json(Path(path), what)
    try:
        return kind.from_json(data)  # type: ignore[attr-defined]
    except ResultError as exc:
        raise ResultError(f"{path} is not a valid {what} ({exc}); rerun the stage that writes it") from None


def write_result(record: Record, path: Path) -> Path:
    """Write `record` to `path` atomically (dlopt.core.fileio.write_json_atomic), after checking that it reads back
    strictly as the same record; a record that does not is a RecordWriteError (exit 5) and nothing is written."""
    from dlopt.core.fileio import write_json_atomic

    data = checked_json(record, WHAT.get(type(record), type(record).__name__))
    write_json_atomic(Path(path), data)
    return Path(path)
