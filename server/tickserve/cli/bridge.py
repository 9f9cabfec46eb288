"""`tickserve bridge`: ticks from a message broker through one in-process session, signals back."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from .plugins import _plugins


def bridge_settings(args):
    """defaults < config file < environment < the flags given (`--input-subject` -> [bridge] input_subject)."""
    from ..settings import SCHEMA, load_settings

    flags = {("bridge", key): getattr(args, key) for key in SCHEMA["bridge"] if getattr(args, key, None) is not None}
    for dest, key in (("models", ("server", "models")), ("default_model", ("server", "default_model"))):
        if getattr(args, dest, None) is not None:
            flags[key] = getattr(args, dest)
    if getattr(args, "log_level", None) is not None:
        flags[("logging", "level")] = args.log_level
    return load_settings(args.config, flags=flags)


def add_bridge_parser(sub, plugin_filter_args) -> None:
    """`tickserve bridge`: a flag per [bridge] setting (settings.py holds their defaults and help)."""
    from ..settings import SCHEMA

    b = sub.add_parser(
        "bridge",
        help="ticks in from a message broker (NATS JetStream), signals out to it; nothing lost or doubled",
        description="Answers every tick of the input subject once on the output subject (README, The bridge).",
    )
    b.add_argument("--models", help="the model repository (default: models)")
    b.add_argument("--default-model", help="model used when [bridge] model names none")
    for key, setting in SCHEMA["bridge"].items():
        if setting.kind is bool:
            b.add_argument(f"--{key.replace('_', '-')}", action="store_const", const=True, help=setting.help)
            continue
        b.add_argument(
            f"--{key.replace('_', '-')}", type=setting.kind, help=f"{setting.help} (default {setting.default!r})"
        )
    b.add_argument("--ready-file", type=Path, help="write {metrics_port, resumed_at} here once consuming")
    plugin_filter_args(b)
    b.set_defaults(func=cmd_bridge)


def cmd_bridge(args) -> int:
    from ..bridge.app import check_settings, run_bridge
    from ..models.repository import ModelRepository
    from .logs import announce, configure_logging

    settings = bridge_settings(args)
    configure_logging(settings.logging.level, settings.logging.format)
    b, srv = settings.bridge, settings.server
    check_settings(b)
    plugins = _plugins(args)
    transport = plugins.transport(b.transport)
    repository = ModelRepository(Path(srv.models), plugins.adapters, default_model=srv.default_model)
    repository.load_all()
    model = repository.get(b.model, b.version)  # NOT_FOUND / FAILED_PRECONDITION naming it: exit 2
    asyncio.run(
        run_bridge(model, transport, b, ready_file=args.ready_file, announce=lambda m: announce(m, file=sys.stderr))
    )
    return 0
