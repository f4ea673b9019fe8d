"""`dlopt pipeline`: every stage in one run, resumable, ending in a report.

    from dlopt.pipeline import PipelineConfig, run_pipeline
    outcome = run_pipeline(PipelineConfig(arch="lenet5"), root=Path("artifacts"))
"""

from dlopt.pipeline.config import PipelineConfig, apply, load_config
from dlopt.pipeline.runner import PipelineOutcome, StepOutcome, run_pipeline

__all__ = ["PipelineConfig", "PipelineOutcome", "StepOutcome", "apply", "load_config", "run_pipeline"]
