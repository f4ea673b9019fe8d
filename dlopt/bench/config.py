"""What `dlopt bench` is asked to do: backends, sizes, threads, device, budget. No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from dlopt.core.errors import ConfigError
from dlopt.models.spec import Backend, Exporter  # one enum per choice, in dlopt.models.spec (kept importable from here)


class Device(StrEnum):
    CPU = "cpu"
    CUDA = "cuda"


class StopReason(StrEnum):
    CONVERGED = "converged"  # IQR under the target fraction of the median
    BUDGET = "budget"  # the time budget ran out first, after at least min_calls
    BUDGET_SPENT = "budget spent"  # the budget ran out before min_calls: cut short (the row says how many it got)
    MAX_CALLS = "max-calls"  # the call cap was reached first
    ITERATIONS = "iterations"  # --iterations N timed calls were made (no budget, no convergence test)


NOISY_IQR = 0.5  # IQR above half the median: the middle half of the calls spans more than half the median, so
# medians (and speed-ups) that differ by less than that cannot be ranked; such a row is marked noisy
DEFAULT_PERCENTILES = (50.0, 90.0, 99.0)


@dataclass(frozen=True)
class BenchConfig:
    # OpenVINO is a default: on x86 CPUs it is often the fastest fp32 runtime (benchmarks/fp32_bar.py)
    backends: tuple[Backend | str, ...] = (Backend.EAGER, Backend.TORCHSCRIPT, Backend.COMPILE, Backend.ONNXRUNTIME,
                                     Backend.OPENVINO, Backend.PT2)
    batch_sizes: tuple[int, ...] = (1, 8)
    seq_lens: tuple[int, ...] = ()  # () = the config's default sequence length (sequence models only)
    threads: int | None = None  # None = torch's current setting; always recorded
    device: Device = Device.CPU
    budget_s: float = 10.0  # timed calls per (batch, seq) shape, shared by all variants round-robin; the bench's
    # timing never passes shapes x budget_s (warm-up is apart, and recorded in bench.json's "budget")
    iterations: int | None = None  # instead of the budget: exactly this many timed calls per variant
    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES  # reported per row (the median is always one)
    iqr_target: float = 0.10  # stop a variant once IQR < this fraction of its median
    min_calls: int = 10  # never judge convergence on fewer timed calls (the budget may stop a variant before)
    max_calls: int = 100_000
    block_s: float = 0.05  # one round-robin block per variant lasts about this long
    warmup_calls: int = 3  # untimed calls after the first (the first is timed and reported apart); under a budget
    # a slow variant makes fewer (at least one): they stop after a tenth of its share of the budget (bench.budget)
    onnx_exporter: str = "dynamo"  # passed to dlopt.export when a run has no .onnx yet
    variants: bool = True  # also bench the artifacts and variants found in the run directory
    seed: int = 0
    inputs: str = ""  # --inputs FILE.npz: time on these samples (the first B of them per batch size B)
    # what the run records of that file, set by use_inputs_file: {"file", "sha256", "samples", "arrays"}
    inputs_used: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        check_bench_config(self)


def use_inputs_file(source: Any, cfg: BenchConfig) -> tuple[Any, BenchConfig]:
    """The bench source fed from cfg.inputs (checked against the model: dlopt.data.inputs_file), and the config that
    records which file was used; both unchanged without --inputs. A stray .onnx has no spec to check against."""
    if not cfg.inputs:
        return source, cfg
    from dataclasses import replace

    from dlopt.core.errors import UsageError
    from dlopt.data.inputs_file import load_inputs

    if source.spec is None:
        raise UsageError("--inputs needs a model dlopt knows (an architecture, a run or a file inside one), not a "
                         "stray .onnx file")
    data = load_inputs(Path(cfg.inputs), source.spec, source.config)
    batches = replace(source, make_inputs=lambda b, _seq: data.batch(0, b))
    return batches, replace(cfg, inputs_used=data.record(source.run.path))


def check_bench_config(cfg: BenchConfig) -> None:
    """The one rule set for `dlopt bench` options and the [bench] table of pipeline.toml (strings become enums)."""
    from dlopt.models.options import check_choice, check_float, check_int, check_seed

    runtimes = runtime_names()
    for key, enum in (("backends", Backend), ("batch_sizes", None), ("seq_lens", None)):
        items = getattr(cfg, key)
        if isinstance(items, (str, int)) or not isinstance(items, (tuple, list)) or (key != "seq_lens" and not items):
            raise ConfigError(f"bench.{key} = {items!r:.60} is not allowed: expected a non-empty list"
                              + (f" from {', '.join(runtimes)}" if enum else " of positive integers"))
        for item in items:
            if enum:
                check_choice("bench", key, item, runtimes, flag="--backend")
            else:
                flag = "--batch-sizes" if key == "batch_sizes" else "--seq-len"
                check_int("bench", key, item, 1, 1_000_000, flag=flag)
        object.__setattr__(cfg, key, tuple(as_backend(b) for b in items) if enum else tuple(items))
    check_choice("bench", "device", str(cfg.device), [d.value for d in Device])
    object.__setattr__(cfg, "device", Device(str(cfg.device)))
    check_int("bench", "threads", cfg.threads, 1, 4096, optional=True)
    check_float("bench", "budget_s", cfg.budget_s, 0.0, 86_400.0, low_open=True)
    check_int("bench", "iterations", cfg.iterations, 1, 100_000_000, optional=True, flag="--iterations")
    check_percentiles(cfg.percentiles)
    object.__setattr__(cfg, "percentiles", tuple(sorted({float(q) for q in cfg.percentiles})))
    check_float("bench", "iqr_target", cfg.iqr_target, 0.0, 1.0, low_open=True)
    check_int("bench", "min_calls", cfg.min_calls, 1, 1_000_000_000)
    check_int("bench", "max_calls", cfg.max_calls, cfg.min_calls, 1_000_000_000)
    check_float("bench", "block_s", cfg.block_s, 0.0, 3600.0, low_open=True)
    check_int("bench", "warmup_calls", cfg.warmup_calls, 0, 1_000_000)
    check_choice("bench", "onnx_exporter", cfg.onnx_exporter, [e.value for e in Exporter], flag="--exporter")
    check_seed("bench", cfg.seed)


def runtime_names() -> list[str]:
    """Every bench runtime: the Backend members and any registered (dlopt.runtime.formats.register_runtime)."""
    from dlopt.runtime.formats import runtime_names as names

    return names()


def as_backend(name: Backend | str) -> Backend | str:
    """A Backend member, or a registered runtime's name as it is."""
    return Backend(str(name)) if str(name) in Backend._value2member_map_ else str(name)


