"""`tickserve cluster`: N `serve` replicas behind nginx on loopback, health-checked through gRPC
health (tickserve.cluster). Runs until SIGINT/SIGTERM, then drains the replicas and stops."""

from __future__ import annotations

import signal
import threading
from pathlib import Path


def cmd_cluster(args) -> int:
    from ..cluster import Cluster, ClusterConfig
    from .logs import announce

    serve_args = list(args.serve_args or [])
    if serve_args[:1] == ["--"]:
        serve_args = serve_args[1:]
    config = ClusterConfig(
        models=Path(args.models),
        replicas=args.replicas,
        host=args.host,
        port=args.port,
        drain=args.drain,
        grace=args.grace,
        health_interval=args.health_interval,
        run_dir=args.run_dir,
        serve_args=("--no-signal-log", *serve_args) if not _names_signal_log(serve_args) else tuple(serve_args),
        install_nginx=not args.no_install,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before anything starts: a signal during start-up stops cleanly
        signal.signal(sig, lambda *_: stop.set())
    cluster = Cluster(config, announce=announce)
    try:
        cluster.start()
        for r in cluster.replicas:
            announce(f"tickserve cluster: replica {r.index} on {r.address} (pid {r.proc.pid}, log {r.log_file})")
        announce(f"tickserve cluster: nginx (pid {cluster.nginx.proc.pid}) config {cluster.settings.conf_file}")
        announce(f"tickserve cluster: {len(cluster.replicas)} replicas behind nginx on {cluster.address}")
        while not stop.wait(0.5):
            if cluster.nginx.proc.poll() is not None:
                announce(f"tickserve cluster: nginx exited with {cluster.nginx.proc.returncode}; stopping")
                return 1
        announce(f"tickserve cluster: stopping (replicas drain {config.drain:g} s, then {config.grace:g} s grace)")
        return 0
    finally:
        cluster.stop()


def _names_signal_log(serve_args: list[str]) -> bool:
    """Replicas share no signal log by default: N processes on one SQLite file would contend.
    Flags for one (`--signal-log`) are the caller's choice."""
    return any(a.startswith("--signal-log") or a == "--no-signal-log" for a in serve_args)
