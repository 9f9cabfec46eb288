"""The transport-free serving core: ticks in, signals (or per-tick rejections) out.

A `SignalSession` holds one stream's state: the model it serves and the
per-instrument feature state. The gRPC servicer, and any other front end,
only converts messages at the edge and calls `process`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..errors import Status, TickserveError
from ..features import FEATURE_INDEX, MAX_LOOKBACK, StreamingFeatures
from ..models.repository import LoadedModel
from .signals import SignalValues, decide
from .ticks import Tick
from .validation import validate_tick

_SPREAD_TICKS = FEATURE_INDEX["spread_ticks"]
# From this many admitted ticks in one message on, features are computed vectorised
# (StreamingFeatures.update_many: same values, about 3x cheaper per tick).
VECTORISED_MIN_TICKS = 32


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one tick got no signal; the stream goes on."""

    status: Status
    message: str
    field: str


@dataclass(slots=True)
class Scored:
    tick: Tick
    signal: SignalValues
    warmed_up: bool
    features: list[float] | None  # the model's input vector, when asked for
    raw: tuple[float, float, float]  # the adapter's probabilities before calibration
    sequence_gap: int = 0  # sequence numbers skipped before this tick (same instrument, this stream)


Result = Scored | Rejection


@dataclass(slots=True)
class Prepared:
    """A message's ticks after validation and the feature update, before prediction."""

    ticks: list[Tick]
    results: list  # Rejection, or None where a signal will go
    rows: list[list[float]] | np.ndarray  # full feature vectors of the admitted ticks
    scored_at: list[int]  # their positions in `ticks`
    warmed: list[bool]  # per admitted tick, as of that tick (not the end of the message)
    x: np.ndarray | None  # the model's input rows, None when no tick was admitted
    gaps: dict[int, int] | None = None  # position in `ticks` -> sequence gap, only where there is one


