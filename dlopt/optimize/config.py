"""What `dlopt optimize` is asked to reach, and how long it may search. No torch or optuna here: the CLI builds
and checks all of this before anything heavy loads and before any run directory exists."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dlopt.core.errors import ConfigError, UsageError
from dlopt.models.options import check_float, check_int, check_seed, parse_int_list, shown

PRUNE_RATIOS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)  # structured ratios searched; 0 = not pruned
DEPTH_SHARES = (0.0, 0.25, 0.5, 0.75)  # shares of the model's residual blocks removed whole (dlopt.prune.depth)
BEFORE_DEPTH = (0.0,)  # what a study recorded before depth pruning searched (so it resumes as it was)
DEFAULT_TRIALS = 20  # when neither --trials nor --time-budget is given
DEFAULT_STUDY = "optimize"  # the study's name in the run's own SQLite file


class Runtime(StrEnum):
    """Where a candidate runs (each maps to a dlopt.bench backend)."""

    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"
    EAGER = "eager"
    TORCHSCRIPT = "torchscript"


class Precision(StrEnum):
    FP32 = "fp32"
    BF16 = "bf16"  # torch, or the fp32 IR computed in bf16 by OpenVINO; only on CPUs with avx512_bf16 / amx_bf16
    FP16 = "fp16"  # ONNX Runtime float16 file
    INT8 = "int8"  # static int8: ONNX Runtime QDQ, or OpenVINO through NNCF
    INT8_BF16 = "int8+bf16"  # the NNCF int8 IR with its float parts computed in bf16 (OpenVINO; bf16 CPUs only)


@dataclass(frozen=True)
class Goal:
    """What the pick must meet: at most `max_drop` points lost, and at most one of the three speed/size goals.
    None of them: the fastest candidate within the drop."""

    max_drop: float = 1.0  # metric points (percent for lower-is-better metrics; disagreement without a metric)
    target_latency_ms: float | None = None  # at batch_size, on this machine
    target_speedup: float | None = None  # against fp32 eager (an ONNX file: itself on ONNX Runtime), same batch/threads
    max_size_mb: float | None = None  # the file on disk, its companions included (1 MB = 10^6 bytes)
    batch_size: int = 1

    def __post_init__(self) -> None:
        check_float("optimize", "max_drop", self.max_drop, 0.0, 100.0, flag="--max-drop")
        check_float("optimize", "target_latency_ms", self.target_latency_ms, 0.0, 1e7, low_open=True,
                    flag="--target-latency", optional=True)
        check_float("optimize", "target_speedup", self.target_speedup, 0.0, 1e4, low_open=True,
                    flag="--target-speedup", optional=True)
        check_float("optimize", "max_size_mb", self.max_size_mb, 0.0, 1e7, low_open=True, flag="--max-size",
                    optional=True)
        check_int("optimize", "batch_size", self.batch_size, 1, 65_536, flag="--batch-size")
        given = [f for f, v in (("--target-latency", self.target_latency_ms), ("--target-speedup",
                                self.target_speedup), ("--max-size", self.max_size_mb)) if v is not None]
        if len(given) > 1:
            raise UsageError(f"{' and '.join(given)} are two goals: give at most one of --target-latency, "
                             "--target-speedup and --max-size (none: the fastest within --max-drop)")

    @property
    def kind(self) -> str:
        """latency | speedup | size | fastest."""
        if self.target_latency_ms is not None:
            return "latency"
        if self.target_speedup is not None:
            return "speedup"
        return "size" if self.max_size_mb is not None else "fastest"

    def describe(self, against: str = "fp32 eager") -> str:
        """One line; `against`: what a speed-up is measured against (the report's speed_reference)."""
        drop = f"losing at most {self.max_drop:g} point{'s' if self.max_drop != 1 else ''}"
        if self.target_latency_ms is not None:
            aim = f"at most {self.target_latency_ms:g} ms"
        elif self.target_speedup is not None:
            aim = f"at least {self.target_speedup:g}x faster than {against}"
        elif self.max_size_mb is not None:
            aim = f"at most {self.max_size_mb:g} MB on disk, the fastest such"
        else:
            aim = "the fastest"
        return f"{aim} at batch {self.batch_size}, {drop}"


@dataclass(frozen=True)
class OptimizeConfig:
    goal: Goal = Goal()
    runtimes: tuple[Runtime, ...] = ()  # () = every runtime dlopt has that runs here (dlopt.optimize.space)
    threads: tuple[int, ...] = (1,)  # thread counts searched (--threads auto: 1..cores)
    trials: int | None = None  # finished trials the study holds when the search stops (all workers together)
    time_budget_s: float | None = None  # this process's search time; the finalists' re-timing comes after
    storage: str | None = None  # an Optuna RDB URL; None = sqlite:///<run>/optimize/study.db
    study: str = DEFAULT_STUDY
    inputs: str | None = None  # --inputs FILE.npz: calibrate on it and judge on its held-out rows
    seed: int = 0
    prune_ratios: tuple[float, ...] = PRUNE_RATIOS
    depth_shares: tuple[float, ...] = DEPTH_SHARES  # each made a block count for the model (space.block_counts)
    precisions: tuple[Precision, ...] = tuple(Precision)
    finetune_epochs: int | None = None  # after each prune; None: dlopt prune's default (3 where the run has data)
    data_limit: int | None = None  # cap on samples per split (quick runs and tests)
    trial_timing_s: float = 1.0  # interleaved timing per trial (candidate and its fp32 references)
    final_timing_s: float = 4.0  # interleaved re-timing of the finalists before the pick
    finalists: int = 6  # at most this many Pareto candidates are re-timed

    def __post_init__(self) -> None:
        object.__setattr__(self, "runtimes", tuple(parse_runtime(r) for r in self.runtimes))
        object.__setattr__(self, "precisions", tuple(Precision(str(p)) for p in self.precisions))
        for t in self.threads:
            check_int("optimize", "threads", t, 1, 4096, flag="--threads")
        check_int("optimize", "trials", self.trials, 1, 100_000, flag="--trials", optional=True)
        check_float("optimize", "time_budget_s", self.time_budget_s, 0.0, 30 * 86_400.0, low_open=True,
                    flag="--time-budget", optional=True)
        check_seed("optimize", self.seed)
        check_int("optimize", "finetune_epochs", self.finetune_epochs, 0, 1000, optional=True)
        check_int("optimize", "data_limit", self.data_limit, 1, flag="--limit", optional=True)
        if not self.prune_ratios or any(not 0.0 <= r <= 0.95 for r in self.prune_ratios):
            raise ConfigError(f"optimize.prune_ratios = {shown(self.prune_ratios)}: give ratios in [0, 0.95]")
        if not self.depth_shares or any(not 0.0 <= d <= 1.0 for d in self.depth_shares):
            raise ConfigError(f"optimize.depth_shares = {shown(self.depth_shares)}: give shares of the residual "
                              "blocks in [0, 1] (0 = none dropped)")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", self.study):
            raise UsageError(f"--study {self.study!r}: use 1 to 64 letters, digits, '.', '_' or '-'")
        if self.storage is not None:
            check_storage_url(self.storage)

    @property
    def stop(self) -> tuple[int | None, float | None]:
        """(trials, seconds): DEFAULT_TRIALS when neither is given."""
        if self.trials is None and self.time_budget_s is None:
            return DEFAULT_TRIALS, None
        return self.trials, self.time_budget_s

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["runtimes"] = [str(r) for r in self.runtimes]
        out["precisions"] = [str(p) for p in self.precisions]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OptimizeConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in data.items() if k in fields}
        kw["goal"] = Goal(**data.get("goal", {}))
        kw.setdefault("depth_shares", BEFORE_DEPTH)
        for key in ("runtimes", "threads", "prune_ratios", "depth_shares", "precisions"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)


