"""The project's own tick types: one tick (`Tick`) and a columnar frame (`TickFrame`).

Plugins and the feature stage never see protobuf; the gRPC edge converts to
these. `TickFrame` is what the batch feature path, training and the Parquet
files use: one row per tick, book levels padded with NaN up to `MAX_LEVELS`.

`aggressor` is the side that initiated the tick's trade (the taker): +1 a buyer lifted the ask,
-1 a seller hit the bid, 0 unknown or no trade (`last_size` 0). On the wire it is the `Side`
enum (SIDE_BUY, SIDE_SELL, SIDE_UNSPECIFIED); the gRPC edge converts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAX_LEVELS = 10
AGGRESSOR_BUY, AGGRESSOR_SELL, AGGRESSOR_NONE = 1, -1, 0
AGGRESSOR_NAMES = {AGGRESSOR_BUY: "SIDE_BUY", AGGRESSOR_SELL: "SIDE_SELL", AGGRESSOR_NONE: "SIDE_UNSPECIFIED"}
# A Side enum number the contract does not define (proto3 keeps it as an int) reaches a Tick as
# UNKNOWN_SIDE + the number: outside every valid aggressor, so validation rejects the tick, and the
# number sent can still be named (`unknown_side_number`). Plain -1 would read as a sell.
UNKNOWN_SIDE = 1 << 40


def unknown_side_number(aggressor: int) -> int | None:
    """The wire number of an undefined Side carried in `aggressor` (see UNKNOWN_SIDE), else None."""
    number = aggressor - UNKNOWN_SIDE
    return number if -(2**31) <= number < 2**31 else None


@dataclass(frozen=True, slots=True)
class Tick:
    instrument: str
    timestamp_ns: int
    last_price: float
    last_size: float
    bid_price: tuple[float, ...]
    bid_size: tuple[float, ...]
    ask_price: tuple[float, ...]
    ask_size: tuple[float, ...]
    sequence: int | None = None
    aggressor: int = AGGRESSOR_NONE  # +1 buy, -1 sell, 0 unknown or no trade


@dataclass
class TickFrame:
    """Ticks as columns. Row order is arrival order (time order per instrument)."""

    instrument: np.ndarray  # object array of str
    timestamp_ns: np.ndarray  # int64
    last_price: np.ndarray  # float64
    last_size: np.ndarray  # float64
    bid_price: np.ndarray  # float64 (n, MAX_LEVELS), NaN = absent level
    bid_size: np.ndarray
    ask_price: np.ndarray
    ask_size: np.ndarray
    sequence: np.ndarray  # int64, -1 = none
    aggressor: np.ndarray = field(default=None)  # int8: +1 buy, -1 sell, 0 unknown or no trade (default: zeros)

    def __post_init__(self) -> None:
        if self.aggressor is None:
            self.aggressor = np.zeros(len(self.timestamp_ns), dtype=np.int8)

    def __len__(self) -> int:
        return len(self.timestamp_ns)

    def take(self, index: np.ndarray | slice) -> TickFrame:
        return TickFrame(**{name: getattr(self, name)[index] for name in _COLUMNS})

    def tick(self, i: int) -> Tick:
        """Row i as a `Tick` (levels up to the first absent one)."""
        bp, bs, ap, asz = self.bid_price[i], self.bid_size[i], self.ask_price[i], self.ask_size[i]
        nb = _depth(bp)
        na = _depth(ap)
        seq = int(self.sequence[i])
        return Tick(
            instrument=str(self.instrument[i]),
            timestamp_ns=int(self.timestamp_ns[i]),
            last_price=float(self.last_price[i]),
            last_size=float(self.last_size[i]),
            bid_price=tuple(bp[:nb].tolist()),
            bid_size=tuple(bs[:nb].tolist()),
            ask_price=tuple(ap[:na].tolist()),
            ask_size=tuple(asz[:na].tolist()),
            sequence=None if seq < 0 else seq,
            aggressor=int(self.aggressor[i]),
        )

    def ticks(self):
        """Every row as a `Tick`, as `tick(i)` gives it: the columns become Python lists once and
        the depths are found vectorised (several times faster than row by row)."""

        def depth(prices: np.ndarray) -> list[int]:
            absent = np.isnan(prices)
            return np.where(absent.any(axis=1), absent.argmax(axis=1), prices.shape[1]).tolist()

        columns = (
            [str(name) for name in self.instrument.tolist()],
            self.timestamp_ns.tolist(),
            self.last_price.tolist(),
            self.last_size.tolist(),
            self.bid_price.tolist(),
            self.bid_size.tolist(),
            self.ask_price.tolist(),
            self.ask_size.tolist(),
            self.sequence.tolist(),
            self.aggressor.tolist(),
            depth(self.bid_price),
            depth(self.ask_price),
        )
        for name, ts, lp, ls, bp, bs, ap, asz, seq, side, b, a in zip(*columns):
            yield Tick(
                name,
                ts,
                lp,
                ls,
                tuple(bp[:b]),
                tuple(bs[:b]),
                tuple(ap[:a]),
                tuple(asz[:a]),
                None if seq < 0 else seq,
                side,
            )

    def instruments(self) -> list[str]:
        return sorted(set(self.instrument.tolist()))

    def fingerprint(self) -> str:
        """sha256 over every column: identifies the training data in a manifest. The aggressor
        column counts only when some tick carries a side, so frames without one (every file
        written before the column existed) keep the fingerprint they had."""
        h = hashlib.sha256()
        h.update("\n".join(self.instrument.tolist()).encode())
        for name in _COLUMNS[1:]:
            if name == "aggressor" and not self.aggressor.any():
                continue
            h.update(np.ascontiguousarray(getattr(self, name)).tobytes())
        return h.hexdigest()

    @staticmethod
    def from_ticks(ticks: list[Tick]) -> TickFrame:
        n = len(ticks)
        frame = TickFrame.empty(n)
        for i, t in enumerate(ticks):
            frame.instrument[i] = t.instrument
            frame.timestamp_ns[i] = t.timestamp_ns
            frame.last_price[i] = t.last_price
            frame.last_size[i] = t.last_size
            frame.bid_price[i, : len(t.bid_price)] = t.bid_price
            frame.bid_size[i, : len(t.bid_size)] = t.bid_size
            frame.ask_price[i, : len(t.ask_price)] = t.ask_price
            frame.ask_size[i, : len(t.ask_size)] = t.ask_size
            frame.sequence[i] = -1 if t.sequence is None else t.sequence
            frame.aggressor[i] = t.aggressor
        return frame

    @staticmethod
    def empty(n: int) -> TickFrame:
        levels = lambda: np.full((n, MAX_LEVELS), np.nan)  # noqa: E731
        return TickFrame(
            instrument=np.empty(n, dtype=object),
            timestamp_ns=np.zeros(n, dtype=np.int64),
            last_price=np.zeros(n),
            last_size=np.zeros(n),
            bid_price=levels(),
            bid_size=levels(),
            ask_price=levels(),
            ask_size=levels(),
            sequence=np.full(n, -1, dtype=np.int64),
            aggressor=np.zeros(n, dtype=np.int8),
        )

    @staticmethod
    def concat(frames: list[TickFrame]) -> TickFrame:
        return TickFrame(**{name: np.concatenate([getattr(f, name) for f in frames]) for name in _COLUMNS})


_COLUMNS = (
    "instrument",
    "timestamp_ns",
    "last_price",
    "last_size",
    "bid_price",
    "bid_size",
    "ask_price",
    "ask_size",
    "sequence",
    "aggressor",
)


def _depth(prices: np.ndarray) -> int:
    absent = np.flatnonzero(np.isnan(prices))
    return int(absent[0]) if len(absent) else len(prices)


# --- Parquet: the canonical tick file -------------------------------------------------
# Columns: instrument, timestamp_ns, sequence, last_price, last_size, aggressor (int8: +1 buy,
# -1 sell, 0 none; a file written before it existed has none: read as 0),
# bid_price_1..10, bid_size_1..10, ask_price_1..10, ask_size_1..10 (null = no level).


METADATA_KEY = b"tickserve"  # Parquet key-value metadata: JSON written by `tickserve import`


def write_parquet(frame: TickFrame, path: str | Path, metadata: dict | None = None) -> None:
    """`metadata`: JSON-able, stored under the file's "tickserve" key (see `read_metadata`)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, object] = {
        "instrument": pa.array(frame.instrument.tolist(), type=pa.string()),
        "timestamp_ns": frame.timestamp_ns,
        "sequence": frame.sequence,
        "last_price": frame.last_price,
        "last_size": frame.last_size,
        "aggressor": pa.array(np.asarray(frame.aggressor, dtype=np.int8), type=pa.int8()),
    }
    for side in ("bid_price", "bid_size", "ask_price", "ask_size"):
        values = getattr(frame, side)
        for level in range(MAX_LEVELS):
            col = values[:, level]
            columns[f"{side}_{level + 1}"] = pa.array(col, mask=np.isnan(col))
    table = pa.table(columns)
    if metadata is not None:
        table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, str(path))


