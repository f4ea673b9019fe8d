"""Verify exported artifacts against the eager model: several shapes, every output, a pluggable criterion."""

from dlopt.verify.compare import OutputStats, compare
from dlopt.verify.core import (Case, CaseResult, VerifyConfig, VerifyReport, make_cases, plan_batches, plan_seqs,
                               reference_outputs, verify_artifacts, verify_runner)
from dlopt.verify.criteria import Criterion, ElementwiseTolerance, TopOneAgreement

__all__ = ["Case", "CaseResult", "Criterion", "ElementwiseTolerance", "OutputStats", "TopOneAgreement", "VerifyConfig",
           "VerifyReport", "compare", "make_cases", "plan_batches", "plan_seqs", "reference_outputs",
           "verify_artifacts", "verify_runner"]
