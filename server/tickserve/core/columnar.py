"""The columnar serving path: a block of ticks as arrays in, signals as arrays out.

`process_columns(session, block)` gives, for the ticks of a `TickBlock`, exactly the
results `SignalSession.process` gives for the same ticks one `Tick` at a time (same
probabilities to the last bit, same per-tick errors and messages, same state left in the
session), without a Python object per tick on the common path:

- validation is vectorised with the rules of `validation.py`; only the rows it flags are
  checked again by `validate_tick` on a `Tick` of that row, so their messages are the
  per-tick ones (a row the vectorised check flags but `validate_tick` passes is accepted);
- the stream checks of `SignalSession.admit` (instrument limit, sequence, time order) are
  vectorised per instrument; a message where any tick fails them, or that would pass the
  instrument limit, goes through them tick by tick (`SignalSession.check_state`);
- features through `StreamingFeatures.update_frame`, one `LoadedModel.predict` for the
  block, and the signal rules through `signals.decide_many`.

Book levels: L per side in every row; a level whose price and size are both NaN is
absent, a row's side is its levels before the first absent one, and a present level after
an absent one is a per-tick INVALID_ARGUMENT (the one rule a `Tick` cannot break).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgument, Status, TickserveError
from ..evaluation.scored_ticks import ScoredTicks
from ..features import FEATURE_INDEX, MAX_LOOKBACK
from .session import Rejection, SignalSession
from .signals import SignalArrays, decide_many
from .ticks import MAX_LEVELS, Tick, TickFrame
from .validation import (
    MAX_INSTRUMENT_LENGTH,
    MAX_PRICE,
    MAX_SEQUENCE,
    MAX_SIZE,
    MAX_TIMESTAMP_NS,
    MIN_PRICE,
    validate_tick,
)

_SPREAD_TICKS = FEATURE_INDEX["spread_ticks"]
_SIDES = (("bid", True), ("ask", False))


@dataclass
class TickBlock:
    """n ticks as columns, as a TickColumns message carries them."""

    names: list[str]  # the instrument dictionary
    index: np.ndarray  # (n,) int: each tick's instrument, an index into `names`
    timestamp_ns: np.ndarray  # (n,) int64
    last_price: np.ndarray  # (n,) float64
    last_size: np.ndarray  # (n,) float64
    bid_price: np.ndarray  # (n, L) float64, NaN price and size = absent level
    bid_size: np.ndarray
    ask_price: np.ndarray
    ask_size: np.ndarray
    sequence: np.ndarray | None  # (n,) uint64, or None: no tick carries one
    # (n,) int64 as Tick.aggressor (+1, -1, 0; an undefined Side number as UNKNOWN_SIDE + it), or None: all 0
    aggressor: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)

    def tick(self, i: int) -> Tick:
        """Row i as a `Tick`: each side's levels before its first absent one."""
        sides = []
        for p, s in ((self.bid_price[i], self.bid_size[i]), (self.ask_price[i], self.ask_size[i])):
            d = _leading_present(p, s)
            sides += (tuple(p[:d].tolist()), tuple(s[:d].tolist()))
        return Tick(
            instrument=self.names[int(self.index[i])],
            timestamp_ns=int(self.timestamp_ns[i]),
            last_price=float(self.last_price[i]),
            last_size=float(self.last_size[i]),
            bid_price=sides[0],
            bid_size=sides[1],
            ask_price=sides[2],
            ask_size=sides[3],
            sequence=None if self.sequence is None else int(self.sequence[i]),
            aggressor=0 if self.aggressor is None else int(self.aggressor[i]),
        )


def _leading_present(prices: np.ndarray, sizes: np.ndarray) -> int:
    absent = np.flatnonzero(np.isnan(prices) & np.isnan(sizes))
    return int(absent[0]) if len(absent) else len(prices)


@dataclass
class ColumnResults:
    """The answers to a block: per-tick rejections, and arrays over the admitted rows."""

    n: int
    rejections: dict[int, Rejection]  # row -> why it got no signal
    admitted: np.ndarray  # (m,) rows that got a signal, ascending
    probs: np.ndarray  # (m, 3) calibrated (SELL, HOLD, BUY)
    raw: np.ndarray  # (m, 3) the adapter's probabilities before calibration
    signal: SignalArrays | None
    warmed: np.ndarray  # (m,) bool
    gaps: np.ndarray  # (m,) uint64 sequence gaps
    x: np.ndarray | None  # (m, F) the model's input rows, when the stream asked for them
    n_features: int = 0  # F when the stream asked for the model's input rows, else 0


# --- validation ------------------------------------------------------------------------


def _name_ok(name: str) -> bool:
    return bool(name) and len(name) <= MAX_INSTRUMENT_LENGTH and name.isprintable()


