"""Evaluate's bookkeeping on arrays: labels from the ticks themselves, memory bounded by the horizon.

`Evaluation.add(ScoredTicks)` takes one message's ticks (in arrival order, with the signal
each got) at once. It joins them to the ticks still waiting for their label tick, finds
every label tick and past tick with the function training uses (`labels.label_rows`), and
counts each tick whose label tick has now arrived. Ticks still waiting when the stream ends have no label (same rule as training). Ticks before
`score_from_ns` are warm-up: they feed the features (in the session) and serve as label
and past ticks here, but are not scored.

Every sum runs tick after tick in the order the ticks are settled (label tick, then the
tick itself: the order a tick-by-tick loop would settle them), so a report does not depend
on how the ticks were split into messages (tests feed one stream in messages of random
sizes and compare the bits).

Besides the model's classification metrics, every report carries, on the same labeled
ticks:

- the baselines of `baselines.py` (majority class, last move, level-1 imbalance sign),
  with accuracy and macro-F1;
- trading metrics of the model's BUY/SELL signals (docs/trading-metrics.md,
  `trading.round_trips_of`): hit and win rates, mean forward mid move, P&L after crossing
  the spread, `cost_ticks` and `fee_bps`, in ticks and bps, by strength, by risk and by
  action (signals may overlap), the same with one position per instrument
  (`trading.one_position_rows`: all signals, STRONG ones, each baseline), the signal rate
  and a downsampled cumulative P&L series.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from math import isfinite

import numpy as np

from ..core.signals import ACTIONS, RISKS, STRENGTHS, SignalValues
from ..core.ticks import Tick
from ..errors import InvalidArgument, ResourceExhausted
from ..models.repository import LoadedModel
from .baselines import DESCRIPTIONS, imbalance_classes
from .labels import BUY, CLASSES, HOLD, label_classes, label_rows
from .metrics import CalibrationMetrics, ClassificationMetrics
from .pnl_series import CumulativePnl
from .scored_ticks import ScoredTicks
from .trading import GroupedRoundTrips, RoundTrips, Trips, one_position_rows, round_trips_of, running_total

# Ticks of one instrument that may wait for their label tick (about 100 bytes each). With a
# tick horizon the queue never exceeds the horizon; with a time horizon it grows while the
# ticks' clock stands still, so it is bounded here.
MAX_WAITING_TICKS = 200_000
_BASELINES = ("last_move", "imbalance")
# one-position books: every BUY/SELL signal, the STRONG ones, each baseline's
_BOOKS = ("all", "strong") + _BASELINES
_STRONG = STRENGTHS.index("STRONG")


@dataclass(frozen=True)
class _Rows:
    """Ticks as Evaluation keeps them: the ones waiting for their label tick, plus per
    instrument the last settled one (the past tick of ticks still to come)."""

    index: np.ndarray  # arrival index in the stream
    code: np.ndarray  # instrument, as a small int
    ts: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    tick_size: np.ndarray
    probs: np.ndarray
    raw: np.ndarray
    action: np.ndarray
    strength: np.ndarray
    risk: np.ndarray
    last_move: np.ndarray  # the baselines' classes, fixed when the tick arrives
    imbalance: np.ndarray
    scored: np.ndarray  # bool: at or after score_from_ns
    settled: np.ndarray  # bool: its label tick has arrived (or it never will be scored)

    def __len__(self) -> int:
        return len(self.index)

    def take(self, rows: np.ndarray) -> _Rows:
        return _Rows(*(getattr(self, f.name)[rows] for f in fields(self)))

    def join(self, other: _Rows) -> _Rows:
        return _Rows(*(np.concatenate([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)))


def _no_rows() -> _Rows:
    ints, floats = np.zeros(0, np.int64), np.zeros(0)
    return _Rows(
        ints, ints, ints, floats, floats, floats, np.zeros((0, 3)), np.zeros((0, 3)),
        ints, ints, ints, ints, ints, np.zeros(0, bool), np.zeros(0, bool),
    )  # fmt: skip


@dataclass
class Evaluation:
    model: LoadedModel
    # trading cost per round trip (one signal), in tick sizes, on top of the spread
    cost_ticks: float = 0.0
    # fees per round trip, in bps of the entry mid
    fee_bps: float = 0.0
    # ticks before this timestamp are warm-up (0: none)
    score_from_ns: int = 0
    # keep (label, label tick index) per tick index in `labels_seen` (tests compare with make_labels)
    record_labels: bool = False
    ticks: int = 0  # scored ticks
    warmup_ticks: int = 0
    metrics: ClassificationMetrics = field(default_factory=ClassificationMetrics)
    actions: Counter = field(default_factory=Counter)
    strengths: Counter = field(default_factory=Counter)
    risks: Counter = field(default_factory=Counter)
    calibrated: CalibrationMetrics = field(default_factory=CalibrationMetrics)
    uncalibrated: CalibrationMetrics = field(default_factory=CalibrationMetrics)
    baselines: dict = field(default_factory=lambda: {name: ClassificationMetrics() for name in _BASELINES})
    signals: int = 0  # BUY/SELL signals, labeled or not
    trading: RoundTrips = field(default_factory=RoundTrips)
    by_strength: GroupedRoundTrips = field(default_factory=lambda: GroupedRoundTrips(STRENGTHS))
    by_risk: GroupedRoundTrips = field(default_factory=lambda: GroupedRoundTrips(RISKS))
    by_action: GroupedRoundTrips = field(default_factory=lambda: GroupedRoundTrips(ACTIONS))
    pnl: CumulativePnl = field(default_factory=CumulativePnl)
    # the same round trips for the baselines' BUY/SELL predictions (what a naive rule would have earned)
    baseline_trading: GroupedRoundTrips = field(default_factory=lambda: GroupedRoundTrips(_BASELINES))
    one_position: GroupedRoundTrips = field(default_factory=lambda: GroupedRoundTrips(_BOOKS))
    labels_seen: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in (("cost_ticks", self.cost_ticks), ("fee_bps", self.fee_bps)):
            if not (isfinite(value) and value >= 0):
                raise InvalidArgument(
                    f"config.{name}: must be a finite number >= 0, got {value!r}", field=f"config.{name}"
                )
        if self.score_from_ns < 0:
            raise InvalidArgument(
                f"config.score_from_ns: must be >= 0 (0 = score every tick), got {self.score_from_ns}",
                field="config.score_from_ns",
            )
        self._labels = self.model.manifest.label_config
        self._sent = 0
        self._cum_ticks = 0.0
        self._cum_price = 0.0
        self._codes: dict[str, int] = {}
        self._names: list[str] = []
        self._tick_sizes: list[float] = []
        self._waiting = _no_rows()
        self._open: dict[str, dict[int, int]] = {book: {} for book in _BOOKS}  # code -> index of the open tick

    # --- taking ticks ----------------------------------------------------------------------

    def add_tick(self, tick: Tick, signal: SignalValues, raw: tuple[float, float, float]) -> None:
        """One tick (in the order the ticks were sent) and the signal it got."""
        self.add(ScoredTicks.of_tick(tick, signal, raw))

    def add(self, ticks: ScoredTicks) -> None:
        """Count a message's ticks (in the order they were sent) and settle every tick they label."""
        n = len(ticks)
        if not n:
            return
        codes = self._code(ticks.names)[ticks.index]
        scored = ticks.timestamp_ns >= self.score_from_ns
        self._count(ticks, scored)
        sizes = np.asarray(self._tick_sizes)[codes]
        new = _Rows(
            np.arange(self._sent, self._sent + n, dtype=np.int64),
            codes,
            np.asarray(ticks.timestamp_ns, dtype=np.int64),
            np.asarray(ticks.bid, dtype=np.float64),
            np.asarray(ticks.ask, dtype=np.float64),
            sizes,
            ticks.probs,
            ticks.raw,
            np.asarray(ticks.action, dtype=np.int64),
            np.asarray(ticks.strength, dtype=np.int64),
            np.asarray(ticks.risk, dtype=np.int64),
            np.full(n, HOLD, dtype=np.int64),
            imbalance_classes(np.asarray(ticks.bid_size), np.asarray(ticks.ask_size)),
            scored,
            np.zeros(n, dtype=bool),
        )
        self._sent += n
        old = len(self._waiting)
        rows = self._waiting.join(new)
        future, past = label_rows(rows.code, rows.ts, self._labels)
        past = past[old:]
        has = np.flatnonzero(past >= 0)
        p = past[has]
        rows.last_move[old + has] = label_classes(
            rows.bid[p], rows.ask[p], new.bid[has], new.ask[has], sizes[has], self._labels
        )
        self._check_waiting(rows, future, old)
        self._settle(rows, future)
        self._trade_books(rows, future, old)
        rows.settled[future >= 0] = True
        self._waiting = rows.take(self._still_needed(rows))

    def _code(self, names: list[str]) -> np.ndarray:
        """This evaluation's code of each instrument name (new names get the next codes)."""
        codes = np.empty(len(names), dtype=np.int64)
        for k, name in enumerate(names):
            code = self._codes.get(name)
            if code is None:
                code = self._codes[name] = len(self._names)
                self._names.append(name)
                self._tick_sizes.append(self.model.manifest.feature_config.tick_size(name))
            codes[k] = code
        return codes

    def _count(self, ticks: ScoredTicks, scored: np.ndarray) -> None:
        k = int(scored.sum())
        self.ticks += k
        self.warmup_ticks += len(ticks) - k
        for counter, names, values in (
            (self.actions, ACTIONS, ticks.action),
            (self.strengths, STRENGTHS, ticks.strength),
            (self.risks, RISKS, ticks.risk),
        ):
            for i, count in enumerate(np.bincount(np.asarray(values)[scored], minlength=len(names)).tolist()):
                if count:
                    counter[names[i]] += count
        self.signals += int((np.asarray(ticks.action)[scored] != HOLD).sum())

    def _check_waiting(self, rows: _Rows, future: np.ndarray, old: int) -> None:
        """RESOURCE_EXHAUSTED at the first tick after which more than MAX_WAITING_TICKS ticks of
        its instrument wait for their label tick."""
        waiting = ~rows.settled & (future < 0)
        counts = np.bincount(rows.code[waiting], minlength=len(self._names))
        for code in np.flatnonzero(counts > MAX_WAITING_TICKS).tolist():
            mine = np.flatnonzero((rows.code == code) & ~rows.settled)
            ends = np.where(future[mine] >= 0, future[mine], len(rows))  # ascending: labels come in order
            waiting_after = np.arange(1, len(mine) + 1) - np.searchsorted(ends, mine, side="right")
            over = mine[(waiting_after > MAX_WAITING_TICKS) & (mine >= old)]
            if len(over):
                index = int(rows.index[over[0]])
                raise ResourceExhausted(
                    f"ticks[{index}].timestamp_ns: {MAX_WAITING_TICKS} ticks of {self._names[code]!r} are waiting "
                    f"for the label tick {self._labels.horizon_ns} ns later (max_waiting_ticks); "
                    "the ticks' timestamps do not advance enough for this model's time horizon",
                    field=f"ticks[{index}].timestamp_ns",
                )

    def _still_needed(self, rows: _Rows) -> np.ndarray:
        """The ticks still waiting, and per instrument the last settled one (the past tick to come)."""
        keep = ~rows.settled
        settled = np.flatnonzero(rows.settled)[::-1]
        _, last = np.unique(rows.code[settled], return_index=True)
        keep[settled[last]] = True
        return np.flatnonzero(keep)

    # --- settling ticks whose label tick arrived --------------------------------------------

    def _trips(self, rows: _Rows, now: np.ndarray, later: np.ndarray, buy: np.ndarray) -> Trips:
        return round_trips_of(
            buy, rows.bid[now], rows.ask[now], rows.bid[later], rows.ask[later], rows.tick_size[now],
            self.cost_ticks, self.fee_bps,
        )  # fmt: skip

    def _settle(self, rows: _Rows, future: np.ndarray) -> None:
        due = np.flatnonzero(~rows.settled & (future >= 0) & rows.scored)
        now = due[np.lexsort((due, future[due]))]  # the order a tick-by-tick loop settles them in
        later = future[now]
        true = label_classes(
            rows.bid[now], rows.ask[now], rows.bid[later], rows.ask[later], rows.tick_size[now], self._labels
        )
        action = rows.action[now]
        self.metrics.add_batch(true, action, rows.probs[now])
        self.calibrated.add(true, rows.probs[now])
        self.uncalibrated.add(true, rows.raw[now])
        picks = []  # (group, rows, buy) of the baselines' BUY/SELL predictions
        for group, name in enumerate(_BASELINES):
            predicted = getattr(rows, name)[now]
            self.baselines[name].add_batch(true, predicted)
            acts = predicted != HOLD
            picks.append((group, acts, predicted[acts] == BUY))
        groups = np.concatenate([np.full(int(acts.sum()), g) for g, acts, _ in picks]).astype(np.int64)
        opened = np.concatenate([now[acts] for _, acts, _ in picks])
        buy = np.concatenate([b for _, _, b in picks])
        self.baseline_trading.add(self._trips(rows, opened, future[opened], buy), groups)
        if self.record_labels:
            self.labels_seen.update(zip(rows.index[now].tolist(), zip(true.tolist(), rows.index[later].tolist())))
        acts = action != HOLD
        trips = self._trips(rows, now[acts], later[acts], action[acts] == BUY)
        self.trading.add(trips)
        signal_rows = now[acts]
        self.by_strength.add(trips, rows.strength[signal_rows])
        self.by_risk.add(trips, rows.risk[signal_rows])
        self.by_action.add(trips, rows.action[signal_rows])
        if len(trips):
            cum_ticks = running_total(self._cum_ticks, trips.pnl_ticks)
            cum_price = running_total(self._cum_price, trips.pnl_price)
            self._cum_ticks, self._cum_price = float(cum_ticks[-1]), float(cum_price[-1])
            closing = later[acts]
            self.pnl.add_many(rows.index[closing], rows.ts[closing], cum_ticks, cum_price)

    def _trade_books(self, rows: _Rows, future: np.ndarray, old: int) -> None:
        """The one-position books: positions opened by this message's scored ticks, and the round
        trips of every position whose label tick arrived."""
        new = np.arange(old, len(rows))
        new = new[rows.scored[old:]]
        action, strength = rows.action, rows.strength
        books = {
            "all": (action != HOLD, action == BUY),
            "strong": ((action != HOLD) & (strength == _STRONG), action == BUY),
            "last_move": (rows.last_move != HOLD, rows.last_move == BUY),
            "imbalance": (rows.imbalance != HOLD, rows.imbalance == BUY),
        }
        closing, groups, buying = [], [], []
        for group, (book, (wants, buys)) in enumerate(books.items()):
            # positions opened by earlier messages: flat from their label tick, or busy throughout
            carried = {code: int(np.searchsorted(rows.index, index)) for code, index in self._open[book].items()}
            flat_from = {code: int(future[row]) if future[row] >= 0 else len(rows) for code, row in carried.items()}
            taken, still_open = one_position_rows(rows.code, new[wants[new]], future, flat_from)
            still_open.update({code: row for code, row in carried.items() if future[row] < 0})
            self._open[book] = {code: int(rows.index[row]) for code, row in still_open.items()}
            closed = np.concatenate([np.fromiter(carried.values(), dtype=np.int64, count=len(carried)), taken])
            closed = closed[future[closed] >= 0]
            closed = closed[np.lexsort((closed, future[closed]))]
            closing.append(closed)
            groups.append(np.full(len(closed), group, dtype=np.int64))
            buying.append(buys[closed])
        closed = np.concatenate(closing)
        self.one_position.add(self._trips(rows, closed, future[closed], np.concatenate(buying)), np.concatenate(groups))

    # --- the report ------------------------------------------------------------------------

    @property
    def labeled(self) -> int:
        return self.metrics.count

    def baseline_report(self) -> list[dict]:
        m = self.metrics
        majority, accuracy = m.majority_baseline()
        out = [
            {
                "name": "majority",
                "description": f"always {majority}: {DESCRIPTIONS['majority']}",
                "accuracy": accuracy,
                "macro_f1": m.majority_macro_f1(),
            }
        ]
        for name, b in self.baselines.items():
            out.append(
                {"name": name, "description": DESCRIPTIONS[name], "accuracy": b.accuracy, "macro_f1": b.macro_f1}
            )
        return out

    def trading_report(self) -> dict:
        return {
            "cost_ticks": self.cost_ticks,
            "fee_bps": self.fee_bps,
            "signals": self.signals,
            "trades": self.trading.trades,
            "signals_per_1000_ticks": 1000.0 * self.signals / self.ticks if self.ticks else 0.0,
            "all": self.trading.to_dict(),
            "by_strength": self.by_strength.to_dict(),
            "by_risk": self.by_risk.to_dict(),
            "by_action": {k: self.by_action[k].to_dict() for k in ("BUY", "SELL")},
            "cumulative_pnl": self.pnl.series(),
            "baselines": self.baseline_trading.to_dict(),
            "one_position_all": self.one_position["all"].to_dict(),
            "one_position_strong": self.one_position["strong"].to_dict(),
            "one_position_baselines": {k: self.one_position[k].to_dict() for k in _BASELINES},
        }

    def report(self) -> dict:
        m = self.metrics
        majority, baseline = m.majority_baseline()
        labels = self._labels
        return {
            "model": self.model.name,
            "model_version": self.model.version,
            "ticks": self.ticks,
            "warmup_ticks": self.warmup_ticks,
            "labeled": m.count,
            "accuracy": m.accuracy,
            "macro_f1": m.macro_f1,
            "log_loss": m.log_loss,
            "majority_baseline_accuracy": baseline,
            "majority_class": majority,
            "classes": list(CLASSES),
            "per_class": m.per_class(),
            "confusion_matrix": np.asarray(m.confusion).ravel().tolist(),
            "action_counts": dict(self.actions),
            "strength_counts": dict(self.strengths),
            "risk_counts": dict(self.risks),
            "feature_importance": list(self.model.importance),
            "brier_score": self.calibrated.brier,
            "brier_score_uncalibrated": self.uncalibrated.brier,
            "expected_calibration_error": self.calibrated.ece,
            "expected_calibration_error_uncalibrated": self.uncalibrated.ece,
            "calibration_temperature": self.model.calibrator.temperature,
            "label_config": {
                "horizon_ticks": labels.horizon_ticks or 0,
                "horizon_ns": labels.horizon_ns or 0,
                "threshold_ticks": labels.threshold_ticks,
                "mode": labels.mode,
                "cost_ticks": labels.cost_ticks,
            },
            "baselines": self.baseline_report(),
            "trading": self.trading_report(),
        }


__all__ = ["CumulativePnl", "Evaluation", "ScoredTicks"]
