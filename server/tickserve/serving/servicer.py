"""SignalService: thin async handlers. Convert at the edge, run the engine off the event loop.

Two routes, one set of rules (validation, stream checks, features, model, signal rules),
giving the same bits:
- a message of at most INLINE_MAX_TICKS ticks is processed on the loop, tick by tick in plain
  floats (`SignalSession.prepare/finish`), its model call through the model's Predictor
  (`models/predictor.py`: inline, or batched with other streams' rows): the work costs less
  than a thread hand-off;
- a larger message, whatever its encoding (TickBatch, TickColumns, Predict's ticks, Evaluate's
  gathered ticks), is converted to TickBlocks (`tick_input.blocks_from_ticks` /
  `block_from_proto`) and runs through the columnar path (`columnar.prepare_columns`, the
  model, `finish_columns`) in a worker thread, so a large batch or a slow model never stalls
  the loop that serves every other stream.
Within a stream, messages are processed one at a time, in order, so answers come back in the
order ticks were sent.

Back-pressure: a stream handler reads one message, answers it and yields the
answer before it reads the next, so it holds at most one message and one
answer at a time. When a client stops reading, gRPC's flow control stops the
yield, the handler stops reading, and the client's sends block: nothing is
buffered without bound on the server (tests/test_limits.py). The error model
and every limit are in docs/errors.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TypeVar

import grpc

from tickserve_proto.v1 import tickserve_pb2 as pb
from tickserve_proto.v1 import tickserve_pb2_grpc as pb_grpc

from ..core.columnar import ColumnResults, TickBlock
from ..core.session import InstrumentBudget, Rejection, SessionLimits, SignalSession
from ..errors import InvalidArgument, ResourceExhausted, TickserveError, Unavailable
from ..models.predictor import BatchOptions, Predictor, Predictors
from ..models.repository import LoadedModel, ModelRepository
from . import converters, routes, tick_input
from .evaluate_rpc import EvaluateRpc
from .idle import IdleStreams
from .limits import ServerLimits, StreamStats, parallel_messages
from .open_streams import OpenStreams
from .recorder import LogRows, Recorder
from .status import stream_errors, unary_errors

log = logging.getLogger(__name__)
T = TypeVar("T")

INLINE_MAX_TICKS = 4


class SignalServicer(EvaluateRpc, pb_grpc.SignalServiceServicer):
    def __init__(
        self,
        repository: ModelRepository,
        executor: Executor,
        limits: ServerLimits = ServerLimits(),
        recorder: Recorder | None = None,
    ):
        self.repository = repository
        self.executor = executor
        self.limits = limits
        self.recorder = recorder or Recorder()  # metrics and the signal log; a no-op when neither is on
        log_ = self.recorder.signal_log
        self._durable_log = log_ if log_ is not None and log_.durable else None  # answers wait for its commits
        self.instruments = InstrumentBudget(limits.max_instruments_total)  # feature state held, server-wide
        self._session_limits = SessionLimits(max_instruments=limits.max_instruments_per_stream, budget=self.instruments)
        self.predictors = Predictors(  # each served model's Predictor: inline, micro-batched or threaded
            executor,
            BatchOptions(window_s=limits.batch_window_s, max_rows=limits.max_batch_rows),
            on_batch=self.recorder.micro_batch if self.recorder.telemetry is not None else None,
        )
        self.stream_stats = StreamStats()
        self.draining = False  # set by TickServer.drain: health says NOT_SERVING, calls still served
        self.idle = IdleStreams(limits.idle_timeout_s)
        self.open_streams = OpenStreams()
        self._parallel = asyncio.Semaphore(
            parallel_messages(limits)
        )  # ended with UNAVAILABLE when a shutdown's grace runs out

    def _stream_opened(self, method: str) -> None:
        """Take a slot of max_concurrent_streams or end the call with RESOURCE_EXHAUSTED."""
        stats = self.stream_stats
        if stats.open >= self.limits.max_concurrent_streams:
            stats.refused += 1
            raise ResourceExhausted(
                f"{method}: {stats.open} streams are open, the server's limit is "
                f"max_concurrent_streams={self.limits.max_concurrent_streams}; retry when one has closed"
            )
        stats.open += 1
        self.recorder.stream_opened(method)

    def _stream_closed(self, method: str) -> None:
        self.stream_stats.open -= 1
        self.recorder.stream_closed(method)

    async def _off_loop(self, fn: Callable[..., T], *args) -> T:
        """fn(*args) in a worker thread, once one of max_parallel_messages slots is free."""
        async with self._parallel:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _ticks_of(self, request, kind: str) -> Sequence[pb.Tick]:
        if kind == "tick":
            return (request.tick,)
        ticks = request.warmup.ticks if kind == "warmup" else request.batch.ticks
        if len(ticks) > self.limits.max_ticks_per_message:
            raise ResourceExhausted(
                f"{kind}.ticks: {len(ticks)} ticks in one message, "
                f"the limit is max_ticks_per_message={self.limits.max_ticks_per_message}",
                field=f"{kind}.ticks",
            )
        return ticks

    def _columns_size(self, columns: pb.TickColumns) -> int:
        n = len(columns.instrument_index)
        if n > self.limits.max_ticks_per_message:
            raise ResourceExhausted(
                f"columns: {n} ticks in one message, "
                f"the limit is max_ticks_per_message={self.limits.max_ticks_per_message}",
                field="columns",
            )
        return n

    # --- StreamSignals -------------------------------------------------------------

    @stream_errors
    async def StreamSignals(
        self, request_iterator: AsyncIterator[pb.StreamSignalsRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamSignalsResponse]:
        """TickColumns messages are pipelined one deep: while message k's model call, signal rules
        and answer are built (`_finish_columns`, in a worker thread), message k+1 is read and,
        when it has arrived, prepared (`_prepare_columns`: validation, stream checks, features).
        The model's call releases the GIL, so on two cores the two overlap. Answers still go out
        in order, each as soon as it is built (a client that waits for every answer is never
        kept waiting for its next message), and at most two messages are held."""
        session: SignalSession | None = None
        predictor = token = None
        self._stream_opened("StreamSignals")
        stats = self.stream_stats
        idle = self.idle
        idle.opened(context, "StreamSignals")
        answered = self.open_streams.opened(context, "StreamSignals")
        requests = request_iterator.__aiter__()

        async def read() -> _Arrived:
            try:
                request = await requests.__anext__()
            except StopAsyncIteration:
                return _Arrived(None, 0)
            idle.touched(context, "StreamSignals")
            return _Arrived(request, time.perf_counter_ns())

        ahead: asyncio.Task | _Arrived | None = None  # the next request, read (or being read) ahead
        try:
            while True:
                arrived = ahead if isinstance(ahead, _Arrived) else await (ahead or read())
                ahead = None
                request, started = arrived.request, arrived.started
                if request is None:
                    break
                kind = request.WhichOneof("payload")
                if kind == "config":
                    if session is not None:
                        raise InvalidArgument("config: only the first message of a stream may carry a StreamConfig")
                    config = request.config
                    session = self._open_session(config.model, config.version, config.return_features)
                    predictor = self.predictors.of(session.model)
                    token = predictor.stream_opened()
                    answered.messages += 1
                    continue
                if kind is None:
                    raise InvalidArgument("payload: the message carries none of config, tick, batch, columns or warmup")
                if session is None:
                    session = self._open_session("", "", False)
                    predictor = self.predictors.of(session.model)
                    token = predictor.stream_opened()
                if kind == "columns":  # the columnar path: arrays in, arrays out, in worker threads
                    n = self._columns_size(request.columns)
                    prepared = await (
                        arrived.preparing or self._off_loop(routes.prepare_columns_message, session, request.columns)
                    )
                    finishing = asyncio.ensure_future(
                        self._off_loop(routes.finish_columns_message, session, prepared, self.recorder, started)
                    )
                    ahead = asyncio.ensure_future(read())
                    done, _ = await asyncio.wait({finishing, ahead}, return_when=asyncio.FIRST_COMPLETED)
                    if ahead in done:
                        ahead = self._prepare_ahead(ahead.result(), session)
                    response, rows = await finishing
                    rows = await self._log_before_send(rows)
                    stats.messages += 1
                    stats.ticks += n
                    yield response
                    self.recorder.log(rows)
                    answered.messages += 1
                    answered.ticks += n
                    continue
                ticks = self._ticks_of(request, kind)
                if kind == "warmup":  # state only: no model call, nothing to log
                    response, rows = await self._off_loop(routes.warm_up, session, ticks), ()
                else:
                    response, rows = await self._answer(session, ticks, predictor, token, started)
                    rows = await self._log_before_send(rows)
                stats.messages += 1
                stats.ticks += len(ticks)
                yield response  # waits for flow control: no next message is read before this is sent
                self.recorder.log(rows)  # gRPC took the answer: not when the stream ended before
                answered.messages += 1
                answered.ticks += len(ticks)
        finally:
            if isinstance(ahead, asyncio.Task):
                ahead.cancel()
            elif isinstance(ahead, _Arrived) and ahead.preparing is not None:
                await asyncio.wait({ahead.preparing})  # it uses the session: let it end before closing
            idle.closed(context)
            self.open_streams.closed(context)
            self._stream_closed("StreamSignals")
            if session is not None:
                session.close()
                self.predictors.stream_closed(predictor, token)

    def _prepare_ahead(self, arrived: _Arrived, session: SignalSession) -> _Arrived:
        """Start preparing a TickColumns message read ahead (others wait for their turn)."""
        request = arrived.request
        if request is not None and request.WhichOneof("payload") == "columns":
            if len(request.columns.instrument_index) <= self.limits.max_ticks_per_message:
                arrived.preparing = asyncio.ensure_future(
                    self._off_loop(routes.prepare_columns_message, session, request.columns)
                )
        return arrived

    async def _answer(
        self, session: SignalSession, ticks: Sequence[pb.Tick], predictor: Predictor, token: object, started: int
    ) -> tuple[pb.StreamSignalsResponse, LogRows]:
        if len(ticks) > INLINE_MAX_TICKS:  # a big message: all of its work in a worker thread
            return await self._off_loop(routes.answer, session, ticks, self.recorder, started)
        own = [tick_input.tick_from_proto(t) for t in ticks]
        prepared = session.prepare(own)
        results = prepared.results
        if prepared.x is not None:
            raw, probs = await predictor.predict(prepared.x, token)
            results = session.finish(prepared, raw, probs)
        return routes.respond(session, own, results, self.recorder, started)

    async def _log_before_send(self, rows: LogRows) -> LogRows:
        """The signal log records what was sent. With a durable log an answer's rows are committed
        before it is sent (so a crash loses no answered signal; an answer then lost in transit,
        e.g. a stream cancelled at that moment, stays logged); otherwise they are returned, to be
        logged once gRPC has taken the answer."""
        if self._durable_log is None:
            return rows
        self.recorder.log(rows)
        await self._logged()
        return ()

    async def _logged(self) -> None:
        """With a durable signal log, wait until the answer's rows are committed before it is sent,
        so every answered signal survives a crash of the process."""
        if not await asyncio.wrap_future(self._durable_log.committed()):
            raise Unavailable("signal log: the signals of this answer could not be written (durable signal log)")

    def _open_session(self, model: str, version: str, return_features: bool) -> SignalSession:
        """A session of the named model with this server's limits (the instrument budget is server-wide)."""
        loaded = self.repository.get(model, version)
        return SignalSession(loaded, return_features=return_features, limits=self._session_limits)

    # --- Predict -------------------------------------------------------------------

    @unary_errors
    async def Predict(self, request: pb.PredictRequest, context: grpc.aio.ServicerContext) -> pb.PredictResponse:
        return await self.predict(request)

    async def predict(self, request: pb.PredictRequest, rpc: str = "Predict") -> pb.PredictResponse:
        """Predict without the gRPC wrapper: the HTTP gateway calls this too (errors are raised)."""
        started = time.perf_counter_ns()
        if len(request.ticks) > self.limits.max_ticks_per_message:
            raise ResourceExhausted(
                f"ticks: {len(request.ticks)} ticks in one request, "
                f"the limit is max_ticks_per_message={self.limits.max_ticks_per_message}",
                field="ticks",
            )
        session = self._open_session(request.model, request.version, request.return_features)
        try:
            if len(request.ticks) > INLINE_MAX_TICKS:
                response, rows = await self._off_loop(
                    routes.predict, session, request.ticks, self.recorder, rpc, started
                )
                self.recorder.log(await self._log_before_send(rows))  # a unary answer: logged as returned
                return response
            # a few ticks: on the loop, the model call through the model's Predictor, so
            # concurrent Predict calls and streams of the same model share adapter calls
            own = [tick_input.tick_from_proto(t) for t in request.ticks]
            prepared = session.prepare(own)
            results = prepared.results
            if prepared.x is not None:
                predictor = self.predictors.of(session.model)
                try:
                    raw, probs = await predictor.predict(prepared.x)
                finally:
                    self.predictors.release(predictor)
                results = session.finish(prepared, raw, probs)
            response, rows = routes.predict_response(session, own, results, self.recorder, rpc, started)
            self.recorder.log(await self._log_before_send(rows))
            return response
        finally:
            session.close()

    async def predict_block(
        self,
        model: str,
        version: str,
        block: TickBlock,
        rpc: str,
        rejected: Callable[[int, Rejection], TickserveError],
    ) -> tuple[LoadedModel, ColumnResults]:
        """Predict for ticks that arrived as arrays (the V2 tick models, serving/kserve_ticks.py):
        a self-contained batch on a fresh session through the columnar path, logged and counted
        as Predict is. The caller checked the size against max_ticks_per_message."""
        started = time.perf_counter_ns()
        session = self._open_session(model, version, False)
        try:
            args = (session, block, self.recorder, rpc, started, rejected)
            if len(block) <= INLINE_MAX_TICKS:  # a few ticks: on the loop, cheaper than the hand-off
                results, rows = routes.predict_block(*args)
            else:
                results, rows = await self._off_loop(routes.predict_block, *args)
            self.recorder.log(await self._log_before_send(rows))
            return session.model, results
        finally:
            session.close()

    # --- Models --------------------------------------------------------------------

    @unary_errors
    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return await self.list_models(request)

    async def list_models(self, request: pb.ListModelsRequest) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(
            models=[converters.model_info(e) for e in self.repository.entries()],
            default_model=self.repository.default_model,
        )

    @unary_errors
    async def GetModel(self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        return await self.get_model(request)

    async def get_model(self, request: pb.GetModelRequest) -> pb.ModelInfo:
        return converters.model_info(self.repository.entry(request.model, request.version))


# --- worker-thread functions (no asyncio in here) ----------------------------------------


@dataclass
class _Arrived:
    """A StreamSignals request as read (None: the stream ended), when it arrived, and its
    columns being prepared when it was read ahead."""

    request: pb.StreamSignalsRequest | None
    started: int
    preparing: asyncio.Future | None = None
