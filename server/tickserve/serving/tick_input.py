"""protobuf ticks -> the project's own ticks: a Tick, a TickBlock of TickColumns, or the
TickBlock runs of a TickBatch (`blocks_from_ticks`, the columnar route of every big message)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np

from tickserve_proto.v1 import tickserve_pb2 as pb

from ..core.columnar import TickBlock, check_lengths
from ..core.ticks import AGGRESSOR_BUY, AGGRESSOR_NONE, AGGRESSOR_SELL, UNKNOWN_SIDE, Tick
from ..errors import InvalidArgument

# Side enum number -> Tick.aggressor. A number the contract does not define (proto3 keeps it as an
# int) becomes UNKNOWN_SIDE + it: validation rejects that tick naming the number (never -1 = a sell).
AGGRESSOR = {pb.SIDE_UNSPECIFIED: AGGRESSOR_NONE, pb.SIDE_BUY: AGGRESSOR_BUY, pb.SIDE_SELL: AGGRESSOR_SELL}
_AGGRESSOR_TABLE = np.zeros(max(AGGRESSOR) + 1, dtype=np.int64)
_AGGRESSOR_TABLE[list(AGGRESSOR)] = list(AGGRESSOR.values())


def aggressor_from_proto(side: int) -> int:
    aggressor = AGGRESSOR.get(side)
    return UNKNOWN_SIDE + side if aggressor is None else aggressor


def aggressors_from_proto(sides) -> np.ndarray:
    """`aggressor_from_proto` over a packed array, vectorised."""
    wire = np.array(sides, dtype=np.int64)
    known = (wire >= 0) & (wire < len(_AGGRESSOR_TABLE))
    if known.all():
        return _AGGRESSOR_TABLE[wire]
    return np.where(known, _AGGRESSOR_TABLE[np.where(known, wire, 0)], wire + UNKNOWN_SIDE)


def tick_from_proto(msg: pb.Tick) -> Tick:
    return Tick(
        instrument=msg.instrument,
        timestamp_ns=msg.timestamp_ns,
        last_price=msg.last_price,
        last_size=msg.last_size,
        bid_price=tuple(msg.bid_price),
        bid_size=tuple(msg.bid_size),
        ask_price=tuple(msg.ask_price),
        ask_size=tuple(msg.ask_size),
        sequence=msg.sequence if msg.HasField("sequence") else None,
        aggressor=aggressor_from_proto(msg.aggressor) if msg.aggressor else AGGRESSOR_NONE,
    )


def block_from_proto(msg: pb.TickColumns) -> TickBlock:
    """A TickColumns message as arrays; a malformed message (array lengths, an instrument index
    outside the dictionary) fails the call with INVALID_ARGUMENT naming the array."""
    n = len(msg.instrument_index)
    levels = msg.levels
    check_lengths(
        n,
        {"timestamp_ns": len(msg.timestamp_ns), "last_price": len(msg.last_price), "last_size": len(msg.last_size)},
        levels,
        {name: len(getattr(msg, name)) for name in ("bid_price", "bid_size", "ask_price", "ask_size")},
        len(msg.sequence),
        len(msg.aggressor),
    )
    index = np.array(msg.instrument_index, dtype=np.intp)
    names = list(msg.instrument)
    if n and int(index.max()) >= len(names):
        i = int(np.flatnonzero(index >= len(names))[0])
        raise InvalidArgument(
            f"columns.instrument_index[{i}]: {int(index[i])} is not an index into columns.instrument "
            f"({len(names)} names)",
            field=f"columns.instrument_index[{i}]",
        )
    if len(set(names)) != len(names):  # a name listed twice: one instrument, one index
        first: dict[str, int] = {}
        remap = np.array([first.setdefault(name, len(first)) for name in names], dtype=np.intp)
        names = list(first)
        index = remap[index]

    def book(field) -> np.ndarray:
        return np.array(field, dtype=np.float64).reshape(n, levels)

    return TickBlock(
        names=names,
        index=index,
        timestamp_ns=np.array(msg.timestamp_ns, dtype=np.int64),
        last_price=np.array(msg.last_price, dtype=np.float64),
        last_size=np.array(msg.last_size, dtype=np.float64),
        bid_price=book(msg.bid_price),
        bid_size=book(msg.bid_size),
        ask_price=book(msg.ask_price),
        ask_size=book(msg.ask_size),
        sequence=np.array(msg.sequence, dtype=np.uint64) if len(msg.sequence) else None,
        aggressor=aggressors_from_proto(msg.aggressor) if len(msg.aggressor) else None,
    )


def blocks_from_ticks(ticks: Sequence[pb.Tick]) -> list[tuple[int, TickBlock | Tick]]:
    """A TickBatch's ticks as (first position, TickBlock) runs, in order, so that a batch takes the
    columnar path. A tick no block can hold comes alone, as (position, Tick): a level whose price
    and size are both NaN (a block's mark of an absent level) or a side with more prices than sizes
    (or fewer). Each of those is invalid, and the per-tick path says why in its own words. Runs
    also break where ticks start or stop carrying a sequence number (a block has one for all or none)."""
    n = len(ticks)
    if n == 0:
        return []
    books = [(t.bid_price, t.bid_size, t.ask_price, t.ask_size) for t in ticks]
    depth = np.array([[len(a), len(b), len(c), len(d)] for a, b, c, d in books], dtype=np.int64).reshape(n, 4)
    has_sequence = np.array([t.HasField("sequence") for t in ticks], dtype=bool)
    L = int(depth.max())
    arrays = []
    for k in range(4):
        flat = np.array(list(chain.from_iterable(book[k] for book in books)), dtype=np.float64)
        arrays.append(_levels(flat, depth[:, k], n, L))
    alone = (depth[:, 0] != depth[:, 1]) | (depth[:, 2] != depth[:, 3])
    for k in (0, 2):  # prices k, sizes k + 1
        within = np.arange(L) < depth[:, k : k + 1]
        alone |= (np.isnan(arrays[k]) & np.isnan(arrays[k + 1]) & within).any(axis=1)
    instrument = [t.instrument for t in ticks]
    timestamp = np.array([t.timestamp_ns for t in ticks], dtype=np.int64)
    last_price = np.array([t.last_price for t in ticks], dtype=np.float64)
    last_size = np.array([t.last_size for t in ticks], dtype=np.float64)
    sides = [t.aggressor for t in ticks]
    aggressor = aggressors_from_proto(sides) if any(sides) else None
    sequence = np.array([t.sequence for t in ticks], dtype=np.uint64)
    out: list[tuple[int, TickBlock | Tick]] = []
    cuts = np.flatnonzero(alone | np.r_[True, has_sequence[1:] != has_sequence[:-1]] | np.r_[True, alone[:-1]])
    for start, end in zip(cuts.tolist(), np.r_[cuts[1:], n].tolist()):
        if alone[start]:
            out.append((start, tick_from_proto(ticks[start])))
            continue
        names, index = np.unique(np.asarray(instrument[start:end], dtype=object), return_inverse=True)
        out.append(
            (
                start,
                TickBlock(
                    names=names.tolist(),
                    index=index.ravel().astype(np.intp),
                    timestamp_ns=timestamp[start:end],
                    last_price=last_price[start:end],
                    last_size=last_size[start:end],
                    bid_price=arrays[0][start:end],
                    bid_size=arrays[1][start:end],
                    ask_price=arrays[2][start:end],
                    ask_size=arrays[3][start:end],
                    sequence=sequence[start:end] if has_sequence[start] else None,
                    aggressor=None if aggressor is None else aggressor[start:end],
                ),
            )
        )
    return out


def _levels(flat: np.ndarray, depth: np.ndarray, n: int, L: int) -> np.ndarray:
    """Concatenated per-row values -> (n, L), NaN where a row has fewer than L."""
    if (depth == L).all():
        return flat.reshape(n, L)
    out = np.full((n, L), np.nan)
    rows = np.repeat(np.arange(n), depth)
    starts = np.cumsum(depth) - depth
    cols = np.arange(len(flat)) - np.repeat(starts, depth)
    out[rows, cols] = flat
    return out
