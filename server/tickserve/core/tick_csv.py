"""The wide CSV tick layout: one tick per row, the book's levels side by side.

    instrument,timestamp_ns,last_price,last_size,
    bid_px_1,bid_qty_1,...,bid_px_N,bid_qty_N,ask_px_1,ask_qty_1,...,ask_px_N,ask_qty_N,sequence,aggressor

The level columns are named as `tickserve import` names its input (`bid_px_n, bid_qty_n, ask_px_n,
ask_qty_n`, level 1 = best), so one file serves every reader in this repository: the Node client
(clients/node/src/csv.js), the dashboard's tick-file reader, and `tickserve import` (which takes
the book columns and `timestamp_ns` and ignores the rest). `level_column` is the one place that
spells these names; the readers on the Python side use it.

Written with the standard library only (the core does not depend on pandas). Floats are written
with `repr`, the shortest text that reads back as the same double (nan and inf as `nan`, `inf`),
so a reader parses back the very values Python sends. An absent level, size or sequence is an
empty cell, and so is an unknown aggressor (else `buy` or `sell`). Each of the four level columns
is written up to its own length, so a tick whose prices and sizes differ in number (invalid: the
server rejects it, naming the field) reaches the reader as it is.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from .ticks import MAX_LEVELS, Tick, TickFrame

# frame attribute -> the name its columns carry in the CSV (`<name>_<level>`)
LEVEL_NAMES = {"bid_price": "bid_px", "bid_size": "bid_qty", "ask_price": "ask_px", "ask_size": "ask_qty"}
SIDE_CELLS = {1: "buy", -1: "sell", 0: ""}  # Tick.aggressor -> the aggressor cell


def level_column(field: str, level: int) -> str:
    """The CSV column of a book field (`bid_price`, `bid_size`, `ask_price`, `ask_size`) at `level` (1 = best)."""
    return f"{LEVEL_NAMES[field]}_{level}"


def csv_header(levels: int = MAX_LEVELS) -> list[str]:
    bids = [level_column(f, k) for k in range(1, levels + 1) for f in ("bid_price", "bid_size")]
    asks = [level_column(f, k) for k in range(1, levels + 1) for f in ("ask_price", "ask_size")]
    return ["instrument", "timestamp_ns", "last_price", "last_size", *bids, *asks, "sequence", "aggressor"]


def _level_cells(prices, sizes, levels: int) -> list[str]:
    row = []
    for k in range(levels):
        row.append(repr(float(prices[k])) if k < len(prices) else "")
        row.append(repr(float(sizes[k])) if k < len(sizes) else "")
    return row


def write_ticks_csv(ticks: Iterable[Tick], path: str | Path, levels: int = MAX_LEVELS) -> Path:
    """`Tick`s (e.g. `TickFrame.ticks()`) as a wide CSV file with `levels` levels per side."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(csv_header(levels))
        for t in ticks:
            if max(len(t.bid_price), len(t.bid_size), len(t.ask_price), len(t.ask_size)) > levels:
                raise ValueError(f"tick {t.instrument} {t.timestamp_ns}: more than {levels} levels")
            if t.aggressor not in SIDE_CELLS:
                raise ValueError(f"tick {t.instrument} {t.timestamp_ns}: aggressor {t.aggressor} has no CSV cell")
            writer.writerow(
                [t.instrument, str(t.timestamp_ns), repr(float(t.last_price)), repr(float(t.last_size))]
                + _level_cells(t.bid_price, t.bid_size, levels)
                + _level_cells(t.ask_price, t.ask_size, levels)
                + ["" if t.sequence is None else str(t.sequence), SIDE_CELLS[t.aggressor]]
            )
    return path


def write_csv(frame: TickFrame, path: str | Path, levels: int = MAX_LEVELS) -> Path:
    """A `TickFrame` as a wide CSV file (see the module docstring)."""
    return write_ticks_csv(frame.ticks(), path, levels)
