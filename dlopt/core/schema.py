"""Schemas of the JSON files dlopt reads back: checkpoint records and run manifests.

Every such file is data from disk, possibly edited or hostile: `fileio.read_json` bounds its bytes, depth and
integers, then these models check its types. Unknown keys are kept (newer dlopt versions and other stages add
fields); the keys dlopt acts on must have the right type, so a list where an object belongs or a string
config fails here, as one line naming the file and the field, instead of deep inside a stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from dlopt.core.errors import InputFileError
from dlopt.core.fileio import read_json

Name = Annotated[StrictStr, Field(min_length=1, max_length=4096)]
Sha256 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
Scalar = StrictBool | StrictInt | StrictFloat | Annotated[StrictStr, Field(max_length=4096)] | None
ConfigValue = Scalar | list[Scalar] | list[list[Scalar]]
Identifier = Annotated[StrictStr, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=200)]
Dim = Annotated[StrictInt, Field(ge=0, le=2**31)]


def _relative(text: str) -> str:
    parts = Path(text).parts
    if Path(text).is_absolute() or ".." in parts or "\x00" in text:
        raise ValueError(f"{text!r} is not a path inside the run (absolute, '..' or NUL)")
    return text


# A file of the run, as dlopt records it: relative to the run, never climbing out. (Symlinks are caught where the
# path is used: fileio.within resolves it.)
RunPath = Annotated[Name, AfterValidator(_relative)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)


class CodeSource(_Open):
    """Where a user model's code came from when the record was written, so it is found from any directory and
    refused if it changed."""

    file: Name
    sha256: Sha256
    attr: Identifier


class Structure(_Open):
    format: StrictStr
    attributes: dict[StrictStr, dict[Identifier, StrictBool | StrictInt | StrictFloat | list[StrictInt]]] = {}
    shapes: dict[StrictStr, list[Dim]] = {}


class CheckpointRecord(_Open):
    format: Literal["dlopt-checkpoint"]
    schema_: StrictInt = Field(default=1, alias="schema")
    arch: Name
    config: dict[StrictStr, ConfigValue] = {}
    weights: Name | None = None
    sha256: Sha256 | None = None
    metrics: dict[StrictStr, Any] = {}
    structure: Structure | None = None
    code: CodeSource | None = None
    state_versions: dict[StrictStr, StrictInt] | None = None  # submodule prefix -> state-dict layout version


class FileEntry(_Open):
    path: Name  # inputs may lie outside the run (provenance); whoever follows one uses fileio.within
    sha256: Sha256 | None = None
    bytes: Annotated[StrictInt, Field(ge=0)] | None = None


class OutputEntry(FileEntry):
    path: RunPath  # a stage writes only inside its run


class StageEntry(_Open):
    status: StrictStr | None = None
    config: dict[StrictStr, Any] | None = None
    inputs: list[FileEntry] = []
    outputs: list[OutputEntry] = []
    metrics: dict[StrictStr, Any] | None = None


class ModelEntry(_Open):
    arch: Name | None = None
    config: dict[StrictStr, ConfigValue] | None = None
    source: StrictStr | None = None
    checkpoint: RunPath = "model.json"


class Manifest(_Open):
    schema_version: StrictInt | None = None
    run_id: StrictStr | None = None
    arch: Name | None = None
    created: StrictStr = ""
    model: ModelEntry = ModelEntry()
    stages: dict[StrictStr, StageEntry] = {}


def _first_problem(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "the top level"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {err['msg']}{more}"


def validate(model: type[BaseModel], data: Any, path: Path, what: str) -> Any:
    """`data` checked against `model`; returns `data` itself (all keys kept), or one InputFileError line."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        raise InputFileError(f"{what} {path} is not a valid {what} ({_first_problem(exc)}); it is damaged or was "
                             "not written by dlopt") from None
    return data


def read_record(path: Path) -> dict[str, Any]:
    """A checkpoint record, read bounded and schema-checked."""
    data = read_json(path, "checkpoint record")
    if not isinstance(data, dict) or data.get("format") != "dlopt-checkpoint":
        raise InputFileError(f"{path} is not a dlopt checkpoint record; give the .json written by dlopt")
    return validate(CheckpointRecord, data, path, "checkpoint record")


def read_manifest(path: Path) -> dict[str, Any]:
    """A run manifest, read bounded and schema-checked."""
    return validate(Manifest, read_json(path, "manifest"), path, "manifest")
