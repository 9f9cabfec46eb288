"""Errors -> gRPC status, in one place: one wrapper for unary handlers, one for streaming ones.

A `TickserveError` reaches the client with its status and its (client-safe)
message. Anything else is a bug: the client gets INTERNAL with a reference id
and nothing more; the log gets the traceback under the same id.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from ..errors import Status, TickserveError

log = logging.getLogger(__name__)

GRPC_CODE: dict[Status, grpc.StatusCode] = {status: grpc.StatusCode[status.name] for status in Status}

Req = TypeVar("Req")
Resp = TypeVar("Resp")


# The same statuses over HTTP (the JSON gateway), as Google's API design guide maps them.
HTTP_STATUS: dict[Status, int] = {
    Status.INVALID_ARGUMENT: 400,
    Status.DEADLINE_EXCEEDED: 504,
    Status.NOT_FOUND: 404,
    Status.ALREADY_EXISTS: 409,
    Status.PERMISSION_DENIED: 403,
    Status.RESOURCE_EXHAUSTED: 429,
    Status.FAILED_PRECONDITION: 400,
    Status.UNIMPLEMENTED: 501,
    Status.INTERNAL: 500,
    Status.UNAVAILABLE: 503,
    Status.UNAUTHENTICATED: 401,
}


def _client_error(exc: Exception, method: str) -> tuple[Status, str]:
    """(status, client-safe message); anything that is not a TickserveError is logged with a reference."""
    if isinstance(exc, TickserveError):
        log.info("%s -> %s: %s", method, exc.status.name, exc.message)
        return exc.status, exc.message
    ref = uuid.uuid4().hex[:12]
    log.error("%s failed (reference %s)", method, ref, exc_info=exc)
    return Status.INTERNAL, f"internal error (reference {ref})"


def http_error(exc: Exception, method: str) -> tuple[int, dict]:
    """(HTTP status, {"code", "message"}) for the JSON gateway."""
    status, message = _client_error(exc, method)
    return HTTP_STATUS[status], {"code": status.name, "message": message}


async def _abort(context: grpc.aio.ServicerContext, exc: Exception, method: str, servicer: Any = None) -> None:
    status, message = _client_error(exc, method)
    recorder = getattr(servicer, "recorder", None)
    if recorder is not None:
        recorder.call_failed(method, status.name)
    await context.abort(GRPC_CODE[status], message)


def unary_errors(
    handler: Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]:
    @functools.wraps(handler)
    async def wrapper(self, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            return await handler(self, request, context)
        except Exception as exc:  # noqa: BLE001 - mapped to a status right here
            if isinstance(exc, grpc.aio.AbortError):
                raise
            await _abort(context, exc, handler.__name__, self)
            raise  # unreachable: abort raises

    return wrapper


def stream_errors(
    handler: Callable[[Any, Any, grpc.aio.ServicerContext], AsyncIterator[Resp]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], AsyncIterator[Resp]]:
    @functools.wraps(handler)
    async def wrapper(self, request_iterator, context: grpc.aio.ServicerContext) -> AsyncIterator[Resp]:
        try:
            async for response in handler(self, request_iterator, context):
                yield response
        except Exception as exc:  # noqa: BLE001 - mapped to a status right here
            if isinstance(exc, grpc.aio.AbortError):
                raise
            await _abort(context, exc, handler.__name__, self)

    return wrapper
