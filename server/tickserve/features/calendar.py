"""Trading-session calendars: when an instrument's market is open.

A calendar is plain data (time zone, open and close minute, trading weekdays)
so a model's manifest can store exactly the calendar it was trained with.
Holidays are not modelled. Named calendars come from plugins through the
`tickserve_session_calendar` hook (built-ins: "us-equities", "24x7").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

MINUTE_NS = 60_000_000_000
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS


@dataclass(frozen=True)
class SessionCalendar:
    name: str
    timezone: str  # IANA name, e.g. "America/New_York"
    open_minute: int  # minutes after local midnight
    close_minute: int  # exclusive; 1440 = midnight
    weekdays: tuple[int, ...]  # 0 = Monday

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # fail early on a bad zone name
        if not 0 <= self.open_minute < self.close_minute <= 1440:
            raise ValueError(f"calendar {self.name!r}: need 0 <= open < close <= 1440 minutes")

    @property
    def open_ns(self) -> int:
        return self.open_minute * MINUTE_NS

    @property
    def close_ns(self) -> int:
        return self.close_minute * MINUTE_NS

    def utc_offset_ns(self, hour_index: int) -> int:
        """UTC offset in force during the UTC hour `hour_index` (= timestamp_ns // HOUR_NS).

        Taken as constant within a UTC hour: true for every zone whose DST
        changes happen on the hour, which covers the exchanges we know.
        """
        return _offset_ns(self.timezone, hour_index)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "timezone": self.timezone,
            "open_minute": self.open_minute,
            "close_minute": self.close_minute,
            "weekdays": list(self.weekdays),
        }

    @staticmethod
    def from_dict(d: dict) -> SessionCalendar:
        return SessionCalendar(
            name=str(d["name"]),
            timezone=str(d["timezone"]),
            open_minute=int(d["open_minute"]),
            close_minute=int(d["close_minute"]),
            weekdays=tuple(int(x) for x in d["weekdays"]),
        )


@lru_cache(maxsize=65536)
def _offset_ns(zone: str, hour_index: int) -> int:
    instant = datetime.fromtimestamp(hour_index * 3600, tz=UTC)
    offset = instant.astimezone(ZoneInfo(zone)).utcoffset()
    return int(offset.total_seconds()) * 1_000_000_000


US_EQUITIES = SessionCalendar("us-equities", "America/New_York", 9 * 60 + 30, 16 * 60, (0, 1, 2, 3, 4))
ALWAYS_OPEN = SessionCalendar("24x7", "UTC", 0, 24 * 60, (0, 1, 2, 3, 4, 5, 6))
