"""Every hook a tickserve plugin may implement (one typed module, as pluggy's eggsample)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from ..plugin import PROJECT_NAME

if TYPE_CHECKING:
    from ..bridge.transport import BridgeTransport
    from ..features.calendar import SessionCalendar
    from ..plugin import ModelAdapter

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def tickserve_adapters() -> list[type[ModelAdapter]]:
    """Return the model adapter classes this plugin provides."""


@hookspec(firstresult=True)
def tickserve_session_calendar(name: str) -> SessionCalendar | None:
    """Return the trading-session calendar called `name`, or None if this plugin does not define it."""


@hookspec
def tickserve_bridge_transports() -> list[type[BridgeTransport]]:
    """Return the bridge transport classes (message brokers) this plugin provides: `tickserve
    bridge` uses the one named by `[bridge] transport`. The API and its promises:
    `tickserve.bridge.transport` (NATS JetStream is built in: `tickserve.bridge.nats_transport`)."""
