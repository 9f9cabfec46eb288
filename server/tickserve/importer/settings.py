"""What an import is told: the canonical column names, the side values and time units, `ImportSettings`,
and the `[import]` config table and `--map` items that fill them in."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..core.ticks import MAX_LEVELS
from ..features.calendar import SessionCalendar

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
