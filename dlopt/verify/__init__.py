"""Verify exported artifacts against the eager model: several shapes, every output, a pluggable criterion, and a
check of the reference itself (an output too small or too constant for the tolerance fails as degenerate)."""

from dlopt.verify.compare import OutputStats, ReferenceScale, compare, reference_scale
from dlopt.verify.core import (
                               Case,
                               CaseResult,
                               VerifyConfig,
                               VerifyReport,
                               make_cases,
                               plan_batches,
                               plan_seqs,
                               reference_check,
                               reference_outputs,
                               verify_artifacts,
                               verify_runner,
)
from dlopt.verify.criteria import Criterion, ElementwiseTolerance, TopOneAgreement

__all__ = ["Case", "CaseResult", "Criterion", "ElementwiseTolerance", "OutputStats", "ReferenceScale", "TopOneAgreement",
           "VerifyConfig", "VerifyReport", "compare", "make_cases", "plan_batches", "plan_seqs", "reference_check",
           "reference_outputs", "reference_scale", "verify_artifacts", "verify_runner"]
