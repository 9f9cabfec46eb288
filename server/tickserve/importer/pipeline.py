"""The import end to end: read the book (and trades) file, drop and count bad rows, merge into ticks,
validate, and write the canonical Parquet tick file with its metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.ticks import MAX_LEVELS, TickFrame, write_parquet
from .checks import _book, _off_grid, _trades, _validated
from .columns import _missing_column, _side_source, column_names, expand_mapping, read_columns
from .merge import merge_events
from .metadata import import_metadata
from .report import FileCounts, ImportReport
from .settings import SIDE_VALUES, SIDES, TIMESTAMP, TRADE_COLUMNS, ImportSettings


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
        from ..core.tick_size import infer_tick_size

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


def run_import(book_path: Path, trades_path: Path | None, out: Path, settings: ImportSettings) -> ImportReport:
    frame, report = import_ticks(book_path, trades_path, settings)
    if len(frame) == 0:
        raise ValueError(f"{book_path}: no tick left to write ({report.dropped} rows dropped)")
    write_parquet(frame, out, metadata=import_metadata(settings, report))
    return report
