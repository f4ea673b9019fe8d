"""`dlopt verify` as a library call: find the artifacts and the reference model, verify, write the report."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dlopt.contract.stage import Outcome, Progress, register_stage
from dlopt.core.errors import InputFileError, UnsupportedError, UsageError
from dlopt.core.fileio import within  # paths read from the manifest stay inside the run
from dlopt.core.runs import MANIFEST, Run
from dlopt.verify.core import VerifyConfig, VerifyReport, verify_artifacts
from dlopt.verify.criteria import for_artifact
from dlopt.verify.realdata import verify_cases

REPORT = "verify-report.json"


@dataclass(frozen=True)
class VerifyOptions:
    path: Path  # an artifact (.onnx, .ts, .pt2) or a run directory
    checkpoint: Path | None = None  # the reference model; default: the model of the run that holds the artifact
    trust_pickle: bool = False  # load .ts/.pt2 files that no dlopt manifest records
    config: VerifyConfig = VerifyConfig()
    # --weights: the reference is the architecture the ONNX metadata names, built with these weights (dlopt.models.weights)
    weights: str | None = None
    inputs: Path | None = None  # --inputs FILE.npz: compare on the user's inputs (dlopt.data.inputs_file)
    reference: Path | None = None  # --reference REF.onnx: compare with that file instead of a model (verify.reference)


@dataclass(frozen=True)
class VerifyOutcome(Outcome):
    reports: dict[str, VerifyReport]
    arch: str

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.reports.values())


def _owning_run(path: Path) -> Run | None:
    for folder in (path.parent, path.parent.parent):
        if (folder / MANIFEST).is_file():
            return Run(folder)
    return None


def collect(path: Path) -> tuple[Run | None, dict[str, Path]]:
    """The run (if any) and the artifacts to verify: every one the run's export stage recorded, or the file."""
    from dlopt.runtime.loader import SUFFIXES, artifact_format

    path = Path(path)
    if path.is_dir():
        run = Run.open(path)
        export = run.manifest().get("stages", {}).get("export", {})
        if export.get("status") != "done":  # a failed or running rerun: the files of the last done export stand
            export = export.get("previous") or export
        outputs = export.get("outputs", [])
        paths = [Path(o["path"]) for o in outputs]
        found = {SUFFIXES[p.suffix]: within(run.path, p, "export output") for p in paths if p.suffix in SUFFIXES}
        if not found:
            raise InputFileError(f"{path} has no exported artifacts; run `dlopt export {path}` first")
        return run, found
    fmt = artifact_format(path)
    if not path.is_file():
        raise InputFileError(f"artifact {path} not found")
    return _owning_run(path), {fmt: path}


def _check_readable(artifacts: dict[str, Path], trust_pickle: bool) -> dict[str, dict[str, str]]:
    """Fail fast, with one line, on a corrupt, foreign or untrusted file, before any model is built."""
    from dlopt.runtime.formats import get_format
    from dlopt.runtime.loader import check_trusted, read_metadata

    meta = {}
    for fmt, path in artifacts.items():
        rec = get_format(fmt)
        if rec.metadata:  # the architecture and whether it is quantized, written inside the file
            meta[fmt] = read_metadata(path)
        elif rec.unpickles:  # loading may run code; the other formats hold none
            check_trusted(path, trust_pickle)
    return meta


def _source_checkpoint(run: Run, artifacts: dict[str, Path]) -> Path | None:
    """The checkpoint the stage that wrote these artifacts read (a pruned or quantized variant's own source)."""
    wanted = {str(Path(p).resolve().relative_to(run.path.resolve())) for p in artifacts.values()
              if Path(p).resolve().is_relative_to(run.path.resolve())}
    for stage in run.manifest().get("stages", {}).values():
        if wanted & {o.get("path") for o in stage.get("outputs", [])}:
            sources = [within(run.path, i["path"], "stage input") for i in stage.get("inputs", [])
                       if str(i.get("path", "")).endswith(".json")]
            if sources and sources[0].is_file():
                return sources[0]
    return None


def _reference(run: Run | None, opts: VerifyOptions, artifacts: dict[str, Path]) -> tuple[Any, Any, Any]:
    from dlopt.models.checkpoint import load_checkpoint

    if opts.checkpoint is not None:
        ck = load_checkpoint(opts.checkpoint, trust_pickle=opts.trust_pickle)
    elif run is not None:
        record = _source_checkpoint(run, artifacts) or (
            within(run.path, run.manifest().get("model", {}).get("checkpoint", "model.json"), "the run's checkpoint"))
        ck = load_checkpoint(record, trust_pickle=opts.trust_pickle)
    else:
        raise InputFileError(f"{opts.path} is not inside a dlopt run, so the reference model is unknown; "
                             "pass --checkpoint with the model it was exported from")
    return ck.model, ck.spec, ck.config


