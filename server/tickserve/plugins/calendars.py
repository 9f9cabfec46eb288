"""Built-in plugin: the session calendars tickserve knows without any plugin installed.

An ordinary plugin: a user plugin that answers the same calendar name wins,
because plugins loaded from entry points are registered after the built-ins.
"""

from __future__ import annotations

from ..features.calendar import ALWAYS_OPEN, US_EQUITIES, SessionCalendar
from ..plugin import hookimpl

CALENDARS = {cal.name: cal for cal in (US_EQUITIES, ALWAYS_OPEN)}


@hookimpl
def tickserve_session_calendar(name: str) -> SessionCalendar | None:
    return CALENDARS.get(name)
