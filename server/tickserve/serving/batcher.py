"""Dynamic micro-batching across concurrent streams (after Triton's dynamic batcher).

Streams prepare their features themselves, then ask the batcher for
predictions. Requests for the same model that arrive while others are
pending are predicted in one adapter call and the rows routed back to their
callers, each in its own order. A batch is flushed when every open stream of
that model has a request pending, when it reaches `max_rows`, or when the
window (default 300 us) since its first request expires, whichever comes
first. A lone stream never waits: with one open stream (or none pending to
join) its request is predicted at once.

Exactness: every adapter here predicts a row the same whatever batch it is
in (LightGBM, XGBoost, one-thread ONNX; tested), so batching never changes a
signal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from ..repository import LoadedModel

DEFAULT_WINDOW_S = 300e-6
DEFAULT_MAX_ROWS = 256
# Batches of more rows than this run in a worker thread instead of on the event loop.
INLINE_MAX_ROWS = 32


@dataclass
class _Queue:
    model: LoadedModel
    open_streams: int = 0
    pending: list[tuple[np.ndarray, asyncio.Future]] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.TimerHandle | None = None


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
    ) -> None:
        self.executor = executor
        self.window_s = window_s
        self.max_rows = max_rows
        self.stats = BatchStats()
        self._queues: dict[int, _Queue] = {}

    def _queue(self, model: LoadedModel) -> _Queue:
        queue = self._queues.get(id(model))
        if queue is None or queue.model is not model:
            queue = self._queues[id(model)] = _Queue(model)
        return queue

    def stream_opened(self, model: LoadedModel) -> None:
        self._queue(model).open_streams += 1

    def stream_closed(self, model: LoadedModel) -> None:
        queue = self._queue(model)
        queue.open_streams -= 1
        if queue.open_streams <= 0 and not queue.pending:
            del self._queues[id(model)]  # no state left behind for a model nobody streams
        elif queue.pending and len(queue.pending) >= queue.open_streams:
            self._flush(queue)

    async def predict(self, model: LoadedModel, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(raw, calibrated) probabilities for x, possibly computed together with other streams' rows."""
        queue = self._queue(model)
        if self.window_s <= 0 or (queue.open_streams <= 1 and not queue.pending) or len(x) >= self.max_rows:
            return await self._run(model.predict, x)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        queue.pending.append((x, future))
        queue.rows += len(x)
        if len(queue.pending) >= queue.open_streams or queue.rows >= self.max_rows:
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

    async def _predict_batch(self, model: LoadedModel, batch: list[tuple[np.ndarray, asyncio.Future]]) -> None:
        x = np.vstack([rows for rows, _ in batch]) if len(batch) > 1 else batch[0][0]
        try:
            raw, probs = await self._run(model.predict, x)
        except Exception as exc:  # every caller in the batch gets the failure (mapped to INTERNAL)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
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