def _suspect_rows(block: TickBlock) -> np.ndarray:
    """Rows that may break a rule of `validate_tick` (or the absent-level rule): a superset."""
    n = len(block)
    bad = np.zeros(n, dtype=bool)
    if n == 0:
        return bad
    names_ok = np.fromiter((_name_ok(name) for name in block.names), dtype=bool, count=len(block.names))
    if not names_ok.all():
        bad |= ~names_ok[block.index]
    ts = block.timestamp_ns
    bad |= ~((ts > 0) & (ts < MAX_TIMESTAMP_NS))
    lp, ls = block.last_price, block.last_size
    bad |= ~((lp >= 0) & (lp < MAX_PRICE))  # NaN fails every comparison, +-inf one of them
    bad |= ~((ls >= 0) & (ls < MAX_SIZE))
    if block.sequence is not None:
        bad |= block.sequence > np.uint64(MAX_SEQUENCE)
    if block.aggressor is not None:
        side = block.aggressor
        bad |= (side < -1) | (side > 1) | ((side != 0) & (ls == 0))
    L = block.bid_price.shape[1]
    if L == 0:
        bad[:] = True  # no levels at all
        return bad
    for (_side, descending), (p, s) in zip(
        _SIDES, ((block.bid_price, block.bid_size), (block.ask_price, block.ask_size))
    ):
        present = ~(np.isnan(p) & np.isnan(s))
        if present.all():
            depth = np.full(n, L)
            live = present
        else:
            depth = np.cumprod(present, axis=1).sum(axis=1)
            bad |= present.sum(axis=1) != depth  # a present level after an absent one
            live = np.arange(L) < depth[:, None]
        bad |= (depth == 0) | (depth > MAX_LEVELS)
        ok = (p >= MIN_PRICE) & (p < MAX_PRICE) & (s >= 0) & (s < MAX_SIZE)
        bad |= (live & ~ok).any(axis=1)
        if L > 1:
            order = p[:, 1:] < p[:, :-1] if descending else p[:, 1:] > p[:, :-1]
            bad |= (live[:, 1:] & ~order).any(axis=1)
    bad |= block.bid_price[:, 0] > block.ask_price[:, 0]  # crossed (NaN compares False)
    return bad


def validate_block(block: TickBlock) -> tuple[np.ndarray, dict[int, Rejection]]:
    """(ok mask, row -> Rejection): each rejection is what `validate_tick` says of that row's Tick."""
    bad = _suspect_rows(block)
    ok = ~bad
    rejections: dict[int, Rejection] = {}
    for i in np.flatnonzero(bad).tolist():
        tick = block.tick(i)
        try:
            validate_tick(tick)
        except TickserveError as exc:
            rejections[i] = Rejection(exc.status, exc.message, exc.field)
            continue
        rejection = _absent_level_error(block, i)
        if rejection is not None:
            rejections[i] = rejection
        else:
            ok[i] = True  # flagged by the vectorised check, but valid
    return ok, rejections


def _absent_level_error(block: TickBlock, i: int) -> Rejection | None:
    for side, p, s in (("bid", block.bid_price[i], block.bid_size[i]), ("ask", block.ask_price[i], block.ask_size[i])):
        d = _leading_present(p, s)
        present = ~(np.isnan(p[d:]) & np.isnan(s[d:]))
        if present.any():
            k = d + int(np.flatnonzero(present)[0])
            return Rejection(
                Status.INVALID_ARGUMENT,
                f"{side}_price[{k}]: a level after the first absent one ({side}_price[{d}] and {side}_size[{d}] "
                f"both NaN) must be absent too, got price {float(p[k])!r} and size {float(s[k])!r}",
                f"{side}_price[{k}]",
            )
    return None


# --- the stream checks of SignalSession.admit --------------------------------------------


def _admit(session: SignalSession, block: TickBlock, rows: np.ndarray, rejections: dict[int, Rejection]):
    """(admitted rows, their sequence gaps) after the session's stream checks, which update its state."""
    seq = block.sequence[rows].astype(np.int64) if block.sequence is not None else None  # <= 2^63-1: validated
    kept, gaps, refused = session.admit_rows(block.names, block.index[rows], block.timestamp_ns[rows], seq)
    for i, rejection in refused.items():
        rejections[int(rows[i])] = rejection
    return rows[kept], gaps


# --- the whole path ----------------------------------------------------------------------


def block_frame(block: TickBlock, rows: np.ndarray) -> TickFrame:
    """The valid `rows` of a block as the TickFrame `TickFrame.from_ticks` would build of their ticks."""
    m = len(rows)
    names = np.empty(len(block.names), dtype=object)
    names[:] = block.names
    L = block.bid_price.shape[1]

    def levels(a: np.ndarray) -> np.ndarray:
        if L == MAX_LEVELS:
            return a[rows]
        out = np.full((m, MAX_LEVELS), np.nan)
        k = min(L, MAX_LEVELS)  # a valid row has at most MAX_LEVELS present levels, all first
        out[:, :k] = a[rows, :k]
        return out

    return TickFrame(
        instrument=names[block.index[rows]],
        timestamp_ns=block.timestamp_ns[rows],
        last_price=block.last_price[rows],
        last_size=block.last_size[rows],
        bid_price=levels(block.bid_price),
        bid_size=levels(block.bid_size),
        ask_price=levels(block.ask_price),
        ask_size=levels(block.ask_size),
        sequence=block.sequence[rows].astype(np.int64)
        if block.sequence is not None
        else np.full(m, -1, dtype=np.int64),
        aggressor=block.aggressor[rows].astype(np.int8) if block.aggressor is not None else np.zeros(m, dtype=np.int8),
    )


