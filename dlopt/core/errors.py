"""dlopt's exception types. Each carries the CLI exit code it maps to (documented in the README).

Messages are one line: what was wrong, then what to do.
"""

from __future__ import annotations


class DloptError(Exception):
    """Base class: any error that dlopt explains to the user itself."""

    exit_code = 2


class UsageError(DloptError):
    """A bad option value or an unknown name."""

    exit_code = 2


class UnknownArchError(UsageError):
    """The architecture name is not in the registry."""


class ConfigError(UsageError):
    """A build option (--set, --input-size, --input-shape) is invalid."""


class InputMismatchError(UsageError):
    """Inputs given to an exported artifact do not fit its graph (count, dtype, rank or a fixed size)."""


class CheckFailedError(DloptError):
    """A check ran and failed (verification, regression)."""

    exit_code = 1


class InputFileError(DloptError):
    """A file dlopt was asked to read is missing, corrupt or of the wrong model."""

    exit_code = 3


class UnsupportedError(DloptError):
    """The architecture does not support the requested stage or format; the spec says why."""

    exit_code = 4


class OutputError(DloptError):
    """dlopt could not write its output (unwritable or full directory, unsafe name)."""

    exit_code = 5


class UnsafeFileError(DloptError):
    """A file would run code when loaded (pickle, or user model code a record names) and the user did not trust it."""

    exit_code = 6


class MissingDependencyError(DloptError):
    """An optional dependency is needed and is not installed."""

    exit_code = 7


INTERRUPTED_EXIT_CODE = 130

EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "a check ran and failed (verification, regression)",
    2: "usage error: unknown name or bad option value",
    3: "input file missing, corrupt, or of another model",
    4: "stage or format not supported by this architecture (the message says why)",
    5: "output could not be written",
    6: "unsafe file refused (pickle without --trust-pickle, user model code a file names without --trust-code)",
    7: "optional dependency missing (the message names the extra to install)",
    INTERRUPTED_EXIT_CODE: "interrupted (Ctrl-C)",
}
