"""The open StreamSignals and Evaluate calls and how far each has been answered, so that a
shutdown whose grace period runs out ends each one saying so (UNAVAILABLE), rather than
cancelling it in silence with ticks unanswered in its transport buffers."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc

log = logging.getLogger(__name__)


@dataclass
class Answered:
    """What one stream has answered so far (its handler counts after each answer it sends)."""

    method: str
    messages: int = 0  # messages taken (a StreamConfig included), each answered
    ticks: int = 0  # ticks answered


class OpenStreams:
    def __init__(self) -> None:
        self._open: dict[grpc.aio.ServicerContext, Answered] = {}

    def __len__(self) -> int:
        return len(self._open)

    def opened(self, context: grpc.aio.ServicerContext, method: str) -> Answered:
        answered = self._open[context] = Answered(method)
        return answered

    def closed(self, context: grpc.aio.ServicerContext) -> None:
        self._open.pop(context, None)

    async def end_all(self) -> int:
        """End every open stream with UNAVAILABLE and a message saying how far it was answered;
        the number ended."""
        ended = 0
        for context, answered in list(self._open.items()):
            if self._open.pop(context, None) is None:
                continue
            ended += 1
            try:
                await context.abort(grpc.StatusCode.UNAVAILABLE, _message(answered))
            except grpc.aio.AbortError:
                pass  # abort ends the call for the client and raises here
            except Exception:  # noqa: BLE001 - the call ended meanwhile; end the others still
                log.debug("ending a %s stream at shutdown", answered.method, exc_info=True)
        if ended:
            log.info("shutdown: ended %d stream(s) still open at the end of the grace period", ended)
        return ended


def _message(answered: Answered) -> str:
    if answered.method == "Evaluate":
        return (
            "Evaluate: the server is shutting down and the grace period ran out before the evaluation "
            "ended: no report; run it again on another server"
        )
    return (
        f"{answered.method}: the server is shutting down and the grace period ran out: the first "
        f"{answered.messages} messages of this stream were taken ({answered.ticks} ticks, every one answered) "
        "and nothing after them was read; send the rest to another server"
    )
