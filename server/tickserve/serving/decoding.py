"""Request bytes that do not decode -> INVALID_ARGUMENT, on every method of the server.

grpcio decodes a request before any handler sees it. Bytes that are not a valid message
(truncated, not protobuf at all, a string field that is not UTF-8) raise protobuf's
DecodeError inside grpcio: a unary call then ends UNKNOWN with "Unexpected <class
'google.protobuf.message.DecodeError'>", naming an exception class to the client, and a
stream ends with whatever its handler makes of the exception (INTERNAL and a traceback).

`MalformedRequests` wraps each handler's request decoder, once per handler: a request that
does not decode ends the call INVALID_ARGUMENT with a message naming the message type, on
every service alike (tickserve's, KServe V2, health, reflection). A stream's earlier
messages keep their answers: the call ends when it reaches the bad one.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

import grpc

from ..errors import InvalidArgument

log = logging.getLogger(__name__)


class MalformedRequest(InvalidArgument):
    """A request message whose bytes do not decode (raised where a stream reads it)."""


class _Malformed:
    """A unary request that did not decode: the handler wrapper answers it, the handler never sees it."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def _message_name(deserializer: Callable) -> str:
    cls = getattr(deserializer, "__self__", None)  # the generated stubs pass Message.FromString
    descriptor = getattr(cls, "DESCRIPTOR", None)
    return getattr(descriptor, "full_name", "request")


def _decoder(deserializer: Callable, unary: bool) -> Callable[[bytes], object]:
    what = f"request: the bytes sent are not a valid {_message_name(deserializer)} message"

    def decode(data: bytes) -> object:
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001 - DecodeError, or a str field that is not UTF-8
            log.info("%s (%s)", what, type(exc).__name__)
            if unary:
                return _Malformed(what)
            raise MalformedRequest(what, field="request") from None

    return decode


def _wrap(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    deserializer = handler.request_deserializer
    if deserializer is None:  # the handler takes raw bytes: nothing to decode
        return handler
    if handler.unary_unary is not None or handler.unary_stream is not None:
        decode = _decoder(deserializer, unary=True)
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary_unary(request, context):
                if isinstance(request, _Malformed):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
                result = inner(request, context)
                return await result if inspect.isawaitable(result) else result

            return grpc.unary_unary_rpc_method_handler(unary_unary, decode, handler.response_serializer)
        inner_stream = handler.unary_stream

        async def unary_stream(request, context):
            if isinstance(request, _Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            async for response in inner_stream(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, decode, handler.response_serializer)

    decode = _decoder(deserializer, unary=False)
    if handler.stream_unary is not None:
        inner_unary = handler.stream_unary

        async def stream_unary(request_iterator, context):
            try:
                result = inner_unary(request_iterator, context)
                return await result if inspect.isawaitable(result) else result
            except MalformedRequest as exc:  # a handler that does not map errors itself
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)

        return grpc.stream_unary_rpc_method_handler(stream_unary, decode, handler.response_serializer)
    inner_streams = handler.stream_stream

    async def stream_stream(request_iterator, context):
        try:
            async for response in inner_streams(request_iterator, context):
                yield response
        except MalformedRequest as exc:  # tickserve's handlers map it themselves; others do not
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)

    return grpc.stream_stream_rpc_method_handler(stream_stream, decode, handler.response_serializer)


class MalformedRequests(grpc.aio.ServerInterceptor):
    """Wraps every method's decoder (see the module docstring); a handler is wrapped once."""

    def __init__(self) -> None:
        # method -> (its handler, the wrapped one): one entry per method the server has, however
        # many calls, and rewrapped if a method's handler ever changes
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation, handler_call_details: grpc.HandlerCallDetails):
        handler = await continuation(handler_call_details)
        if handler is None:  # no such method: grpcio answers UNIMPLEMENTED; nothing is kept
            return None
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            cached = self._wrapped[method] = (handler, _wrap(handler))
        return cached[1]
