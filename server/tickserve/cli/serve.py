"""`tickserve serve` and `tickserve config show`: the server's effective settings, its TLS and tokens."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from .plugins import _plugins

# Flags of `serve` (and `config show`) backed by settings: dest -> (section, key). Each defaults to
# None, so only flags given on the command line override the file and the environment.
SERVER_FLAGS = {
    "models": ("server", "models"),
    "host": ("server", "host"),
    "port": ("server", "port"),
    "http_port": ("server", "http_port"),
    "default_model": ("server", "default_model"),
    "grace": ("server", "grace"),
    "drain": ("server", "drain"),
    "workers": ("server", "workers"),
    "processes": ("server", "processes"),
    "batch_window_us": ("limits", "batch_window_us"),
    "max_batch_rows": ("limits", "max_batch_rows"),
    "max_concurrent_streams": ("limits", "max_concurrent_streams"),
    "max_streams_per_connection": ("limits", "max_streams_per_connection"),
    "max_parallel_messages": ("limits", "max_parallel_messages"),
    "idle_timeout_s": ("limits", "idle_timeout_s"),
    "max_ticks_per_message": ("limits", "max_ticks_per_message"),
    "max_instruments_per_stream": ("limits", "max_instruments_per_stream"),
    "max_instruments_total": ("limits", "max_instruments_total"),
    "max_message_bytes": ("limits", "max_message_bytes"),
    "tls_cert": ("tls", "cert"),
    "tls_key": ("tls", "key"),
    "tls_client_ca": ("tls", "client_ca"),
    "token_file": ("auth", "token_file"),
    "health_requires_token": ("auth", "health_requires_token"),
    "signal_log": ("signal_log", "path"),
    "signal_log_enabled": ("signal_log", "enabled"),
    "signal_log_durable": ("signal_log", "durable"),
    "log_format": ("logging", "format"),
}


def server_settings(args):
    """The effective settings of `serve`: defaults < config file < environment < the flags given."""
    from ..settings import load_settings

    flags = {
        SERVER_FLAGS[dest]: value for dest, value in vars(args).items() if dest in SERVER_FLAGS and value is not None
    }
    if getattr(args, "signal_log", None) is not None and getattr(args, "signal_log_enabled", None) is None:
        flags[("signal_log", "enabled")] = True  # naming a file on the command line means: log to it
    if getattr(args, "log_level", None) is not None:
        flags[("logging", "level")] = args.log_level
    return load_settings(args.config, flags=flags)


def _serve_security(settings):
    """(tls, auth) from the settings and $TICKSERVE_TOKENS; (None, None) when neither is configured."""
    import os

    from ..serving.security import TOKENS_ENV, TlsConfig, TokenAuth

    t, a = settings.tls, settings.auth
    tls = None
    if bool(t.cert) != bool(t.key):
        raise ValueError("--tls-cert and --tls-key go together ([tls] cert and key)")
    if t.client_ca and not t.cert:
        raise ValueError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    if t.cert:
        tls = TlsConfig(Path(t.cert), Path(t.key), Path(t.client_ca) if t.client_ca else None)
        tls.server_credentials()  # reads and checks the files now
    auth = None
    token_file = Path(a.token_file) if a.token_file else None
    if token_file is not None or os.environ.get(TOKENS_ENV, "").strip():
        auth = TokenAuth.load(token_file, health_requires_token=a.health_requires_token)
    elif a.health_requires_token:
        raise ValueError(f"--health-requires-token needs tokens: --token-file or ${TOKENS_ENV}")
    return tls, auth


def _fewer_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates its own malloc arena (up to 8 x cores); the worker
    threads' freed message buffers then stay resident in each, a few MB apiece. Two arenas is the
    usual setting for Python servers; MALLOC_ARENA_MAX in the environment still wins. No-op off glibc."""
    import ctypes
    import ctypes.util
    import os

    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-8, arenas)  # M_ARENA_MAX, before any worker thread starts
    except (OSError, AttributeError):
        pass


