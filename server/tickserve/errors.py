"""The one exception hierarchy of tickserve.

Every error a client may see carries a status. The mapping to gRPC status codes
lives in one place (`tickserve.serving.status`); anything that is not a
`TickserveError` reaches the client as INTERNAL with a generic message.
"""

from __future__ import annotations

import enum


class Status(enum.Enum):
    """The subset of gRPC status codes tickserve raises (same names and numbers)."""

    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16


class TickserveError(Exception):
    """Base class; `message` is safe to show to a client."""

    status: Status = Status.INTERNAL

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidArgument(TickserveError):
    status = Status.INVALID_ARGUMENT


class NotFound(TickserveError):
    status = Status.NOT_FOUND


class FailedPrecondition(TickserveError):
    status = Status.FAILED_PRECONDITION


class ResourceExhausted(TickserveError):
    status = Status.RESOURCE_EXHAUSTED


class AlreadyExists(TickserveError):
    status = Status.ALREADY_EXISTS


class Unavailable(TickserveError):
    """Transient: the same request may succeed if retried later (e.g. a model still LOADING)."""

    status = Status.UNAVAILABLE


class DeadlineExceeded(TickserveError):
    status = Status.DEADLINE_EXCEEDED


class Unauthenticated(TickserveError):
    status = Status.UNAUTHENTICATED


class ModelLoadError(TickserveError):
    """A model directory could not be loaded (the model is FAILED, others serve)."""

    status = Status.FAILED_PRECONDITION


class PluginError(TickserveError):
    """A plugin failed to import or broke the hook contract."""

    status = Status.INTERNAL


class TransportError(TickserveError):
    """A bridge transport's broker failed (unreachable, a publish not stored, a stream missing).
    Transient: the bridge stops without acknowledging the input at hand, and a restart resumes
    from the last acknowledged input message."""

    status = Status.UNAVAILABLE