def check_percentiles(values: object) -> None:
    if not isinstance(values, (tuple, list)) or not values or not all(
            isinstance(q, (int, float)) and not isinstance(q, bool) and 0 < q <= 100 for q in values):
        raise ConfigError(f"bench.percentiles = {values!r:.60} is not allowed: expected numbers in (0, 100], "
                          "e.g. --percentiles 50,90,99,99.9")


def parse_percentiles(text: str | None) -> tuple[float, ...]:
    """'50,90,99,99.9' -> (50.0, 90.0, 99.0, 99.9); the median (50) is always included."""
    if text is None:
        return DEFAULT_PERCENTILES
    try:
        values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"--percentiles {text!r} is not a list of numbers; use e.g. 50,90,99,99.9") from None
    if not values or not all(0 < q <= 100 for q in values):
        raise ConfigError(f"--percentiles {text!r}: each must be in (0, 100], e.g. 50,90,99,99.9")
    return tuple(sorted({50.0, *values}))


def parse_backends(text: str | None) -> tuple[Backend | str, ...]:
    """'eager,onnxruntime' or 'all'."""
    if text is None or text.strip() == "":
        return BenchConfig.backends
    if text.strip() == "all":
        return tuple(Backend)
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part not in runtime_names():
            raise ConfigError(f"unknown backend {part!r}; choose from {', '.join(runtime_names())}, or all")
        out.append(as_backend(part))
    return tuple(dict.fromkeys(out))


def check_path_parent(path: Path | None, flag: str) -> None:
    if path is not None and path.parent and not path.parent.exists():
        raise ConfigError(f"{flag} {path}: directory {path.parent} does not exist; create it or choose another path")
