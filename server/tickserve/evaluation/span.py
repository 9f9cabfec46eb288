"""Which ticks `tickserve evaluate` scores: never, silently, the ticks a model was trained on.

A model's ModelInfo.training_spans says which ticks trained it (up to
test_start_ns) and which were held out (from test_start_ns), and names a sample
of its training ticks. A tick file holding at least half of that sample holds
the model's training ticks (another file over the same hours does not: its
ticks have other timestamps). Given such a file:

- `--span test` (the default): if the file holds ticks of the model's
  instruments from before test_start_ns, only the ticks from test_start_ns on
  are scored; the ticks just before it are sent as warm-up
  (EvaluateConfig.score_from_ns), enough of them per instrument for the
  features' longest lookback and for the label horizon looking back (the
  last-move baseline), so the scores equal the training report's for the same
  span;
- `--span all`: every tick is scored, with a warning naming how many of them
  the model was trained on.

With several models (`--all-models`) the span starts at the latest of their
test starts, so every model is scored on ticks none of them trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.ticks import TickFrame
from ..features import MAX_LOOKBACK


@dataclass(frozen=True)
class EvaluationSpan:
    frame: TickFrame  # the ticks to send, warm-up first
    score_from_ns: int  # 0: score every tick
    message: str  # what was chosen, for the user ("" when there is nothing to say)


def choose_span(frame: TickFrame, infos: list, span: str = "test") -> EvaluationSpan:
    """`infos`: the ModelInfo of each model to be evaluated (spans unset: trained on other data)."""
    if span not in ("test", "all"):
        raise ValueError(f"--span: test or all, got {span!r}")
    trained = [i for i in infos if i.HasField("training_spans") and _holds_training_ticks(frame, i.training_spans)]
    if not trained or len(frame) == 0:
        return EvaluationSpan(frame, 0, "")
    start = max(i.training_spans.test_start_ns for i in trained)
    first = min(i.training_spans.train_start_ns for i in trained)
    instruments = set().union(*(set(i.training_spans.instruments) for i in trained))
    ours = np.isin(frame.instrument, list(instruments)) if instruments else np.ones(len(frame), dtype=bool)
    inside = ours & (frame.timestamp_ns >= first) & (frame.timestamp_ns < start)
    seen = int(inside.sum())
    if seen == 0:
        return EvaluationSpan(frame, 0, "")
    names = ", ".join(f"{i.name}/{i.version}" for i in trained)
    if span == "all":
        return EvaluationSpan(
            frame,
            0,
            (
                f"warning: {seen} of the {len(frame)} ticks are ticks {names} was trained on (before "
                f"{start} ns): their scores flatter the model; --span test scores only the held-out ticks"
            ),
        )
    keep = frame.timestamp_ns >= start
    warm = _warmup_rows(frame, start, trained)
    rows = np.flatnonzero(keep | warm)
    scored = int(keep.sum())
    if scored == 0:
        raise ValueError(
            f"--span test: no tick of the file is at or after the test span of {names} "
            f"({start} ns); use --span all to score the training ticks anyway"
        )
    return EvaluationSpan(
        frame.take(rows),
        start,
        (
            f"scoring the held-out test span of {names} only: {scored} ticks from {start} ns on (with "
            f"{int(warm.sum())} ticks before it as warm-up, not scored); {seen} ticks of the file were training ticks "
            "(--span all scores them too)"
        ),
    )


def _holds_training_ticks(frame: TickFrame, spans) -> bool:
    sample = set(zip(spans.sample_instruments, spans.sample_timestamps_ns))
    if not sample or spans.test_start_ns <= 0:
        return False
    wanted = np.isin(frame.timestamp_ns, [ts for _, ts in sample])
    found = set(zip(frame.instrument[wanted].tolist(), frame.timestamp_ns[wanted].tolist()))
    return len(found & sample) * 2 >= len(sample)


def _warmup_rows(frame: TickFrame, start: int, infos: list) -> np.ndarray:
    """Per instrument, the ticks before `start` that the features and the horizon look back on."""
    ticks_back = MAX_LOOKBACK
    time_back = 0
    for info in infos:
        lc = info.label_config
        ticks_back = max(ticks_back, lc.horizon_ticks)
        time_back = max(time_back, lc.horizon_ns)
    warm = np.zeros(len(frame), dtype=bool)
    before = frame.timestamp_ns < start
    for name in np.unique(frame.instrument[before]):
        rows = np.flatnonzero(before & (frame.instrument == name))
        warm[rows[-ticks_back:]] = True
        if time_back:
            warm[rows[frame.timestamp_ns[rows] >= start - time_back]] = True
            # the last tick at or before start - H is the past tick of the first scored ones
            earlier = rows[frame.timestamp_ns[rows] <= start - time_back]
            if len(earlier):
                warm[earlier[-1]] = True
    return warm