def _weights_reference(opts: VerifyOptions, meta: dict[str, dict[str, str]]) -> tuple[Any, Any, Any, dict[str, Any]]:
    """The architecture and build options an ONNX file records, built with --weights."""
    import json

    from dlopt.core.user_code import is_user_ref
    from dlopt.models.registry import get_spec, make_model_config
    from dlopt.models.weights import build_with_weights

    if opts.checkpoint is not None:
        raise UsageError("give --checkpoint or --weights for the reference model, not both")
    arch = next((m["arch"] for m in meta.values() if m.get("arch")), None)
    if arch is None or is_user_ref(arch):
        raise UsageError("--weights needs the architecture from an .onnx written by dlopt (a user model's from "
                         "--checkpoint); pass --checkpoint with the model it was exported from")
    spec = get_spec(arch)
    config = json.loads(next(m for m in meta.values() if m.get("arch")).get("config") or "{}")
    config.pop("pretrained", None)  # build_with_weights sets it for the weights given
    model, cfg, info = build_with_weights(spec, make_model_config(spec, config), opts.weights)
    return model, spec, cfg, info.to_dict()


def verify_path(opts: VerifyOptions) -> VerifyOutcome:
    if opts.reference is not None:  # two files on the same inputs: no model, no run
        if opts.checkpoint is not None or opts.weights is not None:
            raise UsageError("--reference is the model to compare with; drop --checkpoint / --weights")
        from dlopt.verify.reference import verify_reference

        reports, what, written = verify_reference(opts.path, opts.reference, opts.config, opts.inputs,
                                                  opts.trust_pickle)
        summary = {fmt: {"passed": r.passed, "worst": r.worst()} for fmt, r in reports.items()}
        return VerifyOutcome(reports, what, stage="verify", run_dir=None, report_path=written, summary=summary)
    run, artifacts = collect(opts.path)
    meta = _check_readable(artifacts, opts.trust_pickle)
    loaded: dict[str, Any] = {}
    if opts.weights is not None:
        model, spec, cfg, loaded["weights_source"] = _weights_reference(opts, meta)
    else:
        model, spec, cfg = _reference(run, opts, artifacts)
    for fmt, m in meta.items():
        if m.get("arch") and m["arch"] != spec.name:
            raise InputFileError(f"{artifacts[fmt]} was exported from {m['arch']}, but the reference model is "
                                 f"{spec.name}; pass the matching --checkpoint")
    from dlopt.runtime.quiet import quiet_deprecations

    with quiet_deprecations():
        # the user's --inputs file, else the trained run's test data, else random inputs
        cases, used = verify_cases(run, spec, cfg, opts.config, opts.inputs)
        loaded.update({"inputs": used} if used else {})
        reports = {}
        for fmt, path in artifacts.items():  # a quantized file is judged by its task's criterion, not elementwise
            quantized = for_artifact(spec.task, meta.get(fmt, {})) if opts.config.criterion is None else None
            config = replace(opts.config, criterion=quantized) if quantized else opts.config
            reports.update(verify_artifacts(model, spec, cfg, {fmt: path}, config, trust_pickle=True,  # checked above
                                            cases=cases))
    from dlopt.verify.report import write_report

    extra = {"arch": spec.name, "stage": "verify", **loaded}
    summary = {fmt: {"passed": r.passed, "worst": r.worst()} for fmt, r in reports.items()}
    if run is None:
        written = write_report(Path(opts.path).with_suffix(".verify.json"), reports, extra)
        return VerifyOutcome(reports, spec.name, stage="verify", run_dir=None, report_path=written, summary=summary)
    # A variant's file (pruned/, int8/) gets its own report and manifest stage, beside the run's own.
    folder = Path(opts.path).parent if Path(opts.path).is_file() else run.path
    sub = folder.resolve() != run.path.resolve()
    target = run.file(folder.name, REPORT) if sub else run.file(REPORT)
    stage_name = f"verify-{folder.name}" if sub else "verify"
    extra["stage"] = stage_name
    stage_config = {"artifacts": {k: _in_run(v, run.path) for k, v in artifacts.items()}}
    files = [*artifacts.values(), *([opts.inputs] if opts.inputs is not None else [])]
    if used:
        stage_config["inputs"] = used
    with run.stage(stage_name, stage_config, inputs=files) as rec:
        write_report(target, reports, extra, run.path)
        rec.outputs.append(target)
        rec.metrics.update(summary)
    return VerifyOutcome(reports, spec.name, stage=stage_name, run_dir=run.path, report_path=target, summary=summary)


def _in_run(path: Path, run_dir: Path) -> str:
    """A path as the manifest records it: relative to the run when inside, else as given."""
    p = Path(path).resolve()
    return str(p.relative_to(run_dir.resolve())) if p.is_relative_to(run_dir.resolve()) else str(path)


def run_verify(target: Any, config: VerifyOptions, progress: Progress | None = None) -> VerifyOutcome:
    """verify_path on the target: a run's Target (its exported files) or a path (an artifact or a run directory);
    None: the config's own path."""
    if target is not None:
        run = getattr(target, "run", None)
        config = replace(config, path=run.path if run is not None else Path(target))
    if progress is not None:
        progress(f"verifying {config.path}")
    return verify_path(config)


class VerifyStage:
    name = "verify"
    Config = VerifyOptions
    section = None  # in a pipeline, verification follows export with each spec's tolerance

    def check(self, spec: Any, config: VerifyOptions | None = None) -> None:
        if not spec.supports("verify"):
            raise UnsupportedError(f"{spec.name}'s files cannot be verified: {spec.why_not('verify')}")

    def run(self, target: Any, config: VerifyOptions, progress: Progress | None = None) -> VerifyOutcome:
        return run_verify(target, config, progress)


STAGE = register_stage(VerifyStage())
