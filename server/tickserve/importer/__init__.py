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

Modules
-------
`settings` (column names, units, `ImportSettings`, the [import] table and
--map items), `columns` (reading the files' columns), `checks` (the bad rows
and `validate_tick`), `merge` (one tick per event), `metadata` (what the tick
file records), `report` (the drop reasons and counts), `pipeline`
(`import_ticks`, `run_import`: all of it in order). Every public name is
importable from `tickserve.importer`.
"""

from __future__ import annotations

from .columns import column_names, expand_mapping, read_columns
from .merge import MERGE_RULE, merge_events
from .metadata import METADATA_FORMAT, import_metadata, instrument_settings
from .pipeline import import_ticks, run_import
from .report import BOOK_REASONS, EXAMPLES, TRADE_REASONS, FileCounts, ImportReport
from .settings import (
    AGGRESSOR,
    BUYER_IS_MAKER,
    CONFIG_KEYS,
    SIDE_VALUES,
    SIDES,
    TIMESTAMP,
    TRADE_COLUMNS,
    UNIT_NS,
    ImportSettings,
    config_table,
    parse_mapping,
)

__all__ = [
    "AGGRESSOR",
    "BOOK_REASONS",
    "BUYER_IS_MAKER",
    "CONFIG_KEYS",
    "EXAMPLES",
    "FileCounts",
    "ImportReport",
    "ImportSettings",
    "MERGE_RULE",
    "METADATA_FORMAT",
    "SIDES",
    "SIDE_VALUES",
    "TIMESTAMP",
    "TRADE_COLUMNS",
    "TRADE_REASONS",
    "UNIT_NS",
    "column_names",
    "config_table",
    "expand_mapping",
    "import_metadata",
    "import_ticks",
    "instrument_settings",
    "merge_events",
    "parse_mapping",
    "read_columns",
    "run_import",
]
