"""Verification: run eager and an artifact on the same inputs at several shapes; judge every output."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlopt.core.errors import InputMismatchError
from dlopt.models.spec import ArchSpec
from dlopt.verify.compare import OutputStats, ReferenceScale, compare, reference_scale
from dlopt.verify.criteria import Criterion, ElementwiseTolerance, TopOneAgreement


@dataclass(frozen=True)
class VerifyConfig:
    export_batch: int = 2  # the batch the artifact was exported with: verification also uses others
    batch_sizes: tuple[int, ...] | None = None  # None: the export batch, 1, and an odd size that is not it
    seq_lens: tuple[int, ...] | None = None  # None: the default length and a shorter one (sequence models)
    seed: int = 0
    criterion: Criterion | None = None  # None: the elementwise tolerance below
    atol: float | None = None  # None: the spec's Tolerance.atol (export/verify --atol)
    rtol: float | None = None  # None: the spec's Tolerance.rtol (export/verify --rtol)
    time_limit_s: float | None = 300.0  # per artifact, all shapes (verify --time-limit-s); None: no limit


@dataclass(frozen=True)
class Case:
    batch: int
    seq: int | None
    inputs: tuple[Any, ...]
    source: str = "random"  # "random" (valid ranges) or "data" (the trained run's test split)

    @property
    def label(self) -> str:
        return f"batch {self.batch}" + (f", seq {self.seq}" if self.seq is not None else "") + \
            (" (data)" if self.source == "data" else "")


@dataclass(frozen=True)
class CaseResult:
    batch: int
    seq: int | None
    outputs: tuple[OutputStats, ...] = ()
    failures: dict[str, str] = field(default_factory=dict)  # output name (or "run") -> reason
    error: str | None = None  # the artifact could not run at this shape
    source: str = "random"  # where the inputs came from (Case.source)

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, "seq": self.seq, "source": self.source, "error": self.error,
                "failures": self.failures, "outputs": [o.to_dict() for o in self.outputs]}


@dataclass(frozen=True)
class VerifyReport:
    artifact: str
    format: str
    criterion: str
    cases: tuple[CaseResult, ...]
    # output -> why the reference makes the criterion vacuous (a failure: the check proved nothing)
    degenerate: dict[str, str] = field(default_factory=dict)
    scales: tuple[ReferenceScale, ...] = ()  # per output, pooled over the cases
    tolerance: dict[str, Any] | None = None  # {"atol", "rtol", "source"} for an elementwise criterion
    relative: dict[str, str] = field(default_factory=dict)  # output -> why it was judged relative to its scale

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(not c.failures for c in self.cases) and not self.degenerate

    def failures(self) -> list[tuple[str, str, str]]:
        """(shape label, output, reason) for every failure."""
        return [("all shapes", name, why) for name, why in self.degenerate.items()] + \
            [(_label(c), name, why) for c in self.cases for name, why in c.failures.items()]

    def worst(self) -> dict[str, Any]:
        """The largest max abs error over every case and output, and where it happened."""
        rows = [(o.max_abs if o.max_abs is not None else float("inf"), o, c) for c in self.cases for o in c.outputs]
        if not rows:
            return {"max_abs": None, "case": None}
        err, out, case = max(rows, key=lambda r: r[0])
        top1 = [o.top1 for c in self.cases for o in c.outputs if o.top1 is not None]
        return {"max_abs": out.max_abs, "max_rel": out.max_rel, "p99_abs": out.p99_abs, "cosine": out.cosine,
                "ref_rms": out.ref_rms, "err_rms": _max_or_none(o.err_rms for c in self.cases for o in c.outputs),
                "needed_atol": max((o.needed_atol or 0.0) for c in self.cases for o in c.outputs),
                "top1": min(top1) if top1 else None, "output": out.name, "case": _label(case)}

    def per_output(self) -> dict[str, dict[str, Any]]:
        """Every output by name: its worst max abs error, err/RMS and needed atol over the cases, and its verdict."""
        table: dict[str, dict[str, Any]] = {}
        for c in self.cases:
            for o in c.outputs:
                row = table.setdefault(o.name, {"max_abs": 0.0, "err_rms": None, "needed_atol": 0.0, "shape": None,
                                                "passed": o.name not in self.degenerate})
                row["max_abs"] = None if o.max_abs is None or row["max_abs"] is None else max(row["max_abs"], o.max_abs)
                row["err_rms"] = _max_or_none((row["err_rms"], o.err_rms))
                row["needed_atol"] = max(row["needed_atol"], o.needed_atol or 0.0)
                row["shape"] = row["shape"] or list(o.shape)
                row["passed"] = row["passed"] and o.name not in c.failures
        return table

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "format": self.format, "criterion": self.criterion, "passed": self.passed,
                "tolerance": self.tolerance, "degenerate": self.degenerate, "judged_relative": self.relative,
                "reference": {s.name: s.to_dict() for s in self.scales}, "outputs": self.per_output(),
                "worst": self.worst(), "failures": [list(f) for f in self.failures()],
                "cases": [c.to_dict() for c in self.cases]}


def _max_or_none(values: Any) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _label(c: CaseResult) -> str:
    return f"batch {c.batch}" + (f", seq {c.seq}" if c.seq is not None else "") + (" (data)" if c.source == "data" else "")


def plan_batches(export_batch: int) -> tuple[int, ...]:
    """The export batch, 1, and the smallest odd size that is neither (so a baked-in batch shows)."""
    sizes = [export_batch]
    for b in (1, 3, 5, 7):
        if b not in sizes and len(sizes) < 3:
            sizes.append(b)
    return tuple(sizes)


def plan_seqs(spec: ArchSpec, cfg: Any) -> tuple[int | None, ...]:
    from dlopt.models.registry import default_seq_len

    if not spec.takes_sequences:
        return (None,)
    default = default_seq_len(cfg)
    other = max(2, default // 2 + 1)
    return (default, other if other != default else default + 1)


def make_cases(spec: ArchSpec, cfg: Any, config: VerifyConfig = VerifyConfig()) -> list[Case]:
    """Random valid inputs (make_inputs) at every planned batch x seq shape, a different seed per case."""
    from dlopt.models.registry import make_inputs

    batches = config.batch_sizes or plan_batches(config.export_batch)
    seqs = config.seq_lens or plan_seqs(spec, cfg)
    return [Case(b, s, make_inputs(spec, cfg, b, s, seed=config.seed + i))
            for i, (b, s) in enumerate((b, s) for s in seqs for b in batches)]


def reference_outputs(module: Any, cases: list[Case]) -> list[tuple[Any, ...]]:
    """The eager outputs of every case, each flattened to its tensors (dlopt.models.outputs)."""
    return named_references(module, cases, ())[0]


def named_references(module: Any, cases: list[Case], declared: tuple[str, ...]
                     ) -> tuple[list[tuple[Any, ...]], tuple[str, ...]]:
    """The flattened eager outputs of every case, and the outputs' names (dict keys, nested paths, or the spec's)."""
    import torch

    from dlopt.models import outputs

    refs, names = [], declared
    with torch.no_grad():
        for c in cases:
            out = module(*c.inputs)
            refs.append(outputs.flatten(out))
            names = outputs.names(out, declared)
    return refs, names


def criterion_for(spec: ArchSpec, config: VerifyConfig) -> Criterion:
    """The config's criterion, else elementwise at the config's atol/rtol, each defaulting to the spec's."""
    if config.criterion is not None:
        return config.criterion
    tol = spec.tolerance
    return ElementwiseTolerance(tol.atol if config.atol is None else config.atol,
                                tol.rtol if config.rtol is None else config.rtol)