def parse_runtime(value: Any) -> Runtime:
    if str(value) not in Runtime._value2member_map_:
        raise UsageError(f"unknown runtime {shown(value)}; choose from {', '.join(r.value for r in Runtime)}")
    return Runtime(str(value))


def parse_runtimes(text: str | None) -> tuple[Runtime, ...]:
    """'onnxruntime,openvino' -> the runtimes; None or '' -> () (every one that runs here)."""
    if not text:
        return ()
    return tuple(dict.fromkeys(parse_runtime(p.strip()) for p in text.split(",") if p.strip()))


def parse_threads(text: str | None) -> tuple[int, ...]:
    """'auto' (or nothing) -> 1..cores; 'N' -> (N,); '1,2' -> (1, 2)."""
    if text is None or text == "auto":
        return tuple(range(1, (os.cpu_count() or 1) + 1))
    return parse_int_list(text, "--threads (a number, a list such as 1,2, or auto)")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([hms])")


def parse_duration(text: str | None) -> float | None:
    """'20m', '1h30m', '90s' or a number of seconds -> seconds."""
    if text is None:
        return None
    s = text.strip().lower()
    try:
        value = float(s)
    except ValueError:
        parts = _DURATION.findall(s)
        if not parts or "".join(a + b for a, b in parts) != s:
            raise UsageError(f"--time-budget {text!r}: give a duration such as 20m, 1h30m, 90s or 600") from None
        value = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"--time-budget {text!r}: give a positive duration such as 20m")
    return value


STORAGE_DIALECTS = ("sqlite", "postgresql", "mysql")  # Optuna's RDB storage runs on these


def check_storage_url(url: str) -> None:
    """A URL Optuna's RDB storage can open: a known database (connecting comes next, still before any run directory
    exists: dlopt.optimize.study.open_storage)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError(f"--storage {url!r} is not a database URL; give e.g. sqlite:///study.db or "
                         "postgresql://user@host:5432/db") from None
    dialect = parsed.get_backend_name()
    if dialect not in STORAGE_DIALECTS:
        raise UsageError(f"--storage {url!r}: unsupported database {dialect!r}; use one of "
                         f"{', '.join(STORAGE_DIALECTS)}")
    if dialect == "sqlite" and not parsed.database:
        raise UsageError(f"--storage {url!r}: an in-memory SQLite study cannot be shared or resumed; name a file "
                         "(sqlite:///path/study.db)")
