"""The worker-thread side of SignalService: the route of each kind of message, from protobuf
in to protobuf out (no asyncio in here). `servicer.py` decides when each runs. Each route
returns its answer and the answer's signal-log rows, which the servicer logs once it is sent."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tickserve_proto.v1 import tickserve_pb2 as pb

from ..core.columnar import (
    ColumnResults,
    PreparedColumns,
    TickBlock,
    finish_columns,
    prepare_columns,
    process_columns,
)
from ..core.session import Rejection, Scored, SignalSession
from ..errors import TickserveError
from . import converters, tick_input
from .recorder import LogRows, Recorder


def call_error(rejection: Rejection, where: str) -> TickserveError:
    """A per-tick rejection as the error of a whole call, with its status, naming the tick."""
    error = TickserveError(f"{where}.{rejection.message}", field=f"{where}.{rejection.field}")
    error.status = rejection.status
    return error


def run_ticks(session: SignalSession, ticks: Sequence[pb.Tick]) -> tuple[list[pb.TickResult], dict, list]:
    """The route of a message of many ticks: the columnar path, in runs of ticks a block holds (a
    tick no block holds goes through the per-tick path). (One TickResult per tick, as the
    per-tick path answers; the rejections by position; the parts for the Recorder.)"""
    name, version = session.model.name, session.model.version
    answers: list[pb.TickResult] = []
    rejections: dict[int, Rejection] = {}
    parts = []
    for first, part in tick_input.blocks_from_ticks(ticks):
        if isinstance(part, TickBlock):
            results = process_columns(session, part)
            answers += converters.tick_results_to_proto(results, part, name, version)
            rejections.update({first + i: r for i, r in results.rejections.items()})
            parts.append((part, results))
        else:
            result = session.process([part])
            answers.append(converters.result_to_proto(result[0], part, name, version))
            if isinstance(result[0], Rejection):
                rejections[first] = result[0]
            parts.append(([part], result))
    return answers, rejections, parts


def answer(
    session: SignalSession, ticks: Sequence[pb.Tick], recorder: Recorder, started: int
) -> tuple[pb.StreamSignalsResponse, LogRows]:
    answers, _, parts = run_ticks(session, ticks)
    response = pb.StreamSignalsResponse(results=answers)
    return response, recorder.parts("StreamSignals", session.model, parts, started)


def respond(
    session: SignalSession, ticks: list, results: list, recorder: Recorder, started: int
) -> tuple[pb.StreamSignalsResponse, LogRows]:
    name, version = session.model.name, session.model.version
    response = pb.StreamSignalsResponse(
        results=[converters.result_to_proto(r, t, name, version) for r, t in zip(results, ticks)]
    )
    return response, recorder.message("StreamSignals", session.model, ticks, results, started)


def warm_up(session: SignalSession, ticks: Sequence[pb.Tick]) -> pb.StreamSignalsResponse:
    """A warmup message: its ticks into the feature state, no model call, no signal logged."""
    own = [tick_input.tick_from_proto(t) for t in ticks]
    return pb.StreamSignalsResponse(warmup=converters.warmup_to_proto(session.warm_up(own), own))


def prepare_columns_message(session: SignalSession, columns: pb.TickColumns) -> PreparedColumns:
    return prepare_columns(session, tick_input.block_from_proto(columns))


def finish_columns_message(
    session: SignalSession, prepared: PreparedColumns, recorder: Recorder, started: int
) -> tuple[pb.StreamSignalsResponse, LogRows]:
    if prepared.x is None:
        results = finish_columns(session, prepared, np.empty((0, 3)), np.empty((0, 3)))
    else:
        raw, probs = session.model.predict(prepared.x)
        results = finish_columns(session, prepared, raw, probs)
    name, version = session.model.name, session.model.version
    block = prepared.block
    response = pb.StreamSignalsResponse(columns=converters.columns_to_proto(results, block, name, version))
    return response, recorder.columns("StreamSignals", session.model, block, results, started)


def predict(
    session: SignalSession, ticks: Sequence[pb.Tick], recorder: Recorder, rpc: str, started: int
) -> tuple[pb.PredictResponse, LogRows]:
    answers, rejections, parts = run_ticks(session, ticks)
    if rejections:  # the first rejected tick fails the whole call, naming it
        first = min(rejections)
        raise call_error(rejections[first], f"ticks[{first}]")
    response = pb.PredictResponse(signals=[a.signal for a in answers])
    return response, recorder.parts(rpc, session.model, parts, started)


def predict_response(
    session: SignalSession, own: list, results: list, recorder: Recorder, rpc: str, started: int
) -> tuple[pb.PredictResponse, LogRows]:
    """The signals of a Predict call; the first rejected tick fails the whole call, naming it."""
    for i, r in enumerate(results):
        if not isinstance(r, Scored):  # e.g. time going backwards within the batch
            raise call_error(r, f"ticks[{i}]")
    name, version = session.model.name, session.model.version
    response = pb.PredictResponse(signals=[converters.signal_to_proto(r, name, version) for r in results])
    return response, recorder.message(rpc, session.model, own, results, started)


def predict_block(
    session: SignalSession,
    block: TickBlock,
    recorder: Recorder,
    rpc: str,
    started: int,
    rejected: Callable[[int, Rejection], TickserveError],
) -> tuple[ColumnResults, LogRows]:
    """Predict's semantics for a block of ticks that arrived as arrays (the V2 tick models): the
    columnar path on a fresh session; the first rejected tick fails the whole call, named by
    `rejected` in the caller's own terms (row and input name)."""
    results = process_columns(session, block)
    if results.rejections:
        first = min(results.rejections)
        raise rejected(first, results.rejections[first])
    return results, recorder.columns(rpc, session.model, block, results, started)
