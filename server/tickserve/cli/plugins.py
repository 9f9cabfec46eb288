"""`tickserve plugins`, and the plugins (with their adapters) every command that needs them loads."""

from __future__ import annotations


def _plugins(args):
    from ..config import plugin_policy, read_config
    from ..plugins.manager import load_plugins

    policy = plugin_policy(read_config(args.config), args.allow_plugin, args.deny_plugin)
    return load_plugins(allow=set(policy.allow) if policy.allow is not None else None, deny=set(policy.deny))


def cmd_plugins(args) -> int:
    plugins = _plugins(args)
    print(f"{'PLUGIN':28s} {'DISTRIBUTION':22s} {'VERSION':9s} {'STATUS':9s} ADAPTERS / REASON")
    for info in plugins.infos:
        detail = info.reason or ", ".join(info.adapters)
        print(f"{info.name:28s} {info.distribution:22s} {info.version:9s} {info.status:9s} {detail}")
    return 0


def cmd_check_plugin(args) -> int:
    """Run the adapter contract on an installed adapter: one line per check, exit 1 on any failure."""
    from ..plugins.contract import check_adapter

    adapters = _plugins(args).adapters
    if args.name not in adapters:
        print(f"no installed plugin provides the adapter {args.name!r} (installed: {', '.join(sorted(adapters))})")
        return 1
    report = check_adapter(adapters[args.name], args.model_dir)
    print(report.summary())
    return 0 if report.ok else 1
