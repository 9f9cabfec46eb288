"""Ends streams that send nothing for `idle_timeout_s`, so idle streams cannot hold the
server's `max_concurrent_streams` slots (and their feature state) forever.

A stream handler calls `opened` once, `touched` on every message it reads and `closed` when
it ends; one watchdog task, running only while streams are open, ends a stream idle for
longer than the timeout with DEADLINE_EXCEEDED and a message saying why. The check costs a
dict write per message; the watchdog wakes every quarter of the timeout (at most once a second).
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

log = logging.getLogger(__name__)


class IdleStreams:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s  # 0: streams are never ended for idling
        self.ended = 0  # streams ended for idling (tests, metrics)
        self._last: dict[grpc.aio.ServicerContext, tuple[float, str]] = {}
        self._watchdog: asyncio.Task | None = None

    def opened(self, context: grpc.aio.ServicerContext, method: str) -> None:
        if self.timeout_s <= 0:
            return
        self._last[context] = (time.monotonic(), method)
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    def touched(self, context: grpc.aio.ServicerContext, method: str) -> None:
        if context in self._last:
            self._last[context] = (time.monotonic(), method)

    def closed(self, context: grpc.aio.ServicerContext) -> None:
        self._last.pop(context, None)

    async def _watch(self) -> None:
        period = min(self.timeout_s / 4, 1.0)
        while self._last:
            await asyncio.sleep(period)
            deadline = time.monotonic() - self.timeout_s
            for context, (seen, method) in list(self._last.items()):
                if seen >= deadline or self._last.pop(context, None) is None:
                    continue
                self.ended += 1
                message = (
                    f"{method}: no message for {self.timeout_s:g} s (idle_timeout_s); the stream is ended "
                    "to free its slot: open a new one when there is something to send"
                )
                log.info("%s", message)
                try:
                    await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, message)
                except grpc.aio.AbortError:
                    pass  # abort ends the call for the client and raises here, in the watchdog
                except Exception:  # noqa: BLE001 - the call ended meanwhile; the others are checked still
                    log.debug("ending an idle %s", method, exc_info=True)