def read_metadata(path: str | Path) -> dict:
    """What `write_parquet(..., metadata=...)` stored (instrument settings of an imported file); {} if none."""
    import json

    import pyarrow.parquet as pq

    stored = (pq.read_schema(str(path)).metadata or {}).get(METADATA_KEY)
    return json.loads(stored) if stored else {}


def read_parquet(path: str | Path) -> TickFrame:
    import pyarrow.parquet as pq

    table = pq.read_table(str(path))
    n = table.num_rows
    frame = TickFrame.empty(n)
    frame.instrument = np.array(table.column("instrument").to_pylist(), dtype=object)
    frame.timestamp_ns = table.column("timestamp_ns").to_numpy().astype(np.int64)
    if "sequence" in table.column_names:
        frame.sequence = table.column("sequence").fill_null(-1).to_numpy().astype(np.int64)
    frame.last_price = table.column("last_price").to_numpy().astype(np.float64)
    frame.last_size = table.column("last_size").to_numpy().astype(np.float64)
    if "aggressor" in table.column_names:
        frame.aggressor = table.column("aggressor").fill_null(0).to_numpy().astype(np.int8)
    for side in ("bid_price", "bid_size", "ask_price", "ask_size"):
        values = getattr(frame, side)
        for level in range(MAX_LEVELS):
            name = f"{side}_{level + 1}"
            if name in table.column_names:
                col = table.column(name).to_numpy(zero_copy_only=False)
                values[:, level] = np.asarray(col, dtype=np.float64)
    return frame
