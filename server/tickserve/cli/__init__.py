"""The `tickserve` command: simulate, train, serve, stream, evaluate, models, plugins, demo.

Each subcommand imports what it needs when it runs, so `tickserve --help` is fast
and client-side commands never load model libraries.

One module per command group: `parser.py` (every flag and help text), `data.py` (simulate,
import), `train.py` (train, compile, ensemble), `serve.py` (serve, config: the server's settings
and access control), `client.py` (stream, evaluate, models, repository: clients of a running
server), `cluster.py` (replicas behind nginx), `signals.py` (the signal log), `plugins.py`, `demo.py`.
"""

from __future__ import annotations

import sys

from .parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `serve --processes N` gives it to its children
    from .logs import configure_logging

    configure_logging(args.log_level or "warning")  # `serve` re-configures from its settings
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clean one-line error for the user; --log-level debug shows the trace
        from ..errors import TickserveError

        if isinstance(exc, (TickserveError, ValueError, FileNotFoundError, FileExistsError)):
            print(f"tickserve: error: {exc}", file=sys.stderr)
            return 2
        try:
            import grpc

            if isinstance(exc, grpc.RpcError):
                print(f"tickserve: {exc.code().name}: {exc.details()}", file=sys.stderr)
                return 1
        except ImportError:
            pass
        raise
