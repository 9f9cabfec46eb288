"""What an import reports: the bad-row reasons, the counts per file (`FileCounts`) and the whole
`ImportReport` (written into the tick file's metadata and printed by `tickserve import`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

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