class InstrumentBudget:
    """The instruments whose feature state every open session holds, server-wide (each about
    5 KB), against a limit: a session takes one when it first admits an instrument and gives
    all of its back when it closes. Sessions run on the event loop and in worker threads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.held + n > self.limit:
                return False
            self.held += n
            return True

    def give_back(self, n: int) -> None:
        with self._lock:
            self.held -= n


@dataclass(frozen=True)
class SessionLimits:
    max_instruments: int = 10_000
    budget: InstrumentBudget | None = None  # shared by every session of a server; None: no server-wide bound


def _over_budget(instrument: str, budget: InstrumentBudget) -> Rejection:
    return Rejection(
        Status.RESOURCE_EXHAUSTED,
        f"instrument: {instrument!r} would exceed the server's budget of {budget.limit} instruments "
        "across all open streams (max_instruments_total); retry when streams have closed",
        "instrument",
    )


class SignalSession:
    """One stream's state. A rejected tick leaves no trace in it: not in the feature state,
    not in the last timestamp, not in the last sequence number of its instrument."""

    def __init__(self, model: LoadedModel, *, return_features: bool = False, limits: SessionLimits = SessionLimits()):
        self.model = model
        self.return_features = return_features
        self.limits = limits
        self.features = StreamingFeatures(model.manifest.feature_config)
        self._last_ts: dict[str, int] = {}
        self._last_seq: dict[str, int] = {}  # only instruments whose ticks carry a sequence
        self._budgeted: set[str] = set()  # instruments this session holds in the server-wide budget

    def close(self) -> None:
        """Give this session's instruments back to the server-wide budget (idempotent)."""
        if self.limits.budget is not None and self._budgeted:
            self.limits.budget.give_back(len(self._budgeted))
            self._budgeted.clear()

    def admit(self, tick: Tick) -> Rejection | None:
        """Check one tick against the rules and this stream's state (limits, sequence, time order)."""
        try:
            validate_tick(tick)
        except TickserveError as exc:
            return Rejection(exc.status, exc.message, exc.field)
        return self.check_state(tick.instrument, tick.timestamp_ns, tick.sequence)

    def check_state(self, instrument: str, timestamp_ns: int, seq: int | None) -> Rejection | None:
        """The checks of `admit` against this stream's state, for a tick that passed validation."""
        previous = self._last_ts.get(instrument)
        if previous is None:
            if len(self._last_ts) >= self.limits.max_instruments:
                return Rejection(
                    Status.RESOURCE_EXHAUSTED,
                    f"instrument: {instrument!r} would exceed this stream's limit of "
                    f"{self.limits.max_instruments} instruments (max_instruments_per_stream)",
                    "instrument",
                )
            budget = self.limits.budget
            if budget is not None and instrument not in self._budgeted:
                if not budget.take(1):
                    return _over_budget(instrument, budget)
                self._budgeted.add(instrument)
            return None  # a new instrument: no sequence or time seen yet
        if seq is not None:
            last = self._last_seq.get(instrument)
            if last is not None and seq <= last:
                return Rejection(
                    Status.ALREADY_EXISTS,
                    f"sequence: {seq} is not after this instrument's last accepted sequence {last} "
                    "(a duplicate or replayed tick)",
                    "sequence",
                )
        if timestamp_ns < previous:
            return Rejection(
                Status.INVALID_ARGUMENT,
                f"timestamp_ns: {timestamp_ns} is before this instrument's previous tick ({previous})",
                "timestamp_ns",
            )
        return None

    def accept(self, instrument: str, timestamp_ns: int, seq: int | None) -> int:
        """Record an admitted tick in this stream's state: the sequence numbers it skipped (0: none)."""
        self._last_ts[instrument] = timestamp_ns
        if seq is None:
            return 0
        last = self._last_seq.get(instrument)
        self._last_seq[instrument] = seq
        return seq - last - 1 if last is not None and seq > last + 1 else 0

    def admit_rows(
        self, names: list[str], codes: np.ndarray, ts: np.ndarray, seq: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, dict[int, Rejection]]:
        """`admit` + `accept` for validated ticks in columns (instrument `names[codes[i]]`, in
        arrival order): (positions admitted, their sequence gaps, position -> rejection).

        Vectorised per instrument when every tick passes (the common case); otherwise tick by
        tick, exactly as `prepare`, so the state and the messages are the same either way."""
        last_ts, last_seq = self._last_ts, self._last_seq
        n = len(codes)
        order = np.argsort(codes, kind="stable")
        sc = codes[order]
        start = np.empty(len(sc), dtype=bool)
        start[:1] = True
        np.not_equal(sc[1:], sc[:-1], out=start[1:])
        group_names = [names[c] for c in sc[start].tolist()]
        fresh = [name for name in group_names if name not in last_ts]
        fast = len(last_ts) + len(fresh) <= self.limits.max_instruments
        budget = self.limits.budget
        if fast and budget is not None and fresh:
            fast = budget.take(len(fresh))  # else tick by tick: each new instrument asks on its own
            if fast:
                self._budgeted.update(fresh)
        if fast:
            lo = np.iinfo(np.int64).min
            sts = ts[order]
            prev = np.empty_like(sts)
            prev[1:] = sts[:-1]
            prev[start] = [last_ts.get(name, lo) for name in group_names]
            fast = not (sts < prev).any()
        gaps_sorted = None
        if fast and seq is not None:
            sseq = seq[order]
            prev = np.empty_like(sseq)
            prev[1:] = sseq[:-1]
            prev[start] = [last_seq.get(name, -1) if name in last_ts else -1 for name in group_names]
            fast = not (sseq <= prev).any()
            if fast:
                gaps_sorted = np.where((prev >= 0) & (sseq > prev + 1), sseq - prev - 1, 0)
        if fast:
            ends = np.append(np.flatnonzero(start)[1:], len(sc)) - 1  # each group's last row, in sorted order
            for name, end in zip(group_names, ends.tolist()):
                last_ts[name] = int(ts[order[end]])
                if seq is not None:
                    last_seq[name] = int(seq[order[end]])
            gaps = np.zeros(n, dtype=np.uint64)
            if gaps_sorted is not None:
                gaps[order] = gaps_sorted
            return np.arange(n), gaps, {}
        admitted, gaps, rejections = [], [], {}
        seq_list = seq.tolist() if seq is not None else [None] * n
        for i, (code, t, s) in enumerate(zip(codes.tolist(), ts.tolist(), seq_list)):
            name = names[code]
            rejection = self.check_state(name, t, s)
            if rejection is not None:
                rejections[i] = rejection
                continue
            admitted.append(i)
            gaps.append(self.accept(name, t, s))
        return np.array(admitted, dtype=np.intp), np.array(gaps, dtype=np.uint64), rejections

    def process(self, ticks: list[Tick]) -> list[Result]:
        """One result per tick, in order. Rejected ticks leave the feature state untouched."""
        prepared = self.prepare(ticks)
        if prepared.x is None:
            return prepared.results
        raw, probs = self.model.predict(prepared.x)
        return self.finish(prepared, raw, probs)

    def warm_up(self, ticks: list[Tick]) -> list[Rejection | None]:
        """Fold ticks into the feature state exactly as `prepare` does, with no model call (a
        resumed stream's replay of its last ticks): per tick, its rejection or None."""
        return self.prepare(ticks).results

    def prepare(self, ticks: list[Tick]) -> Prepared:
        """Validate and update the feature state; the model's input rows for the admitted ticks."""
        prepared = Prepared(ticks, [], [], [], [], None)
        admitted = []
        for tick in ticks:
            rejection = self.admit(tick)
            if rejection is not None:
                prepared.results.append(rejection)
                continue
            gap = self.accept(tick.instrument, tick.timestamp_ns, tick.sequence)
            if gap:
                if prepared.gaps is None:
                    prepared.gaps = {}
                prepared.gaps[len(prepared.results)] = gap
            admitted.append(tick)
            prepared.scored_at.append(len(prepared.results))
            prepared.results.append(None)
        if len(admitted) >= VECTORISED_MIN_TICKS:
            full, counts = self.features.update_many(admitted)
            prepared.rows = full
            prepared.warmed = [c >= MAX_LOOKBACK for c in counts]
        else:
            for tick in admitted:
                prepared.rows.append(self.features.update(tick))
                prepared.warmed.append(self.features.count(tick.instrument) >= MAX_LOOKBACK)
            full = np.array(prepared.rows) if admitted else None
        if admitted:
            prepared.x = full[:, self.model.feature_index]
        return prepared

    def finish(self, prepared: Prepared, raw: np.ndarray, probs: np.ndarray) -> list[Result]:
        """Apply the signal rules to the predicted (raw, calibrated) probabilities."""
        results = prepared.results
        raw_rows = raw.tolist()
        rules = self.model.manifest.signal_rules
        x = prepared.x
        gaps = prepared.gaps
        for j, i in enumerate(prepared.scored_at):
            p_sell, p_hold, p_buy = probs[j].tolist()
            signal = decide(p_sell, p_hold, p_buy, float(prepared.rows[j][_SPREAD_TICKS]), rules)
            features = x[j].tolist() if self.return_features else None
            scored = Scored(prepared.ticks[i], signal, prepared.warmed[j], features, tuple(raw_rows[j]))
            if gaps is not None and i in gaps:
                scored.sequence_gap = gaps[i]
            results[i] = scored
        return results
