"""Dynamic micro-batching across concurrent streams (after Triton's dynamic batcher).

Streams prepare their features themselves, then ask the batcher for
predictions. Requests for the same model that arrive while others are
pending are predicted in one adapter call and the rows routed back to their
callers, each in its own order. A batch is flushed when every *active*
stream of that model (one that sent a request within the last ACTIVE_S) has
a request pending, when it reaches `max_rows`, or when the window since its
first request expires, whichever comes first. A lone active stream never
waits, and an open but idle stream stops counting after ACTIVE_S. (asyncio
timers fire on the event loop's clock, in practice about 1 ms late at the
earliest: the window is an upper bound, not a precise delay.)

Exactness: every adapter here predicts a row the same whatever batch it is
in (LightGBM, XGBoost, one-thread ONNX; tested), so batching never changes a
signal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from ..models.repository import LoadedModel

log = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 300e-6
DEFAULT_MAX_ROWS = 256
# Batches of more rows than this run in a worker thread instead of on the event loop.
INLINE_MAX_ROWS = 32
# A stream counts as active for batching this long after its last request.
ACTIVE_S = 0.005


@dataclass
class _Queue:
    model: LoadedModel
    last_seen: dict[object, float] = field(default_factory=dict)  # open stream -> time of its last request
    pending: list[tuple[np.ndarray, asyncio.Future]] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.TimerHandle | None = None
    first_at: float = 0.0  # when the oldest pending request arrived


@dataclass
class BatchStats:
    """Counts for benchmarks and metrics: adapter calls and rows predicted through the batcher."""

    calls: int = 0
    rows: int = 0
    largest: int = 0


class MicroBatcher:
    def __init__(
        self,
        executor: Executor,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        max_rows: int = DEFAULT_MAX_ROWS,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.executor = executor
        self.on_batch = on_batch  # (rows, seconds the first request waited), e.g. for metrics
        self.window_s = window_s
        self.max_rows = max_rows
        self.stats = BatchStats()
        self._queues: dict[int, _Queue] = {}

    def _queue(self, model: LoadedModel) -> _Queue:
        queue = self._queues.get(id(model))
        if queue is None or queue.model is not model:
            queue = self._queues[id(model)] = _Queue(model)
        return queue

    def stream_opened(self, model: LoadedModel) -> object:
        """Register a stream; pass the returned token to `predict` and `stream_closed`."""
        token = object()
        self._queue(model).last_seen[token] = float("-inf")  # not active until it sends
        return token

    def stream_closed(self, model: LoadedModel, token: object) -> None:
        queue = self._queue(model)
        queue.last_seen.pop(token, None)
        if not queue.last_seen and not queue.pending:
            del self._queues[id(model)]  # no state left behind for a model nobody streams
        elif queue.pending and len(queue.pending) >= self._active(queue):
            self._flush(queue)

    def _active(self, queue: _Queue) -> int:
        since = time.monotonic() - ACTIVE_S
        return sum(1 for seen in queue.last_seen.values() if seen >= since)

    async def predict(self, model: LoadedModel, x: np.ndarray, stream: object = None) -> tuple[np.ndarray, np.ndarray]:
        """(raw, calibrated) probabilities for x, possibly computed together with other streams' rows."""
        queue = self._queue(model)
        if stream is not None:
            queue.last_seen[stream] = time.monotonic()
        if self.window_s <= 0 or len(x) >= self.max_rows or (not queue.pending and self._active(queue) <= 1):
            return await self._run(model.predict, x)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        if not queue.pending:
            queue.first_at = time.monotonic()
        queue.pending.append((x, future))
        queue.rows += len(x)
        if len(queue.pending) >= self._active(queue) or queue.rows >= self.max_rows:
            self._flush(queue)
        elif queue.timer is None:
            queue.timer = asyncio.get_running_loop().call_later(self.window_s, self._flush, queue)
        return await future

    def _flush(self, queue: _Queue) -> None:
        if queue.timer is not None:
            queue.timer.cancel()
            queue.timer = None
        batch, queue.pending, queue.rows = queue.pending, [], 0
        if batch:
            asyncio.get_running_loop().create_task(self._predict_batch(queue.model, batch))
            if self.on_batch is not None:
                try:
                    self.on_batch(sum(len(rows) for rows, _ in batch), time.monotonic() - queue.first_at)
                except Exception:  # metrics must never hold up a batch
                    log.exception("micro-batch observer failed")

    async def _predict_batch(self, model: LoadedModel, batch: list[tuple[np.ndarray, asyncio.Future]]) -> None:
        try:
            x = np.vstack([rows for rows, _ in batch]) if len(batch) > 1 else batch[0][0]
            raw, probs = await self._run(model.predict, x)
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            # One stream's rows must not fail the streams it was batched with: predict each
            # caller's rows on their own (a row's answer does not depend on its batch), so only
            # the caller whose rows fail gets the error.
            try:
                for rows, future in batch:
                    try:
                        result = await self._run(model.predict, rows)
                    except Exception as own:  # noqa: BLE001 - reaches that caller as INTERNAL
                        if not future.done():
                            future.set_exception(own)
                        continue
                    if not future.done():
                        future.set_result(result)
            except BaseException as stop:  # cancelled in the middle: no caller may wait forever
                for _, future in batch:
                    if not future.done():
                        future.set_exception(RuntimeError(f"batched prediction interrupted: {type(stop).__name__}"))
                raise
            return
        except BaseException as exc:  # cancelled: no caller may wait forever
            for _, future in batch:
                if not future.done():
                    future.set_exception(RuntimeError(f"batched prediction interrupted: {type(exc).__name__}"))
            raise
        start = 0
        for rows, future in batch:
            end = start + len(rows)
            if not future.done():  # a caller whose stream was cancelled is simply skipped
                future.set_result((raw[start:end], probs[start:end]))
            start = end

    async def _run(self, fn: Callable, x: np.ndarray):
        self.stats.calls += 1
        self.stats.rows += len(x)
        self.stats.largest = max(self.stats.largest, len(x))
        if len(x) <= INLINE_MAX_ROWS:
            return fn(x)
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, x)
