"""SignalService's Evaluate: ticks in, one report out, through the same columnar route as every
other message. A mixin of SignalServicer (its sessions, worker threads, limits and stream
bookkeeping); kept apart because it is the one RPC with bookkeeping of its own (runs, progress,
the report)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from tickserve_proto.v1 import tickserve_pb2 as pb

from ..core.session import SignalSession
from ..errors import InvalidArgument
from ..evaluation.evaluate import Evaluation
from . import converters
from .evaluate_run import DEFAULT_PROGRESS_EVERY, EVALUATE_RUN_TICKS, MAX_PROGRESS_EVERY, EvaluationRun
from .status import stream_errors


class EvaluateRpc:
    @stream_errors
    async def Evaluate(
        self, request_iterator: AsyncIterator[pb.EvaluateRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.EvaluateResponse]:
        self._stream_opened("Evaluate")
        self.idle.opened(context, "Evaluate")
        self.open_streams.opened(context, "Evaluate")
        sessions: list[SignalSession] = []
        try:
            async for response in self._evaluate_stream(request_iterator, sessions, context):
                yield response
        finally:
            self.idle.closed(context)
            self.open_streams.closed(context)
            for session in sessions:
                session.close()
            self._stream_closed("Evaluate")

    async def _evaluate_stream(
        self, request_iterator: AsyncIterator[pb.EvaluateRequest], sessions: list[SignalSession], context
    ) -> AsyncIterator[pb.EvaluateResponse]:
        """Nothing is answered per tick, so the ticks of small messages are gathered and run
        together (up to EVALUATE_RUN_TICKS, and whenever a progress message is due) through the
        columnar path, in two stages: `prepare` (validation, stream checks, features: the
        session's state, so one run after the other) and `finish` (the model, the signal rules,
        the bookkeeping). A run's `finish` goes on in a worker thread while the next run is read
        and prepared: the model's call releases the GIL, so the two overlap on two cores."""
        run: EvaluationRun | None = None
        finishing: asyncio.Future | None = None

        async def start(prepared: list) -> pb.EvaluateProgress | None:
            nonlocal finishing
            if finishing is not None:
                await finishing  # runs are counted in stream order
            finishing = asyncio.ensure_future(self._off_loop(run.finish, prepared))
            return run.progress()

        try:
            async for request in request_iterator:
                self.idle.touched(context, "Evaluate")
                kind = request.WhichOneof("payload")
                if kind == "config":
                    if run is not None:
                        raise InvalidArgument(
                            "config: only the first message of an evaluation may carry an EvaluateConfig"
                        )
                    run = self._evaluation_run(request.config, sessions)
                    continue
                if kind is None:
                    raise InvalidArgument("payload: the message carries none of config, tick, batch or columns")
                if run is None:
                    run = self._evaluation_run(pb.EvaluateConfig(), sessions)
                if kind == "columns":
                    self._columns_size(request.columns)
                    progress = await start(await self._off_loop(run.prepare, request.columns))
                else:
                    run.pending.extend(self._ticks_of(request, kind))
                    if len(run.pending) < EVALUATE_RUN_TICKS and not run.progress_due():
                        continue
                    progress = await start(await self._off_loop(run.prepare, None))
                if progress is not None:
                    yield pb.EvaluateResponse(progress=progress)
            if run is None:
                raise InvalidArgument("Evaluate: the stream ended before any tick was sent")
            if run.pending:
                await start(await self._off_loop(run.prepare, None))
            if finishing is not None:
                await finishing
                progress = run.progress()
                if progress is not None:
                    yield pb.EvaluateResponse(progress=progress)
        finally:
            if finishing is not None and not finishing.done():
                finishing.cancel()  # the call failed: nobody waits for the run in flight
        evaluation = run.evaluation
        if evaluation.ticks + evaluation.warmup_ticks == 0:
            raise InvalidArgument("Evaluate: the stream ended before any tick was sent")
        if evaluation.ticks == 0:
            raise InvalidArgument(
                f"config.score_from_ns: all {evaluation.warmup_ticks} ticks sent were before it "
                f"({evaluation.score_from_ns}): nothing to score",
                field="config.score_from_ns",
            )
        if evaluation.labeled == 0:  # a report of zeros would read as a model that is never right
            labels = evaluation.model.manifest.label_config
            raise InvalidArgument(
                f"Evaluate: none of the {evaluation.ticks} ticks scored could be labeled: a tick's label is "
                f"the move to the tick its horizon later ({labels.describe()}), so send more ticks per "
                "instrument than the horizon",
            )
        report = converters.report_to_proto(evaluation.report())
        self.recorder.evaluated(evaluation.model, evaluation.ticks)
        yield pb.EvaluateResponse(report=report)

    def _evaluation_run(self, config: pb.EvaluateConfig, sessions: list[SignalSession]) -> EvaluationRun:
        every = config.progress_every
        if every > MAX_PROGRESS_EVERY:
            raise InvalidArgument(
                f"config.progress_every: must be 0 (every {DEFAULT_PROGRESS_EVERY} ticks) or 1 to "
                f"{MAX_PROGRESS_EVERY}, got {every}",
                field="config.progress_every",
            )
        session = self._open_session(config.model, config.version, False)
        sessions.append(session)
        evaluation = Evaluation(
            session.model, cost_ticks=config.cost_ticks, fee_bps=config.fee_bps, score_from_ns=config.score_from_ns
        )
        return EvaluationRun(session, evaluation, every or DEFAULT_PROGRESS_EVERY)
