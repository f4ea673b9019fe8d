"""The bench stage on the stage contract (dlopt.contract.stage): `run_bench` over `dlopt.bench.runner.bench`."""

from __future__ import annotations

from typing import Any

from dlopt.bench.config import BenchConfig
from dlopt.bench.runner import BenchOutcome, bench, check_measurable
from dlopt.contract.stage import Progress, Section, register_stage
from dlopt.core.errors import UnsupportedError


def run_bench(target: Any, config: BenchConfig, progress: Progress | None = None) -> BenchOutcome:
    """Benchmark every variant of the target (a Target, a bench Source, or TargetOptions) into its run."""
    return bench(target, config, progress or (lambda _msg: None))


class BenchStage:
    name = "bench"
    Config = BenchConfig
    # the pipeline's default backends are fewer than the command's: compile and openvino only when named (openvino is
    # added by itself when the run holds an IR: dlopt.runtime.formats.benched_when_present)
    section = Section(keys=("backends", "batch_sizes", "threads", "budget_s"),
                      defaults={"backends": ("eager", "onnxruntime", "torchscript", "pt2")},
                      comment="dlopt bench options; budget_s is per batch size, shared by all variants")

    def check(self, spec: Any, config: BenchConfig | None = None) -> None:
        """The spec allows bench; a bench that would measure nothing on this machine stops here too."""
        if not spec.supports("bench"):
            raise UnsupportedError(f"{spec.name} cannot be benchmarked: {spec.why_not('bench')}")
        if config is not None:
            check_measurable(config)

    def run(self, target: Any, config: BenchConfig, progress: Progress | None = None) -> BenchOutcome:
        return run_bench(target, config, progress)


STAGE = register_stage(BenchStage())
