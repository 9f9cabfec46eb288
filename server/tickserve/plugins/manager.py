"""Builds the plugin manager: hookspecs, built-ins, then the entry-point group.

Nothing happens at import time; call `load_plugins()`. A plugin that fails to
import or breaks the hook contract is reported by name and skipped, so the
server still starts with the others.

Precedence: the built-ins are registered first, then the entry-point plugins
in the order of their entry-point names; where two plugins answer the same
adapter or calendar name, the one registered later wins (pluggy calls later
plugins first), and the shadowed one is logged and noted in `tickserve plugins`.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy

from ..errors import InvalidArgument
from ..features.calendar import SessionCalendar
from ..plugin import ENTRY_POINT_GROUP, PROJECT_NAME, ModelAdapter
from . import hookspecs

log = logging.getLogger(__name__)

# the NATS bridge transport imports its client (nats-py, the bridge extra) only when a bridge connects
BUILTIN_PLUGINS = ("tickserve.plugins.calendars", "tickserve.models.ensemble", "tickserve.bridge.nats_transport")


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    status: str  # "loaded", "failed" or "disabled"
    reason: str = ""
    adapters: list[str] = field(default_factory=list)


@dataclass
class Plugins:
    manager: pluggy.PluginManager
    infos: list[PluginInfo]
    adapters: dict[str, type[ModelAdapter]]

    def calendar(self, name: str) -> SessionCalendar:
        """The calendar called `name`; a plugin whose hook fails or returns junk is reported and passed over."""
        infos = {i.name: i for i in self.infos}
        for impl in reversed(self.manager.hook.tickserve_session_calendar.get_hookimpls()):
            try:
                found = impl.function(name=name)
                if found is not None and not isinstance(found, SessionCalendar):
                    raise TypeError(f"returned {type(found).__name__}, not a SessionCalendar")
            except Exception as exc:
                if impl.plugin_name in infos:
                    _fail(
                        infos[impl.plugin_name], f"tickserve_session_calendar hook failed: {type(exc).__name__}: {exc}"
                    )
                continue
            if found is not None:
                return found
        raise InvalidArgument(f"calendar: no plugin defines a session calendar named {name!r}", field="calendar")

    def transport(self, name: str) -> type:
        """The bridge transport class called `name` (a later-registered plugin wins, as for adapters)."""
        from ..bridge.transport import BridgeTransport

        found: dict[str, type] = {}
        for impl in self.manager.hook.tickserve_bridge_transports.get_hookimpls():  # earlier plugins first
            try:
                provided = impl.function()
                bad = [c for c in provided if not (isinstance(c, type) and issubclass(c, BridgeTransport))]
                if bad:
                    raise TypeError(f"returned {bad!r}, which are not BridgeTransport subclasses")
            except Exception as exc:
                log.error(
                    "plugin %r: tickserve_bridge_transports hook failed: %s: %s",
                    impl.plugin_name,
                    type(exc).__name__,
                    exc,
                )
                continue
            found.update({cls.name: cls for cls in provided})
        if name not in found:
            raise InvalidArgument(
                f"transport: no plugin provides the bridge transport {name!r} (installed: {', '.join(sorted(found))})",
                field="transport",
            )
        return found[name]


def load_plugins(*, allow: set[str] | None = None, deny: set[str] | None = None) -> Plugins:
    """The factory: add the specs, register built-ins, load the entry-point group, validate."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    for module_name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
        infos.append(PluginInfo(module_name, "tickserve", _version("tickserve"), "loaded"))

    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        info = PluginInfo(ep.name, dist, version, "loaded")
        infos.append(info)
        if (allow is not None and ep.name not in allow) or (deny and ep.name in deny):
            info.status = "disabled"
            info.reason = "excluded by the plugin allow/deny list"
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a broken plugin must not take the server down
            _fail(info, f"failed to import {ep.value}: {type(exc).__name__}: {exc}")
            continue
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            pm.unregister(name=ep.name)
            _fail(info, f"breaks the hook contract: {exc}")

    adapters = _collect_adapters(pm, {i.name: i for i in infos})
    return Plugins(pm, infos, adapters)


def _collect_adapters(pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> dict[str, type[ModelAdapter]]:
    """Adapter classes by name. Later-registered plugins come first, so a user
    plugin overrides a built-in adapter of the same name."""
    adapters: dict[str, type[ModelAdapter]] = {}
    for impl in reversed(pm.hook.tickserve_adapters.get_hookimpls()):
        info = infos.get(impl.plugin_name)
        try:
            provided = impl.function()
            bad = [c for c in provided if not (isinstance(c, type) and issubclass(c, ModelAdapter))]
            if bad:
                raise TypeError(f"returned {bad!r}, which are not ModelAdapter subclasses")
            nameless = [c.__name__ for c in provided if not isinstance(getattr(c, "name", None), str) or not c.name]
            if nameless:
                raise TypeError(f"adapter class(es) {nameless} have no name")
        except Exception as exc:
            if info:
                _fail(info, f"tickserve_adapters hook failed: {type(exc).__name__}: {exc}")
            pm.unregister(name=impl.plugin_name)
            continue
        for cls in provided:
            if cls.name in adapters:
                winner = adapters[cls.name]
                log.warning(
                    "adapter %r of plugin %r is shadowed by %s.%s",
                    cls.name,
                    impl.plugin_name,
                    winner.__module__,
                    winner.__qualname__,
                )
                if info:
                    info.reason = f"adapter {cls.name!r} shadowed by a later plugin ({winner.__module__})"
                continue
            adapters[cls.name] = cls
            if info:
                info.adapters.append(cls.name)
    return adapters


def _fail(info: PluginInfo, reason: str) -> None:
    info.status = "failed"
    info.reason = reason
    log.error("plugin %r (%s) skipped: %s", info.name, info.distribution, reason)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"
