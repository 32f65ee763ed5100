"""The one exception tree of kaic and its documented exit codes.

Owns: ``ExitCode`` and every exception kaic raises on purpose. Must not import
anything from kaic. Each error has a readable one-line ``str()`` that the CLI
prints as-is; library errors are wrapped with ``raise ... from e``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, the same for every command (docs/cli.md)."""

    OK = 0
    """All selected MUSTs passed / the input is valid."""
    NOT_MET = 1
    """Requirements not met, or a checklist is invalid."""
    USAGE = 2
    """Usage or input error: unknown version or id, malformed option or file."""
    UNREACHABLE = 3
    """The cluster could not be reached or authenticated against."""
    INTERNAL = 4
    """A bug in kaic or an unexpected environment failure."""
    INTERRUPTED = 130
    """Interrupted by Ctrl-C or SIGTERM (after cleanup ran)."""


class KaicError(Exception):
    """Base of every error kaic raises on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(KaicError):
    """The user asked for something that does not exist or is malformed."""

    exit_code = ExitCode.USAGE


class UnknownVersionError(UsageError):
    """A catalog or Kubernetes version kaic does not know."""


class UnknownRequirementError(UsageError):
    """A requirement id that is not in the catalog version asked for."""


class InputError(UsageError):
    """A file given by the user cannot be read or parsed."""


class ClusterError(KaicError):
    """Talking to the cluster failed in a way a check cannot recover from."""

    exit_code = ExitCode.INTERNAL


class ClusterUnreachableError(ClusterError):
    """The cluster cannot be reached, or the credentials are refused."""

    exit_code = ExitCode.UNREACHABLE


class PermissionDeniedError(ClusterError):
    """The credentials lack a permission the operation needs."""

    exit_code = ExitCode.UNREACHABLE


class NotFoundError(ClusterError):
    """An object or API resource is not there."""


class ConflictError(ClusterError):
    """An object already exists or was changed concurrently."""


class WaitTimeoutError(ClusterError):
    """A wait for a condition on the cluster ran out of time."""


class RejectedError(ClusterError):
    """The apiserver or an admission webhook refused an object as invalid
    (HTTP 400/422, or a webhook's denial)."""


class LabError(KaicError):
    """The local lab could not be built, started or stopped."""

    exit_code = ExitCode.INTERNAL


class Interrupted(KaicError):
    """The run was interrupted by a signal; cleanup has run."""

    exit_code = ExitCode.INTERRUPTED
