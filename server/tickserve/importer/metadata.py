"""The instrument settings and import report an import writes into the tick file's metadata, and
reading the instrument settings back (`tickserve train --data-file`)."""

from __future__ import annotations

from ..features.calendar import SessionCalendar
from .merge import MERGE_RULE
from .report import ImportReport
from .settings import ImportSettings

METADATA_FORMAT = 1


def import_metadata(settings: ImportSettings, report: ImportReport) -> dict:
    return {
        "format": METADATA_FORMAT,
        "instruments": {
            settings.instrument: {"tick_size": settings.tick_size, "calendar": settings.calendar.to_dict()},
        },
        "merge": MERGE_RULE,
        "import": report.to_dict(),
    }


def instrument_settings(metadata: dict) -> tuple[dict[str, float], SessionCalendar | None]:
    """(tick size per instrument, the calendar if every instrument has the same one) from `read_metadata`."""
    instruments = metadata.get("instruments") or {}
    sizes = {str(k): float(v["tick_size"]) for k, v in instruments.items() if "tick_size" in v}
    calendars = {SessionCalendar.from_dict(v["calendar"]) for v in instruments.values() if "calendar" in v}
    return sizes, (calendars.pop() if len(calendars) == 1 else None)
