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


async def _abort(context: grpc.aio.ServicerContext, exc: Exception, method: str) -> None:
    if isinstance(exc, TickserveError):
        log.info("%s -> %s: %s", method, exc.status.name, exc.message)
        await context.abort(GRPC_CODE[exc.status], exc.message)
    ref = uuid.uuid4().hex[:12]
    log.error("%s failed (reference %s)", method, ref, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (reference {ref})")


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
            await _abort(context, exc, handler.__name__)
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
            await _abort(context, exc, handler.__name__)

    return wrapper
