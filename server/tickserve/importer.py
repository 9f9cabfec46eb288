"""`tickserve import`: order-book files in the wide layout -> the canonical Parquet tick file.

Input
-----
A book file with one row per book update: a timestamp column and, per level
n = 1..N, `bid_px_n, bid_qty_n, ask_px_n, ask_qty_n` (level 1 = best price);
CSV, compressed CSV (.gz, .bz2: by extension) or Parquet. Optionally a trades
file: timestamp, `price`, `qty`, and optionally the trade's aggressor side (the
taker) in a column `aggressor` (`buy`/`sell`, also `b`/`s`, `1`/`-1`, any case)
or `buyer_is_maker` (true: the seller took the bid, a SELL aggressor; false: a
BUY; `True`/`False`/`true`/`false`/`1`/`0`); when the file has both, `aggressor`
is used, unless only `buyer_is_maker` is mapped. An empty side cell is an unknown
side (0); a trade whose side is anything else is dropped (`invalid_aggressor`).
Without either column every trade's side is unknown. Other columns are ignored.
Other column names are mapped to these canonical names with
`--map CANONICAL=COLUMN` (both files; `{n}` stands for the level:
`--map "bid_px_{n}=bp{n}"`) or `--trades-map` (trades file only, e.g.
`--trades-map aggressor=side`), or the `[import]` table of the config file
(`map = {timestamp_ns = "local_ts_ns"}`). A side column mapped to a column the
file does not have is an error, as for the other columns.
The canonical timestamp column is `timestamp_ns`; `--timestamp-unit` scales
ns, us, ms or s to ns. N is every level present in the book file, at most 10
(`--levels` takes fewer).

Merging trades: one tick per event
----------------------------------
Every kept book row and every kept trade is one tick, in time order; at equal
timestamps trades come before book updates (the exchange publishes a trade
before the book change it causes), each file in its own row order.

- a trade tick carries the current book (the last book row before it in that
  order), last_price / last_size = the trade's price and quantity, and the
  trade's own aggressor side (+1 buy, -1 sell, 0 unknown);
- a book tick carries last_price = the last trade's price carried forward,
  last_size = 0 and aggressor 0 (no trade on it, so no side).

So the rolling VWAP counts each trade exactly once, with its own quantity,
exactly as a live stream sending one tick per event would. Before the first
trade, last_price is 0 and last_size 0: the tick contract's "no trade yet"
(the feature stage then uses the mid). Trades before the first book row make
no tick (there is no book to carry) but their price is carried forward; they
are counted as `trades_before_first_book`.

Bad rows
--------
A bad row is dropped, never fixed, and counted under the first reason that
applies, in this order:

- book: `missing_timestamp`, `unparseable_value` (text where a number belongs),
  `missing_level` (level 1 absent on a side, a level absent below a present one,
  or a price without its size or a size without its price; a book with fewer
  levels at the end is fine), `non_finite_value` (NaN, inf), `invalid_value`
  (price <= 0 or >= 1e12, size < 0 or >= 1e15, timestamp <= 0 or after 2200),
  `unordered_levels` (bids not strictly descending or asks not strictly
  ascending), `crossed_book` (best bid > best ask; a locked book is kept, as
  the server accepts it), `non_monotonic_time` (earlier than a kept row before it);
- trades: `missing_timestamp`, `unparseable_value`, `missing_value`,
  `non_finite_value`, `invalid_value` (price <= 0 or >= 1e12, quantity <= 0 or
  >= 1e15, timestamp out of range), `invalid_aggressor` (a side cell that is
  none of the values above), `non_monotonic_time`.

Every output tick is then checked with `validation.validate_tick`, the
server's own rule; a tick failing it would also be dropped and counted (with
the checks above none does). Prices off the tick-size grid are only counted:
a hint that --tick-size is wrong.

Output
------
The canonical Parquet tick file (`ticks.write_parquet`) with sequence numbers
1..n, and in its metadata (`ticks.read_metadata`) the instrument settings (tick
size, calendar) and this import's counts. `tickserve train --data-file` reads
the settings from there by default.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InvalidArgument
from .features.calendar import SessionCalendar
from .ticks import MAX_LEVELS, Tick, TickFrame, write_parquet
from .validation import MAX_PRICE, MAX_SIZE, MAX_TIMESTAMP_NS, validate_tick

METADATA_FORMAT = 1
TIMESTAMP = "timestamp_ns"
SIDES = ("bid_px", "bid_qty", "ask_px", "ask_qty")
TRADE_COLUMNS = ("price", "qty")
# The trade's aggressor side, from the first of these columns the trades file has (canonical names,
# mappable with --trades-map): cell text (stripped, lower case) -> +1 buy, -1 sell.
AGGRESSOR = "aggressor"
BUYER_IS_MAKER = "buyer_is_maker"
SIDE_VALUES = {
    AGGRESSOR: {"buy": 1, "b": 1, "1": 1, "+1": 1, "sell": -1, "s": -1, "-1": -1},
    # the buyer was the maker: a seller hit the bid
    BUYER_IS_MAKER: {"true": -1, "1": -1, "false": 1, "0": 1},
}
UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
BOOK_REASONS = (
    "missing_timestamp",
    "unparseable_value",
    "missing_level",
    "non_finite_value",
    "invalid_value",
    "unordered_levels",
    "crossed_book",
    "non_monotonic_time",
)
TRADE_REASONS = (
    "missing_timestamp",
    "unparseable_value",
    "missing_value",
    "non_finite_value",
    "invalid_value",
    "invalid_aggressor",
    "non_monotonic_time",
)
EXAMPLES = 5  # row numbers kept per reason
MERGE_RULE = (
    "one tick per event in time order, trades before book updates at equal timestamps; a trade tick carries the "
    "current book, last_price/last_size = the trade and its aggressor side; a book tick carries the last trade price, "
    "last_size 0 and no side; last_price 0 before the first trade"
)


@dataclass
class ImportSettings:
    instrument: str
    tick_size: float | None  # None: inferred from the imported prices (tick_size.infer_tick_size)
    calendar: SessionCalendar
    mapping: dict[str, str] = field(default_factory=dict)  # canonical -> column, both files
    trades_mapping: dict[str, str] = field(default_factory=dict)  # canonical -> column, trades file only
    timestamp_unit: str = "ns"
    levels: int | None = None  # at most this many levels (default: all present, up to MAX_LEVELS)

    def __post_init__(self) -> None:
        if not self.instrument or not self.instrument.isprintable() or len(self.instrument) > 128:
            raise ValueError(
                f"instrument: a printable name of 1 to 128 characters is required, got {self.instrument!r}"
            )
        if self.tick_size is not None and not (
            isinstance(self.tick_size, (int, float)) and np.isfinite(self.tick_size) and self.tick_size > 0
        ):
            raise ValueError(f"tick size must be > 0 (or None: inferred from the prices), got {self.tick_size!r}")
        if self.timestamp_unit not in UNIT_NS:
            raise ValueError(f"timestamp unit must be one of {', '.join(UNIT_NS)}, got {self.timestamp_unit!r}")
        if self.levels is not None and not 1 <= self.levels <= MAX_LEVELS:
            raise ValueError(f"levels must be 1 to {MAX_LEVELS}, got {self.levels}")


@dataclass
class FileCounts:
    path: str = ""
    rows: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)  # reason -> first data-row numbers (1-based)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "rows": self.rows,
            "kept": self.kept,
            "dropped": dict(self.dropped),
            "examples": {k: list(v) for k, v in self.examples.items()},
        }


@dataclass
class ImportReport:
    book: FileCounts = field(default_factory=FileCounts)
    trades: FileCounts | None = None
    levels: int = 0
    trades_before_first_book: int = 0
    aggressor_column: str = ""  # the trades file's column the sides came from ("" = none)
    trade_sides: dict = field(default_factory=dict)  # over the trade ticks: buy, sell, unknown
    ticks: int = 0
    book_ticks: int = 0
    trade_ticks: int = 0
    failed_validation: Counter = field(default_factory=Counter)
    off_grid_book_rows: int = 0
    off_grid_trades: int = 0
    tick_size_inferred: bool = False
    first_timestamp_ns: int = 0
    last_timestamp_ns: int = 0

    @property
    def dropped(self) -> int:
        return (
            sum(self.book.dropped.values())
            + (sum(self.trades.dropped.values()) if self.trades else 0)
            + sum(self.failed_validation.values())
        )

    def to_dict(self) -> dict:
        return {
            "book": self.book.to_dict(),
            "trades": self.trades.to_dict() if self.trades else None,
            "levels": self.levels,
            "trades_before_first_book": self.trades_before_first_book,
            "aggressor_column": self.aggressor_column,
            "trade_sides": dict(self.trade_sides),
            "ticks": self.ticks,
            "book_ticks": self.book_ticks,
            "trade_ticks": self.trade_ticks,
            "failed_validation": dict(self.failed_validation),
            "off_grid_book_rows": self.off_grid_book_rows,
            "off_grid_trades": self.off_grid_trades,
            "first_timestamp_ns": self.first_timestamp_ns,
            "last_timestamp_ns": self.last_timestamp_ns,
        }

    def lines(self) -> list[str]:
        out = []
        for title, counts, reasons in (("book", self.book, BOOK_REASONS), ("trades", self.trades, TRADE_REASONS)):
            if counts is None:
                continue
            out.append(
                f"{title} {counts.path}: {counts.rows} rows, {counts.kept} kept, {counts.rows - counts.kept} dropped"
            )
            for reason in reasons:
                n = counts.dropped.get(reason, 0)
                if n:
                    rows = ", ".join(map(str, counts.examples.get(reason, [])))
                    out.append(f"  dropped {n:>8d}  {reason:20s} (data rows {rows}{', ...' if n > EXAMPLES else ''})")
        if self.trades is not None:
            out.append(
                f"trades before the first book row (no tick; price carried forward): {self.trades_before_first_book}"
            )
            sides = self.trade_sides
            if self.aggressor_column:
                out.append(
                    f"aggressor side from column {self.aggressor_column!r}: {sides.get('buy', 0)} buy, "
                    f"{sides.get('sell', 0)} sell, {sides.get('unknown', 0)} unknown"
                )
            else:
                out.append("no aggressor column (aggressor or buyer_is_maker): every trade's side is unknown (0)")
        for reason, n in sorted(self.failed_validation.items()):
            out.append(f"  dropped {n:>8d}  failed validate_tick: {reason}")
        if self.off_grid_book_rows or self.off_grid_trades:
            out.append(
                f"warning: {self.off_grid_book_rows} book rows and {self.off_grid_trades} trades have prices "
                "off the tick-size grid: is the tick size right?"
            )
        out.append(
            f"{self.ticks} ticks ({self.book_ticks} book updates, {self.trade_ticks} trades), "
            f"{self.levels} levels per side"
        )
        return out


# --- reading ------------------------------------------------------------------------------


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def column_names(path: Path) -> list[str]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if _is_parquet(path):
        import pyarrow.parquet as pq

        return list(pq.read_schema(str(path)).names)
    import pyarrow.csv as pacsv

    with pacsv.open_csv(str(path)) as reader:
        return list(reader.schema.names)


def expand_mapping(mapping: dict[str, str]) -> dict[str, str]:
    """`{n}` in a key (and its value) stands for the level 1..MAX_LEVELS."""
    out = {}
    for key, value in mapping.items():
        if "{n}" in key:
            for n in range(1, MAX_LEVELS + 1):
                out[key.replace("{n}", str(n))] = value.replace("{n}", str(n))
        else:
            out[key] = value
    return out


@dataclass
class _Column:
    values: np.ndarray  # float64 or int64; 0 / NaN where null or unparseable
    null: np.ndarray  # bool
    unparseable: np.ndarray  # bool


def _lenient(strings: list, integer: bool) -> _Column:
    n = len(strings)
    values = np.zeros(n, dtype=np.int64) if integer else np.full(n, np.nan)
    null = np.zeros(n, dtype=bool)
    bad = np.zeros(n, dtype=bool)
    for i, s in enumerate(strings):
        if s is None or (isinstance(s, str) and not s.strip()):
            null[i] = True
            continue
        try:
            if integer:
                if isinstance(s, float) and not s.is_integer():
                    raise ValueError("not an integer: the fraction would be cut off")
                values[i] = int(s)
            else:
                values[i] = float(s)
        except (TypeError, ValueError, OverflowError):
            bad[i] = True
    return _Column(values, null, bad)


def _from_arrow(col, integer: bool) -> _Column:
    import pyarrow as pa
    import pyarrow.compute as pc

    col = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    if pa.types.is_timestamp(col.type) and integer:
        unit = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}[col.type.unit]
        col = pc.multiply(pc.cast(col, pa.int64()), unit)  # to ns: the unit flag then applies as ns
    target = pa.int64() if integer else pa.float64()
    null = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    try:
        cast = pc.cast(col, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _lenient(col.to_pylist(), integer)
    fill = 0 if integer else np.nan
    values = np.asarray(cast.fill_null(fill).to_numpy(zero_copy_only=False), dtype=np.int64 if integer else np.float64)
    return _Column(values, null, np.zeros(len(values), dtype=bool))


def _side_column(col, values: dict[str, int]) -> _Column:
    """A side column as +1 / -1 (0 where empty); cells that are none of `values` are `unparseable`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    text = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(col, pa.string())))
    codes = text.dictionary_encode()  # each distinct cell looked up once
    table = [values.get(v) for v in codes.dictionary.to_pylist()]
    empty = [v == "" for v in codes.dictionary.to_pylist()]
    index = np.asarray(codes.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    null = index < 0
    known = np.array([t is not None for t in table] + [True], dtype=bool)  # [-1]: null
    side = np.array([t or 0 for t in table] + [0], dtype=np.int8)
    null |= np.array(empty + [True], dtype=bool)[index]
    return _Column(side[index], null, ~known[index] & ~null)


def read_columns(
    path: Path, wanted: dict[str, str], integer: set[str], sides: dict[str, dict[str, int]] | None = None
) -> tuple[dict[str, _Column], int]:
    """{canonical: column} read from `path` (`wanted`: canonical -> column name in the file); row count.
    `sides`: canonical -> cell text -> side, for the side columns read as text (`_side_column`)."""
    import pyarrow as pa

    sides = sides or {}
    sources = list(dict.fromkeys(wanted.values()))
    int_sources = {wanted[c] for c in integer}
    text_sources = {wanted[c] for c in sides}
    if _is_parquet(path):
        import pyarrow.parquet as pq

        table = pq.read_table(str(path), columns=sources)
    else:
        import pyarrow.csv as pacsv

        def read(types: dict) -> pa.Table:
            return pacsv.read_csv(
                str(path),
                convert_options=pacsv.ConvertOptions(
                    include_columns=sources,
                    column_types=types,
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                ),
            )

        def kind(s: str):
            return pa.string() if s in text_sources else pa.int64() if s in int_sources else pa.float64()

        try:
            table = read({s: kind(s) for s in sources})
        except pa.ArrowInvalid:  # text where a number belongs: read as text, count those rows
            table = read({s: pa.string() for s in sources})
    out = {}
    for c, s in wanted.items():
        col = table.column(s)
        out[c] = _side_column(col, sides[c]) if c in sides else _from_arrow(col, s in int_sources)
    return out, table.num_rows


def _missing_column(path: Path, canonical: str, source: str, names: list[str], flag: str) -> ValueError:
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    how = f"map it with {flag} {canonical}=COLUMN" if source == canonical else f"{flag} maps it to {source!r}"
    return ValueError(f"{path}: no column {source!r} for {canonical} ({how}); the file has: {shown}")


# --- checks -----------------------------------------------------------------------------


class _Reasons:
    """The first reason that applies, per row; rows are marked in the order of the reasons."""

    def __init__(self, n: int, reasons: tuple[str, ...]) -> None:
        self.reasons = reasons
        self.code = np.zeros(n, dtype=np.int16)  # 0 = good, k = reasons[k - 1]

    def mark(self, reason: str, mask: np.ndarray) -> None:
        k = self.reasons.index(reason) + 1
        self.code[(self.code == 0) & mask] = k

    @property
    def good(self) -> np.ndarray:
        return self.code == 0

    def mark_time_order(self, ts: np.ndarray) -> None:
        """Drop rows earlier than a kept row before them (a dropped row is below the running
        maximum, so it never raises it: the maximum over all good rows so far is the same)."""
        good = self.good
        running = np.maximum.accumulate(np.where(good, ts, np.iinfo(np.int64).min))
        before = np.concatenate([[np.iinfo(np.int64).min], running[:-1]])
        self.mark("non_monotonic_time", good & (ts < before))

    def counts(self, into: FileCounts) -> None:
        into.rows = len(self.code)
        into.kept = int(self.good.sum())
        for k, reason in enumerate(self.reasons, start=1):
            rows = np.flatnonzero(self.code == k)
            if len(rows):
                into.dropped[reason] = len(rows)
                into.examples[reason] = (rows[:EXAMPLES] + 1).tolist()


def _timestamps(col: _Column, unit: str, reasons: _Reasons) -> np.ndarray:
    reasons.mark("missing_timestamp", col.null)
    factor = UNIT_NS[unit]
    limit = MAX_TIMESTAMP_NS // factor
    ts = col.values.astype(np.int64)
    out_of_range = (ts <= 0) | (ts >= limit)
    return np.where(out_of_range, 0, ts) * factor, out_of_range


def _book(columns: dict[str, _Column], n: int, levels: int, unit: str) -> tuple[dict, np.ndarray, _Reasons]:
    reasons = _Reasons(n, BOOK_REASONS)
    ts, ts_invalid = _timestamps(columns[TIMESTAMP], unit, reasons)
    reasons.mark("unparseable_value", np.logical_or.reduce([c.unparseable for c in columns.values()]))
    arrays = {}
    for side in SIDES:
        cols = [columns[f"{side}_{lvl}"] for lvl in range(1, levels + 1)]
        arrays[side] = (np.column_stack([c.values for c in cols]), np.column_stack([c.null for c in cols]))
    missing = np.zeros(n, dtype=bool)
    for px, qty in (("bid_px", "bid_qty"), ("ask_px", "ask_qty")):
        null_p, null_q = arrays[px][1], arrays[qty][1]
        present = ~null_p & ~null_q
        missing |= (null_p ^ null_q).any(axis=1) | ~present[:, 0] | (~present[:, :-1] & present[:, 1:]).any(axis=1)
    reasons.mark("missing_level", missing)
    non_finite = np.zeros(n, dtype=bool)
    invalid = ts_invalid.copy()
    with np.errstate(invalid="ignore"):
        for side in SIDES:
            values, null = arrays[side]
            non_finite |= (~np.isfinite(values) & ~null).any(axis=1)
            if side.endswith("_px"):
                invalid |= (~null & ((values <= 0) | (values >= MAX_PRICE))).any(axis=1)
            else:
                invalid |= (~null & ((values < 0) | (values >= MAX_SIZE))).any(axis=1)
        reasons.mark("non_finite_value", non_finite)
        reasons.mark("invalid_value", invalid)
        bids, bid_null = arrays["bid_px"]
        asks, ask_null = arrays["ask_px"]
        unordered = (~bid_null[:, 1:] & ~(bids[:, 1:] < bids[:, :-1])).any(axis=1)
        unordered |= (~ask_null[:, 1:] & ~(asks[:, 1:] > asks[:, :-1])).any(axis=1)
        reasons.mark("unordered_levels", unordered)
        reasons.mark("crossed_book", bids[:, 0] > asks[:, 0])
    reasons.mark_time_order(ts)
    # absent levels as NaN, as in TickFrame
    book = {side: np.where(arrays[side][1], np.nan, arrays[side][0]) for side in SIDES}
    return book, ts, reasons


def _trades(columns: dict[str, _Column], n: int, unit: str):
    """(timestamps, prices, quantities, sides (+1/-1/0), reasons) of the trade rows."""
    reasons = _Reasons(n, TRADE_REASONS)
    ts, ts_invalid = _timestamps(columns[TIMESTAMP], unit, reasons)
    price, qty = columns["price"], columns["qty"]
    reasons.mark("unparseable_value", price.unparseable | qty.unparseable | columns[TIMESTAMP].unparseable)
    reasons.mark("missing_value", price.null | qty.null)
    p, q = price.values, qty.values
    reasons.mark("non_finite_value", ~np.isfinite(p) | ~np.isfinite(q))
    with np.errstate(invalid="ignore"):
        reasons.mark("invalid_value", ts_invalid | (p <= 0) | (p >= MAX_PRICE) | (q <= 0) | (q >= MAX_SIZE))
    side_column = next((columns[c] for c in SIDE_VALUES if c in columns), None)
    if side_column is None:
        side = np.zeros(n, dtype=np.int8)
    else:
        reasons.mark("invalid_aggressor", side_column.unparseable)
        side = side_column.values.astype(np.int8)
    reasons.mark_time_order(ts)
    return ts, p, q, side, reasons


def _side_source(path: Path, tmap: dict[str, str], names: list[str]) -> tuple[str, str] | None:
    """(canonical, column) of the trades file's side column: `aggressor` if the file has it, else
    `buyer_is_maker`, else None; but when only `buyer_is_maker` is mapped (--trades-map), that one.
    A column mapped explicitly must exist."""
    found = []
    for canonical in SIDE_VALUES:
        source = tmap.get(canonical, canonical)
        if source in names:
            found.append((canonical, source))
        elif canonical in tmap:
            raise _missing_column(path, canonical, source, names, "--trades-map")
    mapped = [f for f in found if f[0] in tmap]
    return (mapped or found or [None])[0]


def _off_grid(prices: np.ndarray, tick_size: float) -> np.ndarray:
    """Per row, whether any present price is off the grid by more than 1e-6 tick."""
    steps = prices / tick_size
    with np.errstate(invalid="ignore"):
        off = np.abs(steps - np.round(steps)) > 1e-6
    off &= ~np.isnan(prices)
    return off.any(axis=1) if off.ndim == 2 else off


# --- the import -------------------------------------------------------------------------


def import_ticks(book_path: Path, trades_path: Path | None, settings: ImportSettings) -> tuple[TickFrame, ImportReport]:
    """Read, check, merge: the ticks (canonical frame, sequence 1..n) and what happened."""
    book_path = Path(book_path)
    report = ImportReport()
    report.book.path = str(book_path)
    mapping = expand_mapping(settings.mapping)

    names = column_names(book_path)
    ts_source = mapping.get(TIMESTAMP, TIMESTAMP)
    if ts_source not in names:
        raise _missing_column(book_path, TIMESTAMP, ts_source, names, "--map")
    levels = 0
    for lvl in range(1, MAX_LEVELS + 1):
        if all(mapping.get(f"{side}_{lvl}", f"{side}_{lvl}") in names for side in SIDES):
            levels = lvl
        else:
            break
    if levels == 0:
        canonical = next(f"{s}_1" for s in SIDES if mapping.get(f"{s}_1", f"{s}_1") not in names)
        raise _missing_column(book_path, canonical, mapping.get(canonical, canonical), names, "--map")
    if settings.levels is not None:
        if settings.levels > levels:
            raise ValueError(f"{book_path}: --levels {settings.levels} but the file has {levels} complete levels")
        levels = settings.levels
    report.levels = levels
    wanted = {TIMESTAMP: ts_source}
    for lvl in range(1, levels + 1):
        for side in SIDES:
            wanted[f"{side}_{lvl}"] = mapping.get(f"{side}_{lvl}", f"{side}_{lvl}")
    columns, n_book = read_columns(book_path, wanted, {TIMESTAMP})
    book, book_ts, book_reasons = _book(columns, n_book, levels, settings.timestamp_unit)
    book_reasons.counts(report.book)
    keep = book_reasons.good
    book = {side: values[keep] for side, values in book.items()}
    book_ts = book_ts[keep]

    if trades_path is not None:
        trades_path = Path(trades_path)
        report.trades = FileCounts(path=str(trades_path))
        tmap = {**mapping, **expand_mapping(settings.trades_mapping)}
        tnames = column_names(trades_path)
        twanted = {}
        for canonical in (TIMESTAMP, *TRADE_COLUMNS):
            source = tmap.get(canonical, canonical)
            if source not in tnames:
                raise _missing_column(trades_path, canonical, source, tnames, "--trades-map")
            twanted[canonical] = source
        side = _side_source(trades_path, tmap, tnames)
        if side is not None:
            twanted[side[0]] = side[1]
            report.aggressor_column = side[1]
        tcolumns, n_trades = read_columns(
            trades_path, twanted, {TIMESTAMP}, {side[0]: SIDE_VALUES[side[0]]} if side else None
        )
        trade_ts, trade_px, trade_qty, trade_side, trade_reasons = _trades(tcolumns, n_trades, settings.timestamp_unit)
        trade_reasons.counts(report.trades)
        tkeep = trade_reasons.good
        trade_ts, trade_px, trade_qty, trade_side = (a[tkeep] for a in (trade_ts, trade_px, trade_qty, trade_side))
    else:
        trade_ts = np.zeros(0, dtype=np.int64)
        trade_px = trade_qty = np.zeros(0)
        trade_side = np.zeros(0, dtype=np.int8)
    if settings.tick_size is None:
        from .tick_size import infer_tick_size

        settings.tick_size = infer_tick_size(np.concatenate([book["bid_px"].ravel(), book["ask_px"].ravel(), trade_px]))
        report.tick_size_inferred = True
    report.off_grid_book_rows = int(
        (_off_grid(book["bid_px"], settings.tick_size) | _off_grid(book["ask_px"], settings.tick_size)).sum()
    )
    report.off_grid_trades = int(_off_grid(trade_px, settings.tick_size).sum())

    frame, report.trades_before_first_book = merge_events(
        settings.instrument, book_ts, book, trade_ts, trade_px, trade_qty, trade_side
    )
    frame = _validated(frame, report)
    frame.sequence = np.arange(1, len(frame) + 1, dtype=np.int64)
    report.ticks = len(frame)
    report.trade_ticks = int((frame.last_size > 0).sum())
    report.book_ticks = report.ticks - report.trade_ticks
    if trades_path is not None:
        traded = frame.aggressor[frame.last_size > 0]
        report.trade_sides = {
            "buy": int((traded == 1).sum()),
            "sell": int((traded == -1).sum()),
            "unknown": int((traded == 0).sum()),
        }
    if len(frame):
        report.first_timestamp_ns = int(frame.timestamp_ns[0])
        report.last_timestamp_ns = int(frame.timestamp_ns[-1])
    return frame, report


def merge_events(
    instrument: str,
    book_ts: np.ndarray,
    book: dict,
    trade_ts: np.ndarray,
    trade_px: np.ndarray,
    trade_qty: np.ndarray,
    trade_side: np.ndarray | None = None,
) -> tuple[TickFrame, int]:
    """One tick per event (see the module doc); the frame and the number of trades before the first book row.
    `trade_side`: each trade's aggressor (+1 / -1 / 0), default unknown.

    Both inputs must already be in time order (the bad-row checks guarantee it)."""
    nb, nt = len(book_ts), len(trade_ts)
    ts = np.concatenate([book_ts, trade_ts]).astype(np.int64)
    kind = np.concatenate([np.ones(nb, dtype=np.int8), np.zeros(nt, dtype=np.int8)])  # trades (0) first
    within = np.concatenate([np.arange(nb), np.arange(nt)])
    order = np.lexsort((within, kind, ts))
    ts, kind, within = ts[order], kind[order], within[order]
    is_book = kind == 1
    current_book = np.maximum.accumulate(np.where(is_book, within, -1)) if len(order) else np.zeros(0, np.int64)
    last_trade = np.maximum.accumulate(np.where(~is_book, within, -1)) if len(order) else np.zeros(0, np.int64)
    emitted = current_book >= 0
    before_book = int((~is_book & ~emitted).sum())
    ts, is_book, current_book, last_trade = ts[emitted], is_book[emitted], current_book[emitted], last_trade[emitted]
    n = len(ts)
    frame = TickFrame.empty(n)
    frame.instrument = np.full(n, instrument, dtype=object)
    frame.timestamp_ns = ts
    has_trade = last_trade >= 0
    frame.last_price = np.where(has_trade, trade_px[np.maximum(last_trade, 0)] if nt else 0.0, 0.0)
    frame.last_size = np.where(~is_book, trade_qty[np.maximum(last_trade, 0)] if nt else 0.0, 0.0)
    if trade_side is not None and nt:  # a trade tick's own side; a book tick has none
        frame.aggressor = np.where(~is_book, trade_side[np.maximum(last_trade, 0)], 0).astype(np.int8)
    for side, name in (
        ("bid_px", "bid_price"),
        ("bid_qty", "bid_size"),
        ("ask_px", "ask_price"),
        ("ask_qty", "ask_size"),
    ):
        values = book[side][current_book]
        getattr(frame, name)[:, : values.shape[1]] = values
    return frame, before_book


def _validated(frame: TickFrame, report: ImportReport) -> TickFrame:
    """Every tick through the server's own `validate_tick`; failures are dropped and counted."""
    failed = []
    for i, tick in enumerate(_ticks(frame)):
        try:
            validate_tick(tick)
        except InvalidArgument as exc:
            report.failed_validation[exc.field or "tick"] += 1
            failed.append(i)
    if not failed:
        return frame
    keep = np.ones(len(frame), dtype=bool)
    keep[failed] = False
    return frame.take(keep)


def _ticks(frame: TickFrame):
    """frame.ticks(), several times faster: columns to Python lists once, depths vectorised."""

    def depth(prices: np.ndarray) -> list[int]:
        absent = np.isnan(prices)
        return np.where(absent.any(axis=1), absent.argmax(axis=1), prices.shape[1]).tolist()

    nb, na = depth(frame.bid_price), depth(frame.ask_price)
    columns = (
        frame.instrument.tolist(),
        frame.timestamp_ns.tolist(),
        frame.last_price.tolist(),
        frame.last_size.tolist(),
        frame.bid_price.tolist(),
        frame.bid_size.tolist(),
        frame.ask_price.tolist(),
        frame.ask_size.tolist(),
        frame.sequence.tolist(),
        frame.aggressor.tolist(),
        nb,
        na,
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


def import_metadata(settings: ImportSettings, report: ImportReport) -> dict:
    return {
        "format": METADATA_FORMAT,
        "instruments": {
            settings.instrument: {"tick_size": settings.tick_size, "calendar": settings.calendar.to_dict()},
        },
        "merge": MERGE_RULE,
        "import": report.to_dict(),
    }


def run_import(book_path: Path, trades_path: Path | None, out: Path, settings: ImportSettings) -> ImportReport:
    frame, report = import_ticks(book_path, trades_path, settings)
    if len(frame) == 0:
        raise ValueError(f"{book_path}: no tick left to write ({report.dropped} rows dropped)")
    write_parquet(frame, out, metadata=import_metadata(settings, report))
    return report


# --- instrument settings recorded in a tick file ----------------------------------------------


def instrument_settings(metadata: dict) -> tuple[dict[str, float], SessionCalendar | None]:
    """(tick size per instrument, the calendar if every instrument has the same one) from `read_metadata`."""
    instruments = metadata.get("instruments") or {}
    sizes = {str(k): float(v["tick_size"]) for k, v in instruments.items() if "tick_size" in v}
    calendars = {SessionCalendar.from_dict(v["calendar"]) for v in instruments.values() if "calendar" in v}
    return sizes, (calendars.pop() if len(calendars) == 1 else None)


# --- the [import] config table ---------------------------------------------------------------

CONFIG_KEYS = {
    "book",
    "trades",
    "out",
    "instrument",
    "tick_size",
    "calendar",
    "timestamp_unit",
    "levels",
    "map",
    "trades_map",
}


def config_table(config: dict) -> dict:
    """The [import] table of the config file, checked."""
    section = config.get("import", {})
    if not isinstance(section, dict):
        raise ValueError("config [import]: expected a table")
    unknown = sorted(set(section) - CONFIG_KEYS)
    if unknown:
        raise ValueError(
            f"config [import]: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(CONFIG_KEYS))})"
        )
    for key in ("map", "trades_map"):
        value = section.get(key, {})
        if not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
            raise ValueError(f'config [import] {key}: expected a table of CANONICAL = "column"')
    return section


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_{}]*$")


def parse_mapping(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _KEY.match(key) or not value:
            raise ValueError(f"{flag}: expected CANONICAL=COLUMN (e.g. timestamp_ns=local_ts_ns), got {item!r}")
        out[key] = value
    return out