def tolerance_used(spec: ArchSpec, config: VerifyConfig) -> dict[str, Any] | None:
    """What the JSON records: the atol/rtol applied, and whether each came from the spec or an option."""
    if config.criterion is not None and not isinstance(config.criterion, ElementwiseTolerance):
        return None
    crit = criterion_for(spec, config)
    return {"atol": crit.atol, "rtol": crit.rtol,
            "atol_source": "spec" if config.atol is None else "option",
            "rtol_source": "spec" if config.rtol is None else "option"}


def output_names(spec: ArchSpec, count: int, names: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """`names` (the reference's own, from named_references) when they fit, else the spec's, else output{i}."""
    if names is not None and len(names) == count:
        return names
    return spec.output_names if len(spec.output_names) == count else tuple(f"output{i}" for i in range(count))


def reference_check(refs: list[tuple], spec: ArchSpec, criterion: Criterion, names: tuple[str, ...] | None = None
                    ) -> tuple[tuple[ReferenceScale, ...], dict[str, str]]:
    """Each output's scale pooled over the cases, and the outputs on which the criterion would be vacuous."""
    if not refs or len({len(r) for r in refs}) != 1:
        return (), {}
    names = output_names(spec, len(refs[0]), names)
    rtol = getattr(criterion, "rtol", spec.tolerance.rtol)
    scales = tuple(reference_scale(n, [r[i] for r in refs], rtol) for i, n in enumerate(names)
                   if all(hasattr(r[i], "is_floating_point") for r in refs))
    vacuous = getattr(criterion, "vacuous", None)
    degenerate = {s.name: why for s in scales if vacuous is not None and (why := vacuous(s))}
    return scales, degenerate


def _run_case(runner: Any, case: Case, ref: tuple, spec: ArchSpec, criterion: Criterion,
              ref_names: tuple[str, ...] | None = None) -> CaseResult:
    from dlopt.models import outputs
    from dlopt.runtime.loader import TimeLimitError

    try:
        out = outputs.flatten(runner(*case.inputs))
    except TimeLimitError:  # stops the whole check: the next shape would only wait as long again
        raise
    except Exception as exc:  # the artifact failing at this shape is a verification result, not a crash
        msg = " ".join(str(exc).split())[:240] or type(exc).__name__
        return CaseResult(case.batch, case.seq, failures={"run": f"artifact failed to run: {msg}"}, error=msg,
                          source=case.source)
    if len(out) != len(ref):
        return CaseResult(case.batch, case.seq, failures={"run": f"{len(out)} outputs, eager gives {len(ref)}"},
                          source=case.source)
    names = output_names(spec, len(ref), ref_names)
    classifier = spec.is_classifier or isinstance(criterion, TopOneAgreement)
    rtol = getattr(criterion, "rtol", spec.tolerance.rtol)
    stats = tuple(compare(n, r, o, rtol, classifier) for n, r, o in zip(names, ref, out, strict=True))
    failures = {s.name: why for s, r, o in zip(stats, ref, out, strict=True) if (why := criterion.judge(s, r, o))}
    return CaseResult(case.batch, case.seq, stats, failures, source=case.source)


def verify_runner(runner: Any, cases: list[Case], refs: list[tuple], spec: ArchSpec, criterion: Criterion,
                  artifact: str = "", fmt: str = "", tolerance: dict[str, Any] | None = None,
                  names: tuple[str, ...] | None = None) -> VerifyReport:
    """Judge a callable (an artifact's runner, or any candidate) against precomputed eager outputs.

    Inputs that fit the artifact at no shape at all mean the reference is another model: one clear error.
    A reference so small or so constant that the criterion would accept a constant output fails too.
    """
    misfits: list[InputMismatchError] = []

    def watched(*inputs: Any) -> Any:
        try:
            return runner(*inputs)
        except InputMismatchError as exc:
            misfits.append(exc)
            raise

    results = tuple(_run_case(watched, c, r, spec, criterion, names) for c, r in zip(cases, refs, strict=True))
    if cases and len(misfits) == len(cases):
        raise InputMismatchError(f"{misfits[0]}; the reference model's inputs fit it at no shape, so it was "
                                 "exported from another model: pass the --checkpoint it came from")
    scales, degenerate = reference_check(refs, spec, criterion, names)
    if tolerance is None and isinstance(criterion, ElementwiseTolerance):
        tolerance = {"atol": criterion.atol, "rtol": criterion.rtol}
    note = getattr(criterion, "relative_note", None)  # outputs within atol: judged relative to their scale
    relative = {s.name: why for s in scales if note is not None and s.name not in degenerate and (why := note(s))}
    return VerifyReport(artifact, fmt, criterion.name, results, degenerate, scales, tolerance, relative)


def verify_artifacts(model: Any, spec: ArchSpec, cfg: Any, artifacts: dict[str, Path],
                     config: VerifyConfig = VerifyConfig(), *, trust_pickle: bool = False,
                     cases: list[Case] | None = None) -> dict[str, VerifyReport]:
    """Verify every artifact (format -> path) against the eager entry module; `cases` overrides the inputs."""
    from dlopt.models.registry import entry_module
    from dlopt.runtime.loader import load_artifact, time_limit

    cases = cases if cases is not None else make_cases(spec, cfg, config)
    refs, names = named_references(entry_module(model, spec).eval(), cases, spec.output_names)
    criterion = criterion_for(spec, config)
    reports = {}
    for fmt, path in artifacts.items():
        runner = load_artifact(Path(path), trust_pickle=trust_pickle)
        with time_limit(config.time_limit_s):
            reports[fmt] = verify_runner(runner, cases, refs, spec, criterion, str(path), fmt,
                                         tolerance_used(spec, config), names)
    return reports