def cmd_serve(args) -> int:
    _fewer_malloc_arenas()
    from ..models.repository import ModelRepository
    from ..serving.app import serve
    from ..serving.limits import ServerLimits
    from ..serving.process_group import group_dir, join_group
    from .logs import announce, configure_logging

    settings = server_settings(args)
    configure_logging(settings.logging.level, settings.logging.format)
    srv, lim, slog = settings.server, settings.limits, settings.signal_log
    tls, auth = _serve_security(settings)  # bad TLS or token settings fail before any model loads
    if lim.batch_window_us < 0:
        raise ValueError(f"batch_window_us: must be >= 0, got {lim.batch_window_us}")
    limits = ServerLimits(
        batch_window_s=lim.batch_window_us * 1e-6,
        max_batch_rows=lim.max_batch_rows,
        max_concurrent_streams=lim.max_concurrent_streams,
        max_streams_per_connection=lim.max_streams_per_connection,
        idle_timeout_s=lim.idle_timeout_s,
        max_ticks_per_message=lim.max_ticks_per_message,
        max_instruments_per_stream=lim.max_instruments_per_stream,
        max_instruments_total=lim.max_instruments_total,
        max_message_bytes=lim.max_message_bytes,
        max_parallel_messages=lim.max_parallel_messages,
    )  # ValueError naming the limit for a value < 1
    if srv.workers < 1:
        raise ValueError(f"workers: must be >= 1, got {srv.workers}")
    if srv.http_port < -1 or srv.http_port > 65535:
        raise ValueError(f"http_port: -1 (off), 0 (a free port) or a port number, got {srv.http_port}")
    processes = _processes(srv.processes)
    if processes > 1:  # a supervisor of children that each run this function with --processes 1
        return _supervise(args, settings, processes, announce)
    plugins = _plugins(args)
    for info in plugins.infos:
        if info.status == "failed":
            announce(f"plugin {info.name} ({info.distribution}) skipped: {info.reason}", file=sys.stderr)
    repository = ModelRepository(Path(srv.models), plugins.adapters, default_model=srv.default_model)
    repository.load_all()
    group = group_dir()
    if group is not None:  # a child of `serve --processes N`: the group's changes since it started, too
        join_group(repository, group)
    for entry in repository.entries():
        line = f"model {entry.name}/{entry.version}: {entry.state.value}"
        announce(line + (f" ({entry.reason})" if entry.reason else ""), file=sys.stderr)
    for note in default_model_notes(repository, srv.models):
        announce(note, file=sys.stderr)
    asyncio.run(
        serve(
            repository,
            srv.host,
            srv.port,
            grace=srv.grace,
            drain=srv.drain,
            ready_file=args.ready_file,
            limits=limits,
            tls=tls,
            auth=auth,
            workers=srv.workers,
            http_port=srv.http_port if srv.http_port >= 0 else None,
            signal_log=Path(slog.path) if slog.enabled else None,
            signal_log_max_rows=slog.max_queued_rows,
            signal_log_durable=slog.durable,
            process_group=group is not None,
            announce=announce,
        )
    )
    return 0


def _processes(n: int) -> int:
    """[server] processes: 0 (auto) is one per CPU core this process may run on."""
    import os

    if n < 0:
        raise ValueError(f"processes: must be >= 1, or 0 / auto for one per core, got {n}")
    return n or len(os.sched_getaffinity(0))


def _supervise(args, settings, processes: int, announce) -> int:
    """`serve --processes N`: checked settings, then N children on one port (serving/supervisor.py)."""
    from ..serving.supervisor import GroupPlan, Supervisor

    srv = settings.server
    plan = GroupPlan(
        processes=processes,
        host=srv.host,
        port=srv.port,
        http_port=srv.http_port if srv.http_port >= 0 else None,
        stop_timeout_s=srv.drain + srv.grace + 15.0,
        ready_file=args.ready_file,
        argv=getattr(args, "argv", None) or sys.argv[1:],
    )
    return Supervisor(plan, announce).run()


def default_model_notes(repository, models: str) -> list[str]:
    """What `serve` says at start about the model a request naming none gets."""
    names = sorted({e.name for e in repository.entries()})
    default = repository.default_model
    if not names:
        return [
            f"warning: the repository {models} holds no model: every request fails NOT_FOUND until one "
            "is added (`tickserve train --models ...`) and loaded (`tickserve repository load NAME`)"
        ]
    if default and default not in names:
        return [
            f"warning: the default model {default!r} is not in the repository {models} (it has: {', '.join(names)})"
        ]
    if default:
        return [f"default model: {default} (requests that name no model get it)"]
    return [
        f"no default model: the repository holds {len(names)} models ({', '.join(names)}), so a request "
        "must name one; --default-model NAME (or [server] default_model) sets one"
    ]


def cmd_config(args) -> int:
    print(server_settings(args).to_toml(), end="")
    return 0