@dataclass
class PreparedColumns:
    """A block after validation, the stream checks and the feature update: what is left is
    the model's call (`x`, None when no row was admitted) and the signal rules."""

    block: TickBlock
    rejections: dict[int, Rejection]
    rows: np.ndarray  # admitted rows, ascending
    gaps: np.ndarray
    full: np.ndarray | None  # (m, N_FEATURES) every feature of the admitted rows
    counts: np.ndarray | None  # per admitted row, its instrument's ticks seen so far
    x: np.ndarray | None  # (m, F) the model's input rows


def prepare_columns(session: SignalSession, block: TickBlock) -> PreparedColumns:
    """Everything before the model's call; it updates the session's state (call in stream order)."""
    ok, rejections = validate_block(block)
    rows, gaps = _admit(session, block, np.flatnonzero(ok), rejections)
    if len(rows) == 0:
        return PreparedColumns(block, rejections, rows, gaps, None, None, None)
    used, codes = np.unique(block.index[rows], return_inverse=True)  # ints: cheaper than the names
    groups = ([block.names[c] for c in used.tolist()], codes)
    full, counts = session.features.update_frame(block_frame(block, rows), groups)
    return PreparedColumns(block, rejections, rows, gaps, full, counts, full[:, session.model.feature_index])


def finish_columns(
    session: SignalSession, prepared: PreparedColumns, raw: np.ndarray, probs: np.ndarray
) -> ColumnResults:
    """The answers, given the model's probabilities for `prepared.x` (it reads no session state:
    it may run while the next message is being prepared)."""
    n_features = len(session.model.feature_index) if session.return_features else 0
    n = len(prepared.block)
    if prepared.x is None:
        empty = np.empty((0, 3))
        return ColumnResults(
            n,
            prepared.rejections,
            prepared.rows,
            empty,
            empty,
            None,
            np.zeros(0, bool),
            prepared.gaps,
            None,
            n_features,
        )
    signal = decide_many(probs, prepared.full[:, _SPREAD_TICKS], session.model.manifest.signal_rules)
    return ColumnResults(
        n,
        prepared.rejections,
        prepared.rows,
        probs,
        raw,
        signal,
        prepared.counts >= MAX_LOOKBACK,
        prepared.gaps,
        prepared.x if session.return_features else None,
        n_features,
    )


def process_columns(session: SignalSession, block: TickBlock) -> ColumnResults:
    """The answers `session.process` would give the block's ticks, computed on arrays."""
    prepared = prepare_columns(session, block)
    if prepared.x is None:
        return finish_columns(session, prepared, np.empty((0, 3)), np.empty((0, 3)))
    raw, probs = session.model.predict(prepared.x)
    return finish_columns(session, prepared, raw, probs)


def scored_ticks(block: TickBlock, results: ColumnResults) -> ScoredTicks:
    """The admitted rows of a block with their signals, as Evaluate counts them."""
    rows = results.admitted
    signal = results.signal
    if signal is None:  # nothing admitted
        none = np.zeros(0, dtype=np.int64)
        signal = SignalArrays(none, np.zeros(0), np.zeros(0), none, none, none)
    return ScoredTicks(
        names=block.names,
        index=block.index[rows],
        timestamp_ns=block.timestamp_ns[rows],
        bid=block.bid_price[rows, 0],
        ask=block.ask_price[rows, 0],
        bid_size=block.bid_size[rows, 0],
        ask_size=block.ask_size[rows, 0],
        probs=results.probs,
        raw=results.raw,
        action=signal.action,
        strength=signal.strength,
        risk=signal.risk,
    )


def check_lengths(
    n: int, lengths: dict[str, int], levels: int, level_lengths: dict[str, int], sequence: int, aggressor: int = 0
) -> None:
    """Every array of a TickColumns message has its length, or the call fails naming it."""
    for name, length in lengths.items():
        if length != n:
            raise InvalidArgument(
                f"columns.{name}: has {length} values, expected {n} (one per tick, as columns.instrument_index)",
                field=f"columns.{name}",
            )
    for name, length in level_lengths.items():
        if length != n * levels:
            raise InvalidArgument(
                f"columns.{name}: has {length} values, expected {n * levels} ({n} ticks x levels={levels})",
                field=f"columns.{name}",
            )
    for name, length in (("sequence", sequence), ("aggressor", aggressor)):  # optional arrays
        if length not in (0, n):
            raise InvalidArgument(
                f"columns.{name}: has {length} values, expected none or {n} (one per tick)", field=f"columns.{name}"
            )
