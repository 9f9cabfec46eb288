"""Flags shared by several commands (feature config, plugin filters, server settings, client
security), kept apart from parser.py, which lays out the commands themselves."""

from __future__ import annotations

import argparse
from pathlib import Path


def _feature_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--default-tick-size", type=float, default=0.01)
    p.add_argument(
        "--tick-size",
        action="append",
        default=[],
        metavar="INSTRUMENT=SIZE",
        help="per-instrument tick size; adds to (and overrides) those recorded in the --data-file",
    )
    p.add_argument(
        "--calendar",
        default=None,
        help="session calendar name (us-equities, 24x7, plugins'); default: the one recorded in the "
        "--data-file by `tickserve import`, else us-equities",
    )


def _plugin_filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="TOML config file (default: $TICKSERVE_CONFIG)")
    p.add_argument("--allow-plugin", action="append", default=None, metavar="NAME", help="load only these plugins")
    p.add_argument("--deny-plugin", action="append", default=None, metavar="NAME", help="never load these plugins")


def _processes(text: str) -> int:
    """--processes N|auto; auto is 0 (one per core), as in [server] processes."""
    if text.strip().lower() == "auto":
        return 0
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes or auto, got {text!r}") from None


def _server_settings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", help="the model repository (default: models)")
    p.add_argument("--host", help="bind address (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, help="gRPC port (default 50051; 0 picks a free port)")
    p.add_argument("--http-port", type=int, help="HTTP/JSON gateway + /metrics port (0: a free one; default: off)")
    p.add_argument("--default-model", help="model used when a request names none")
    p.add_argument("--grace", type=float, help="seconds in-flight calls get at shutdown (default 5)")
    p.add_argument(
        "--drain",
        type=float,
        help="on SIGTERM, seconds of NOT_SERVING health while still serving, before the stop: a load "
        "balancer moves new streams away first (default 0)",
    )
    p.add_argument("--workers", type=int, help="worker threads in each server process (default 4)")
    p.add_argument(
        "--processes",
        type=_processes,
        help="server processes sharing the port, each its own event loop; auto: one per CPU core "
        "(default 1: this process serves). Not --workers, which counts threads",
    )
    g = p.add_argument_group("limits (docs/errors.md): beyond each, RESOURCE_EXHAUSTED naming it and the value")
    g.add_argument("--batch-window-us", type=float, help="micro-batching window across streams (default 300; 0: off)")
    g.add_argument("--max-batch-rows", type=int, help="largest micro-batch (default 256)")
    g.add_argument("--max-concurrent-streams", type=int, help="StreamSignals + Evaluate calls open at once (1000)")
    g.add_argument(
        "--max-streams-per-connection", type=int, help="calls open at once on one connection; more wait (100)"
    )
    g.add_argument(
        "--max-parallel-messages",
        type=int,
        help="messages worked on in worker threads at once (default 0: one per CPU core)",
    )
    g.add_argument("--idle-timeout-s", type=float, help="end a stream that sends nothing this long, 0: never (3600)")
    g.add_argument("--max-ticks-per-message", type=int, help="ticks in one batch or Predict request (10000)")
    g.add_argument("--max-instruments-per-stream", type=int, help="distinct instruments in one stream (10000)")
    g.add_argument(
        "--max-instruments-total",
        type=int,
        help="instruments all open streams hold together, ~7.5 KB of memory each (200000)",
    )
    g.add_argument("--max-message-bytes", type=int, help="largest request message (16 MiB)")
    g = p.add_argument_group("access control (docs/security.md)")
    g.add_argument("--tls-cert", help="PEM server certificate chain: serve TLS (with --tls-key)")
    g.add_argument("--tls-key", help="PEM private key of --tls-cert")
    g.add_argument("--tls-client-ca", help="PEM CA: require client certificates signed by it (mutual TLS)")
    g.add_argument(
        "--token-file",
        help="accepted bearer tokens, one per line (# comments ignored); also $TICKSERVE_TOKENS, "
        "comma-separated. Either turns token authentication on",
    )
    g.add_argument(
        "--health-requires-token",
        action="store_const",
        const=True,
        help="health checks need the token too (default: open when tokens are on)",
    )
    g = p.add_argument_group("signal log and logs")
    g.add_argument("--signal-log", help="SQLite file of served signals (default .tickserve/signals.db)")
    g.add_argument(
        "--no-signal-log",
        dest="signal_log_enabled",
        action="store_const",
        const=False,
        help="do not record served signals",
    )
    g.add_argument(
        "--signal-log-durable",
        dest="signal_log_durable",
        action="store_const",
        const=True,
        help="send an answer only once its signals are committed to the log (they survive a crash)",
    )
    g.add_argument("--log-format", choices=["text", "json"], help="json: one JSON object per log line")
    _plugin_filter_args(p)


def _client_security_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("access control (docs/security.md)")
    g.add_argument("--tls-ca", type=Path, help="PEM CA to trust for the server's certificate: connect with TLS")
    g.add_argument("--tls-cert", type=Path, help="PEM client certificate chain for mutual TLS (with --tls-key)")
    g.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    g.add_argument(
        "--token-file",
        type=Path,
        help="file holding the bearer token (its first token line); default: $TICKSERVE_TOKEN",
    )
