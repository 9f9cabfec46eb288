"""How a served model runs: each model's Predictor decides, per call, between inline, a
micro-batch across streams (after Triton's dynamic batcher) and a worker thread.

The server wraps a model in a Predictor when it first serves it (`Predictors.of`), as MLServer
wraps `predict` when a model loads, and drops it when no stream uses it. Callers on the event
loop (a message of a few ticks, a small Predict) ask `Predictor.predict(x, stream)`:
- a lone active stream, or rows at least `max_rows`: the adapter now, inline when at most
  INLINE_MAX_ROWS rows (cheaper than a thread hand-off), else in a worker thread;
- otherwise the rows wait for other streams' rows of the same model and are predicted in one
  adapter call, each caller getting its own rows back in order. A batch is flushed when every
  *active* stream of the model (one that sent a request within the last ACTIVE_S) has a
  request pending, when it reaches `max_rows`, or when the window since its first request
  expires, whichever comes first. A lone active stream never waits, and an open but idle
  stream stops counting after ACTIVE_S. (asyncio timers fire on the event loop's clock, in
  practice about 1 ms late at the earliest: the window is an upper bound, not a precise delay.)
Large messages already run in a worker thread (the columnar route) and call
`LoadedModel.predict` there directly: a second hand-off would only add latency.

Exactness: every adapter here predicts a row the same whatever batch it is in (LightGBM,
XGBoost, one-thread ONNX; tested), so batching never changes a signal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from .repository import LoadedModel

log = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 300e-6
DEFAULT_MAX_ROWS = 256
# Calls of more rows than this run in a worker thread instead of on the event loop.
INLINE_MAX_ROWS = 32
# A stream counts as active for batching this long after its last request.
ACTIVE_S = 0.005


@dataclass
class BatchStats:
    """Counts for benchmarks and metrics: adapter calls and rows predicted through predictors."""

    calls: int = 0
    rows: int = 0
    largest: int = 0


@dataclass(frozen=True)
class BatchOptions:
    window_s: float = DEFAULT_WINDOW_S  # 0 disables micro-batching
    max_rows: int = DEFAULT_MAX_ROWS


class Predictor:
    """One served model's calls: its open streams, its pending rows, how each call runs."""

    def __init__(
        self,
        model: LoadedModel,
        executor: Executor,
        options: BatchOptions,
        stats: BatchStats,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.model = model
        self.executor = executor
        self.options = options
        self.stats = stats  # shared by every predictor of a server
        self.on_batch = on_batch  # (rows, seconds the first request waited), e.g. for metrics
        self.last_seen: dict[object, float] = {}  # open stream -> time of its last request
        self.pending: list[tuple[np.ndarray, asyncio.Future]] = []
        self.rows = 0
        self.timer: asyncio.TimerHandle | None = None
        self.first_at = 0.0  # when the oldest pending request arrived

    @property
    def unused(self) -> bool:
        return not self.last_seen and not self.pending

    def stream_opened(self) -> object:
        """Register a stream; pass the returned token to `predict` and `stream_closed`."""
        token = object()
        self.last_seen[token] = float("-inf")  # not active until it sends
        return token

    def stream_closed(self, token: object) -> None:
        self.last_seen.pop(token, None)
        if self.pending and len(self.pending) >= self._active():
            self._flush()

    def _active(self) -> int:
        since = time.monotonic() - ACTIVE_S
        return sum(1 for seen in self.last_seen.values() if seen >= since)

    async def predict(self, x: np.ndarray, stream: object = None) -> tuple[np.ndarray, np.ndarray]:
        """(raw, calibrated) probabilities for x, possibly computed together with other streams' rows."""
        if stream is not None:
            self.last_seen[stream] = time.monotonic()
        options = self.options
        if options.window_s <= 0 or len(x) >= options.max_rows or (not self.pending and self._active() <= 1):
            return await self._run(x)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        if not self.pending:
            self.first_at = time.monotonic()
        self.pending.append((x, future))
        self.rows += len(x)
        if len(self.pending) >= self._active() or self.rows >= options.max_rows:
            self._flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(options.window_s, self._flush)
        return await future

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending, self.rows = self.pending, [], 0
        if batch:
            asyncio.get_running_loop().create_task(self._predict_batch(batch))
            if self.on_batch is not None:
                try:
                    self.on_batch(sum(len(rows) for rows, _ in batch), time.monotonic() - self.first_at)
                except Exception:  # metrics must never hold up a batch
                    log.exception("micro-batch observer failed")

    async def _predict_batch(self, batch: list[tuple[np.ndarray, asyncio.Future]]) -> None:
        try:
            x = np.vstack([rows for rows, _ in batch]) if len(batch) > 1 else batch[0][0]
            raw, probs = await self._run(x)
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
                        result = await self._run(rows)
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

    async def _run(self, x: np.ndarray):
        stats = self.stats
        stats.calls += 1
        stats.rows += len(x)
        stats.largest = max(stats.largest, len(x))
        if len(x) <= INLINE_MAX_ROWS:
            return self.model.predict(x)
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.model.predict, x)


class Predictors:
    """The Predictor of every model being served: made when a model is first served, dropped
    when its last stream closes with nothing pending (a reloaded model is a new LoadedModel,
    hence a new Predictor: rows of two versions are never batched together)."""

    def __init__(
        self,
        executor: Executor,
        options: BatchOptions = BatchOptions(),
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.executor = executor
        self.options = options
        self.on_batch = on_batch
        self.stats = BatchStats()
        self.serving: dict[int, Predictor] = {}  # id(LoadedModel) -> its predictor

    def of(self, model: LoadedModel) -> Predictor:
        predictor = self.serving.get(id(model))
        if predictor is None or predictor.model is not model:
            predictor = self.serving[id(model)] = Predictor(
                model, self.executor, self.options, self.stats, self.on_batch
            )
        return predictor

    def stream_closed(self, predictor: Predictor, token: object) -> None:
        predictor.stream_closed(token)
        self.release(predictor)

    def release(self, predictor: Predictor) -> None:
        """Forget a predictor nobody uses: no state, and no old model version, left behind."""
        if predictor.unused and self.serving.get(id(predictor.model)) is predictor:
            del self.serving[id(predictor.model)]
