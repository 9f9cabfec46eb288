"""One child of `serve --processes N`: what makes it a member of the group.

The supervisor (serving/supervisor.py) starts each child with the group's control directory in
$TICKSERVE_PROCESS_GROUP and a metrics directory in $PROMETHEUS_MULTIPROC_DIR. A child then

- binds the gRPC and HTTP ports with SO_REUSEPORT (the kernel spreads connections over the
  children; a connection, and so every stream on it, stays with one child);
- sends its repository changes through the group's change file (models/change_log.py), after
  replaying the changes made before it started (a restarted child catches up);
- exposes /metrics summed over the group (prometheus_client's multiprocess mode, telemetry.py);
- names itself on every unary answer: initial metadata `tickserve-process: <pid>`, so an
  operator (or a test) can tell which process answered.

Without $TICKSERVE_PROCESS_GROUP none of this happens: `serve` is the single process it always was.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import grpc

from ..models.change_log import SharedChanges
from ..models.repository import ModelRepository

GROUP_ENV = "TICKSERVE_PROCESS_GROUP"
PROCESS_HEADER = "tickserve-process"


def group_dir() -> Path | None:
    """The control directory when this process is a child of a group, else None."""
    value = os.environ.get(GROUP_ENV, "")
    return Path(value) if value else None


def join_group(repository: ModelRepository, control_dir: Path, poll_s: float = 0.25) -> SharedChanges:
    """Share the repository's changes with the group: replay those made so far (before this child
    serves), then follow the siblings' in a poll thread."""
    changes = SharedChanges(control_dir, repository.apply_change, poll_s=poll_s)
    changes.catch_up()
    repository.shared_changes = changes
    changes.start()
    return changes


class ProcessHeader(grpc.aio.ServerInterceptor):
    """Initial metadata `tickserve-process: <pid>` on every unary-unary call (streams are left
    alone: a stream's connection, hence its process, is the one its unary calls name)."""

    def __init__(self) -> None:
        self.metadata = ((PROCESS_HEADER, str(os.getpid())),)
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation, handler_call_details: grpc.HandlerCallDetails):
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            cached = (handler, self._wrap(handler))
            self._wrapped[method] = cached
        return cached[1]

    def _wrap(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        inner, metadata = handler.unary_unary, self.metadata

        async def unary_unary(request, context):
            await context.send_initial_metadata(metadata)
            result = inner(request, context)
            return await result if inspect.isawaitable(result) else result

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer
        )
