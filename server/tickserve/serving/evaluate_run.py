"""One Evaluate call's work in worker threads: gathering ticks, `prepare` (validation, stream
checks, features) and `finish` (the model, the signal rules, the bookkeeping)."""

from __future__ import annotations

from tickserve_proto.v1 import tickserve_pb2 as pb

from ..core.columnar import PreparedColumns, TickBlock, finish_columns, prepare_columns, scored_ticks
from ..core.session import Scored, SignalSession
from ..core.ticks import Tick
from ..evaluation.evaluate import Evaluation
from . import tick_input
from .routes import call_error

DEFAULT_PROGRESS_EVERY = 10_000
# EvaluateConfig.progress_every above this is refused: almost surely a bug (e.g. -1 sent as uint64)
MAX_PROGRESS_EVERY = 1_000_000_000
# Evaluate runs the ticks of small messages together, up to this many at a time
EVALUATE_RUN_TICKS = 4_096


class EvaluationRun:
    """One Evaluate call: its session, its bookkeeping and the ticks gathered but not yet run.
    `prepare` and `finish` run in worker threads; the handler keeps `prepare` calls in order
    and `finish` calls in order (a `finish` may overlap the next `prepare`)."""

    def __init__(self, session: SignalSession, evaluation: Evaluation, every: int) -> None:
        self.session = session
        self.evaluation = evaluation
        self.every = every
        self.next_progress = every
        self.pending: list[pb.Tick] = []
        self.received = 0  # ticks prepared so far: the position of the next one in the stream

    def progress_due(self) -> bool:
        return self.received + len(self.pending) >= self.next_progress

    def progress(self) -> pb.EvaluateProgress | None:
        """A progress message when progress_every more ticks have been counted (as of the last
        finished run), else None."""
        evaluation = self.evaluation
        if evaluation.ticks < self.next_progress:
            return None
        self.next_progress = (evaluation.ticks // self.every + 1) * self.every
        return pb.EvaluateProgress(
            ticks=evaluation.ticks, labeled=evaluation.labeled, accuracy=evaluation.metrics.accuracy
        )

    def prepare(self, columns: pb.TickColumns | None) -> list[PreparedColumns | tuple[Tick, Scored]]:
        """The ticks of `columns`, or those gathered, up to the model's call; the first bad tick
        fails the call, naming its position in the stream."""
        if columns is not None:
            block = tick_input.block_from_proto(columns)
            parts: list[tuple[int, TickBlock | Tick]] = [(0, block)]
            count = len(block)
        else:
            ticks, self.pending = self.pending, []
            parts = tick_input.blocks_from_ticks(ticks)
            count = len(ticks)
        steps: list[PreparedColumns | tuple[Tick, Scored]] = []
        for first, part in parts:
            if isinstance(part, TickBlock):
                step = prepare_columns(self.session, part)
                if step.rejections:
                    row = min(step.rejections)
                    raise call_error(step.rejections[row], f"ticks[{self.received + first + row}]")
                steps.append(step)
                continue
            result = self.session.process([part])[0]  # a tick no block holds: the per-tick path
            if not isinstance(result, Scored):
                raise call_error(result, f"ticks[{self.received + first}]")
            steps.append((part, result))
        self.received += count
        return steps

    def finish(self, steps: list[PreparedColumns | tuple[Tick, Scored]]) -> None:
        for step in steps:
            if isinstance(step, tuple):
                tick, scored = step
                self.evaluation.add_tick(tick, scored.signal, scored.raw)
            elif step.x is not None:
                raw, probs = self.session.model.predict(step.x)
                self.evaluation.add(scored_ticks(step.block, finish_columns(self.session, step, raw, probs)))
