"""The `tickserve` command: simulate, train, serve, stream, evaluate, models, plugins, demo.

Each subcommand imports what it needs when it runs, so `tickserve --help` is fast
and client-side commands never load model libraries.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC
from pathlib import Path

DEFAULT_MODEL_NAME = "signal-lgbm"
DEFAULT_SERVER = "127.0.0.1:50051"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .logs import configure_logging

    configure_logging(args.log_level or "warning")  # `serve` re-configures from its settings
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clean one-line error for the user; --log-level debug shows the trace
        from .errors import TickserveError

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tickserve", description=__doc__.splitlines()[0])
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="default: warning")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="write simulated order-book ticks to a Parquet file")
    s.add_argument("--ticks", type=int, default=30_000, help="ticks in total, across instruments")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=cmd_simulate)

    i = sub.add_parser(
        "import",
        help="import order-book (+ trades) files in the wide layout into a canonical tick file",
        description="Wide layout: a timestamp column and bid_px_N, bid_qty_N, ask_px_N, ask_qty_N per "
        "level (CSV, .csv.gz or Parquet); trades: timestamp, price, qty and optionally the "
        "aggressor side (an aggressor or a buyer_is_maker column). Every setting may "
        "also come from the [import] table of --config; flags win. See "
        "server/tickserve/importer.py for the merge rule and the bad-row reasons.",
    )
    i.add_argument("--book", type=Path, help="the order-book file")
    i.add_argument("--trades", type=Path, help="the trades file (optional)")
    i.add_argument("--out", type=Path, help="the canonical Parquet tick file to write")
    i.add_argument("--instrument", help="instrument name for every tick, e.g. BTCUSD_PERP")
    i.add_argument(
        "--tick-size",
        help="the instrument's price tick size, e.g. 0.1, or auto: the smallest gap "
        "between the imported prices (server/tickserve/tick_size.py)",
    )
    i.add_argument("--calendar", help="session calendar name: us-equities, 24x7 (always open) or a plugin's")
    i.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="CANONICAL=COLUMN",
        help="column for a canonical name in both files, e.g. timestamp_ns=local_ts_ns; "
        "{n} stands for the level: bid_px_{n}=bp{n}",
    )
    i.add_argument(
        "--trades-map",
        action="append",
        default=[],
        metavar="CANONICAL=COLUMN",
        help="column for a canonical name in the trades file only (timestamp_ns, price, qty, "
        "aggressor: buy/sell, b/s, 1/-1; or buyer_is_maker: true/false, 1/0)",
    )
    i.add_argument(
        "--timestamp-unit", choices=["ns", "us", "ms", "s"], help="unit of the timestamp columns (default ns)"
    )
    i.add_argument("--levels", type=int, help="import at most this many levels (default: all, up to 10)")
    _plugin_filter_args(i)
    i.set_defaults(func=cmd_import)

    t = sub.add_parser("train", help="train a model and write it to the model repository")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--data-file", type=Path, help="a canonical Parquet tick file")
    src.add_argument("--samples", type=int, default=60_000, help="simulate this many ticks instead")
    t.add_argument("--seed", type=int, default=1, help="simulator seed (with --samples)")
    t.add_argument("--models", type=Path, default=Path("models"))
    t.add_argument("--name", default=DEFAULT_MODEL_NAME)
    t.add_argument("--version", default=None, help="default: the next integer")
    t.add_argument("--adapter", default="lightgbm")
    _feature_args(t)
    t.add_argument(
        "--label",
        choices=["taker", "mid"],
        default="taker",
        help="taker (default): BUY/SELL only when a round trip at the touch pays for the spread and "
        "--cost-ticks; mid: the mid moves by --threshold (docs/trading-metrics.md)",
    )
    t.add_argument(
        "--cost-ticks",
        type=float,
        default=0.0,
        help="taker labels and the cost gate: cost per round trip beyond the spread, in ticks (default 0)",
    )
    t.add_argument(
        "--fee-bps",
        type=float,
        default=0.0,
        help="fees per round trip in bps of price, charged in the report's trading figures (default 0)",
    )
    horizon = t.add_mutually_exclusive_group()
    horizon.add_argument(
        "--horizon",
        default="auto",
        metavar="TICKS|auto",
        help="label horizon in ticks, or auto (default): the shortest of a ladder at which at least "
        "15%% of the training labels are BUY or SELL (server/tickserve/label_choice.py)",
    )
    horizon.add_argument(
        "--horizon-time",
        default=None,
        metavar="DURATION|auto",
        help="label horizon in time instead, e.g. 500ms, 1s, 5s (the label tick is the first tick "
        "at or after t + DURATION), or auto",
    )
    t.add_argument(
        "--folds",
        type=int,
        default=3,
        help="walk-forward folds (default 3; each tests on 20%% of the ticks, the last fold's model is "
        "the one written)",
    )
    t.add_argument(
        "--threshold",
        default="2",
        metavar="TICKS|Nspread",
        help="mid labels: move in ticks (default 2), or a multiple of the median spread, e.g. 1.5spread",
    )
    t.add_argument(
        "--no-cost-gate",
        action="store_true",
        help="let BUY/SELL stand even where the expected move does not pay for the spread",
    )
    t.add_argument("--features", default="", help="comma-separated feature names (default: the standard set)")
    t.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="adapter parameter override")
    t.add_argument(
        "--no-compile",
        action="store_true",
        help="skip the quick build of the adapter's compiled form (see `tickserve compile`)",
    )
    _plugin_filter_args(t)
    t.set_defaults(func=cmd_train)

    co = sub.add_parser(
        "compile",
        help="build the compiled, bit-exact form of models whose adapter has one "
        "(LightGBM: lleaves), for `serve` to load",
    )
    co.add_argument("--models", type=Path, default=Path("models"))
    co.add_argument("name", nargs="?", default="", help="one model (default: every model in the repository)")
    co.add_argument("version", nargs="?", default="", help="one version (default: every version)")
    co.add_argument(
        "--quick",
        action="store_true",
        help="build in seconds rather than minutes, for somewhat slower code (what `train` builds)",
    )
    _plugin_filter_args(co)
    co.set_defaults(func=cmd_compile)

    v = sub.add_parser(
        "serve",
        help="serve the model repository over gRPC",
        description="Flags override $TICKSERVE_<SECTION>_<KEY>, which overrides the config file "
        "(see `tickserve config show`).",
    )
    _server_settings_args(v)
    v.add_argument("--ready-file", type=Path, help="write the bound port here once serving")
    v.set_defaults(func=cmd_serve)

    sg = sub.add_parser("signals", help="query the signal log (every signal the server served)")
    sg.add_argument("--db", type=Path, help="the SQLite file (default: the [signal_log] path of the settings)")
    sg.add_argument("--config", type=Path, default=None, help="TOML config file (default: $TICKSERVE_CONFIG)")
    sg.add_argument("--instrument")
    sg.add_argument("--model")
    sg.add_argument("--version")
    sg.add_argument("--start", help="first tick time: ns since the epoch or ISO 8601 (UTC unless it says)")
    sg.add_argument("--end", help="end of the time range (exclusive), same forms")
    sg.add_argument("--limit", type=int, default=100)
    sg.add_argument("--json", action="store_true", help="one JSON object per line")
    sg.set_defaults(func=cmd_signals)

    cf = sub.add_parser("config", help="show the effective server settings and where each comes from")
    cf.add_argument("action", choices=["show"])
    _server_settings_args(cf)
    cf.set_defaults(func=cmd_config)

    for name, func, helptext in (
        ("stream", cmd_stream, "stream ticks through StreamSignals and print the signals"),
        ("evaluate", cmd_evaluate, "evaluate a served model on ticks (labels come from the ticks)"),
    ):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("--server", default=DEFAULT_SERVER)
        _client_security_args(c)
        src = c.add_mutually_exclusive_group()
        src.add_argument("--file", type=Path, help="a canonical Parquet tick file")
        src.add_argument("--samples", type=int, default=5_000, help="simulate this many ticks instead")
        c.add_argument("--seed", type=int, default=2, help="simulator seed (with --samples)")
        c.add_argument("--model", default="")
        c.add_argument("--version", default="")
        c.add_argument("--limit", type=int, default=0, help="send at most this many ticks")
        if name == "stream":
            c.add_argument("--batch", type=int, default=1, help="ticks per message")
            c.add_argument("--every", type=int, default=1, help="print every N-th signal")
        else:
            c.add_argument(
                "--all-models",
                action="store_true",
                help="evaluate every READY model: a comparison table, then the default model's report",
            )
            c.add_argument(
                "--cost-ticks",
                type=float,
                default=0.0,
                help="trading cost per round trip in tick sizes, on top of the spread (docs/trading-metrics.md)",
            )
            c.add_argument(
                "--fee-bps",
                type=float,
                default=0.0,
                help="fees per round trip in bps of the entry mid, on top of the spread and --cost-ticks",
            )
            c.add_argument(
                "--span",
                choices=["test", "all"],
                default="test",
                help="test (default): of a file the model was trained on, score only the held-out test "
                "span (the ticks before it are sent as warm-up); all: every tick, with a warning",
            )
        c.set_defaults(func=func)

    e = sub.add_parser("ensemble", help="write an ensemble manifest from models in the repository")
    e.add_argument("--models", type=Path, default=Path("models"))
    e.add_argument("--name", required=True)
    e.add_argument("--version", default=None, help="default: the next integer")
    e.add_argument(
        "--member",
        action="append",
        required=True,
        metavar="MODEL[:VERSION][=WEIGHT]",
        help="a member (default version: the newest on disk; default weight 1)",
    )
    e.set_defaults(func=cmd_ensemble)

    r = sub.add_parser("repository", help="index, load, reload or unload models on a running server")
    r.add_argument("action", choices=["index", "load", "reload", "unload"])
    r.add_argument("model", nargs="?", default="")
    r.add_argument("--version", default="")
    r.add_argument("--server", default=DEFAULT_SERVER)
    _client_security_args(r)
    r.set_defaults(func=cmd_repository)

    m = sub.add_parser("models", help="list the models a server serves")
    m.add_argument("--server", default=DEFAULT_SERVER)
    _client_security_args(m)
    m.set_defaults(func=cmd_models)

    g = sub.add_parser("plugins", help="list the plugins and adapters installed here")
    _plugin_filter_args(g)
    g.set_defaults(func=cmd_plugins)

    d = sub.add_parser("demo", help="end to end: train if needed, serve, stream, evaluate")
    d.add_argument("--models", type=Path, default=Path("models"))
    d.add_argument("--train-samples", type=int, default=60_000)
    d.add_argument("--holdout-samples", type=int, default=30_000)
    d.add_argument("--show", type=int, default=30, help="signals to print from the live stream")
    d.add_argument("--prepare-only", action="store_true", help="only build the default model repository")
    real = d.add_argument_group("real data (`make demo DATA=DIR`)")
    real.add_argument(
        "--data",
        type=Path,
        help="a directory with a book file (book*.csv[.gz]|parquet) and optionally "
        "trades*: import, train, serve, stream and evaluate the held-out end",
    )
    real.add_argument("--instrument", default="BTCUSD_PERP", help="instrument name of the imported ticks")
    real.add_argument("--tick-size", type=float, default=0.1, help="its tick size")
    real.add_argument("--calendar", default="24x7", help="its session calendar")
    real.add_argument("--data-models", type=Path, help="an empty directory for the models (default: a temporary one)")
    d.set_defaults(func=cmd_demo)
    return p


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


# Flags of `serve` (and `config show`) backed by settings: dest -> (section, key). Each defaults to
# None, so only flags given on the command line override the file and the environment.
SERVER_FLAGS = {
    "models": ("server", "models"),
    "host": ("server", "host"),
    "port": ("server", "port"),
    "http_port": ("server", "http_port"),
    "default_model": ("server", "default_model"),
    "grace": ("server", "grace"),
    "workers": ("server", "workers"),
    "batch_window_us": ("limits", "batch_window_us"),
    "max_batch_rows": ("limits", "max_batch_rows"),
    "max_concurrent_streams": ("limits", "max_concurrent_streams"),
    "max_ticks_per_message": ("limits", "max_ticks_per_message"),
    "max_instruments_per_stream": ("limits", "max_instruments_per_stream"),
    "max_message_bytes": ("limits", "max_message_bytes"),
    "tls_cert": ("tls", "cert"),
    "tls_key": ("tls", "key"),
    "tls_client_ca": ("tls", "client_ca"),
    "token_file": ("auth", "token_file"),
    "health_requires_token": ("auth", "health_requires_token"),
    "signal_log": ("signal_log", "path"),
    "signal_log_enabled": ("signal_log", "enabled"),
    "log_format": ("logging", "format"),
}


def _server_settings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", help="the model repository (default: models)")
    p.add_argument("--host", help="bind address (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, help="gRPC port (default 50051; 0 picks a free port)")
    p.add_argument("--http-port", type=int, help="HTTP/JSON gateway + /metrics port (0: a free one; default: off)")
    p.add_argument("--default-model", help="model used when a request names none")
    p.add_argument("--grace", type=float, help="seconds in-flight calls get at shutdown (default 5)")
    p.add_argument("--workers", type=int, help="worker threads (default 4)")
    g = p.add_argument_group("limits (docs/errors.md): beyond each, RESOURCE_EXHAUSTED naming it and the value")
    g.add_argument("--batch-window-us", type=float, help="micro-batching window across streams (default 300; 0: off)")
    g.add_argument("--max-batch-rows", type=int, help="largest micro-batch (default 256)")
    g.add_argument("--max-concurrent-streams", type=int, help="StreamSignals + Evaluate calls open at once (1000)")
    g.add_argument("--max-ticks-per-message", type=int, help="ticks in one batch or Predict request (10000)")
    g.add_argument("--max-instruments-per-stream", type=int, help="distinct instruments in one stream (10000)")
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
    g.add_argument("--log-format", choices=["text", "json"], help="json: one JSON object per log line")
    _plugin_filter_args(p)


def server_settings(args):
    """The effective settings of `serve`: defaults < config file < environment < the flags given."""
    from .settings import load_settings

    flags = {
        SERVER_FLAGS[dest]: value for dest, value in vars(args).items() if dest in SERVER_FLAGS and value is not None
    }
    if getattr(args, "signal_log", None) is not None and getattr(args, "signal_log_enabled", None) is None:
        flags[("signal_log", "enabled")] = True  # naming a file on the command line means: log to it
    if getattr(args, "log_level", None) is not None:
        flags[("logging", "level")] = args.log_level
    return load_settings(args.config, flags=flags)


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


def _serve_security(settings):
    """(tls, auth) from the settings and $TICKSERVE_TOKENS; (None, None) when neither is configured."""
    import os

    from .serving.security import TOKENS_ENV, TlsConfig, TokenAuth

    t, a = settings["tls"], settings["auth"]
    tls = None
    if bool(t["cert"]) != bool(t["key"]):
        raise ValueError("--tls-cert and --tls-key go together ([tls] cert and key)")
    if t["client_ca"] and not t["cert"]:
        raise ValueError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    if t["cert"]:
        tls = TlsConfig(Path(t["cert"]), Path(t["key"]), Path(t["client_ca"]) if t["client_ca"] else None)
        tls.server_credentials()  # reads and checks the files now
    auth = None
    token_file = Path(a["token_file"]) if a["token_file"] else None
    if token_file is not None or os.environ.get(TOKENS_ENV, "").strip():
        auth = TokenAuth.load(token_file, health_requires_token=a["health_requires_token"])
    elif a["health_requires_token"]:
        raise ValueError(f"--health-requires-token needs tokens: --token-file or ${TOKENS_ENV}")
    return tls, auth


def _client(args):
    """A TickserveClient for --server with the TLS and token flags (and $TICKSERVE_TOKEN)."""
    import os

    from tickserve_client import TickserveClient

    from .serving.security import CLIENT_TOKEN_ENV, SecurityConfigError, read_pem, read_token_file

    if (args.tls_cert is None) != (args.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    token = None
    if args.token_file is not None:
        tokens = read_token_file(args.token_file)
        if not tokens:
            raise SecurityConfigError(f"token file {args.token_file}: no token in it")
        token = tokens[0]
    elif os.environ.get(CLIENT_TOKEN_ENV, "").strip():
        token = os.environ[CLIENT_TOKEN_ENV].strip()
    tls = args.tls_ca is not None or args.tls_cert is not None
    return TickserveClient(
        args.server,
        root_certificates=read_pem(args.tls_ca, "--tls-ca", "CERTIFICATE-----") if args.tls_ca else None,
        certificate_chain=read_pem(args.tls_cert, "--tls-cert", "CERTIFICATE-----") if args.tls_cert else None,
        private_key=read_pem(args.tls_key, "--tls-key", "PRIVATE KEY-----") if args.tls_key else None,
        token=token,
        tls=tls or None,
    )


def _plugins(args):
    from .config import plugin_policy, read_config
    from .plugin_manager import load_plugins

    policy = plugin_policy(read_config(args.config), args.allow_plugin, args.deny_plugin)
    return load_plugins(allow=set(policy.allow) if policy.allow is not None else None, deny=set(policy.deny))


def _key_values(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what}: expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


# --- commands ------------------------------------------------------------------------


def cmd_simulate(args) -> int:
    from .simulate import simulate
    from .ticks import write_parquet

    frame = simulate(args.ticks, seed=args.seed)
    write_parquet(frame, args.out)
    print(f"wrote {len(frame)} ticks of {', '.join(frame.instruments())} to {args.out}")
    return 0


def cmd_import(args) -> int:
    from .config import read_config
    from .importer import ImportSettings, config_table, parse_mapping, run_import

    table = config_table(read_config(args.config))

    def setting(name: str, flag, required: bool = True):
        value = flag if flag is not None else table.get(name)
        if value is None and required:
            raise ValueError(
                f"import: --{name.replace('_', '-')} is required (or `{name}` in the [import] config table)"
            )
        return value

    book = Path(setting("book", args.book))
    trades = setting("trades", args.trades, required=False)
    out = Path(setting("out", args.out))
    settings = ImportSettings(
        instrument=str(setting("instrument", args.instrument)),
        tick_size=_tick_size(setting("tick_size", args.tick_size)),
        calendar=_calendar(_plugins(args), str(setting("calendar", args.calendar))),
        mapping={**table.get("map", {}), **parse_mapping(args.map, "--map")},
        trades_mapping={**table.get("trades_map", {}), **parse_mapping(args.trades_map, "--trades-map")},
        timestamp_unit=setting("timestamp_unit", args.timestamp_unit, required=False) or "ns",
        levels=setting("levels", args.levels, required=False),
    )
    report = run_import(book, Path(trades) if trades else None, out, settings)
    for line in report.lines():
        print(line)
    if report.tick_size_inferred:
        print(f"tick size {settings.tick_size:g} inferred from the prices (--tick-size auto)")
    print(
        f"wrote {out}: {report.ticks} ticks of {settings.instrument} (tick size {settings.tick_size:g}, calendar "
        f"{settings.calendar.name}, sequence 1..{report.ticks}); {report.dropped} rows dropped"
    )
    return 0


def _tick_size(value) -> float | None:
    if str(value).strip().lower() == "auto":
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"--tick-size: a positive number or auto, got {value!r}") from None


def _calendar(plugins, name: str):
    from .builtin_calendars import CALENDARS
    from .errors import InvalidArgument

    try:
        return plugins.calendar(name)
    except InvalidArgument as exc:
        raise ValueError(f"{exc.message} (built in: {', '.join(CALENDARS)})") from None


def _load_frame(path: Path | None, samples: int, seed: int, limit: int = 0):
    from .ticks import read_parquet

    if path is not None:
        frame = read_parquet(path)
    else:
        from .simulate import simulate

        frame = simulate(samples, seed=seed)
    if limit:
        frame = frame.take(slice(0, limit))
    return frame


def cmd_train(args) -> int:
    import json

    from .features import FeatureConfig
    from .labels import LabelConfig
    from .progress import ProgressBar
    from .training import train_model

    plugins = _plugins(args)
    adapter = plugins.adapters.get(args.adapter)
    if adapter is None:
        raise ValueError(
            f"--adapter: no adapter named {args.adapter!r} (installed: {', '.join(sorted(plugins.adapters)) or 'none'})"
        )
    # instrument settings recorded by `tickserve import` in the data file, then the flags on top
    from .importer import instrument_settings
    from .labels import parse_duration_ns
    from .ticks import read_metadata

    recorded_sizes, recorded_calendar = instrument_settings(read_metadata(args.data_file) if args.data_file else {})
    tick_sizes = {**recorded_sizes, **{k: float(v) for k, v in _key_values(args.tick_size, "--tick-size").items()}}
    if args.calendar:
        calendar = plugins.calendar(args.calendar)
    else:
        calendar = recorded_calendar or plugins.calendar("us-equities")
    feature_config = FeatureConfig(
        default_tick_size=args.default_tick_size,
        tick_sizes=tuple(sorted(tick_sizes.items())),
        calendar=calendar,
    )
    if recorded_sizes:
        print(
            f"instrument settings recorded in {args.data_file}: "
            + ", ".join(f"{k} tick {v:g}" for k, v in sorted(recorded_sizes.items()))
            + (f", calendar {recorded_calendar.name}" if recorded_calendar else "")
        )
    from .label_choice import parse_threshold
    from .output import format_training
    from .training_report import TrainingReport

    threshold, spreads = parse_threshold(args.threshold)
    if args.label == "taker" and args.threshold != "2":
        raise ValueError("--threshold applies to --label mid; taker labels use --cost-ticks")
    choose = None
    horizon_ticks = horizon_ns = None
    if args.horizon_time is not None:
        if args.horizon_time == "auto":
            choose = "time"
        else:
            horizon_ns = parse_duration_ns(args.horizon_time)
    elif args.horizon == "auto":
        choose = "ticks"
    else:
        try:
            horizon_ticks = int(args.horizon)
        except ValueError:
            raise ValueError(f"--horizon: a number of ticks or auto, got {args.horizon!r}") from None
    label_config = LabelConfig(
        horizon_ticks, threshold or 2.0, horizon_ns=horizon_ns, mode=args.label, cost_ticks=args.cost_ticks
    )
    params = {k: json.loads(v) if _is_json(v) else v for k, v in _key_values(args.param, "--param").items()}
    features = tuple(f.strip() for f in args.features.split(",") if f.strip()) or None
    frame = _load_frame(args.data_file, args.samples, args.seed)
    source = args.data_file or f"simulator (seed {args.seed})"
    print(
        f"training {args.adapter} model {args.name!r} on {len(frame)} ticks from {source} "
        f"({args.label} labels, horizon {'chosen from the data' if choose else label_config.describe()}; "
        f"calendar {calendar.name}; {args.folds} walk-forward folds)"
    )
    path, manifest = train_model(
        frame,
        adapter=adapter,
        models_dir=args.models,
        name=args.name,
        version=args.version,
        feature_config=feature_config,
        label_config=label_config,
        choose=choose,
        threshold_spreads=spreads,
        feature_names=features,
        params=params,
        progress=ProgressBar("boosting"),
        folds=args.folds,
        cost_gate=not args.no_cost_gate,
        fee_bps=args.fee_bps,
    )
    print(f"wrote {path}")
    for line in format_training(TrainingReport.from_dict(manifest.training)):
        print(line)
    if not args.no_compile:
        _compile_one(adapter, path, manifest, quick=True)
    return 0


def cmd_compile(args) -> int:
    """Compile every model version on disk (or the one named) whose adapter can compile."""
    from .manifest import MANIFEST_FILE, ModelManifest

    plugins = _plugins(args)
    if not args.models.is_dir():
        raise ValueError(f"--models: {args.models} is not a directory")

    def subdirs(folder: Path) -> list[str]:  # not the hidden staging directories of a training in progress
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    names = [args.name] if args.name else subdirs(args.models)
    failed = found = 0
    for name in names:
        if not (args.models / name).is_dir():
            raise ValueError(f"name: no model {name!r} in {args.models}")
        for version in [args.version] if args.version else subdirs(args.models / name):
            path = args.models / name / version
            if not (path / MANIFEST_FILE).is_file():
                if args.version:
                    raise ValueError(f"version: no version {version!r} of {name!r} in {args.models}")
                continue
            try:
                manifest = ModelManifest.load(path)
            except Exception as exc:  # one unreadable manifest must not stop the others
                print(f"{name}/{version}: not compiled (manifest unreadable: {exc})")
                failed += 1
                continue
            if manifest.members:
                continue  # an ensemble: its members are compiled as models of their own
            adapter = plugins.adapters.get(manifest.adapter)
            if adapter is None:
                print(f"{name}/{version}: adapter {manifest.adapter!r} is not installed, skipped")
                continue
            found += 1
            failed += not _compile_one(adapter, path, manifest, quick=args.quick)
    if not found:
        print("no model to compile")
    return 1 if failed else 0


def _compile_one(adapter, path: Path, manifest, *, quick: bool) -> bool:
    import time

    started = time.perf_counter()
    try:
        built = adapter.compile(path, manifest, quick=quick)
    except Exception as exc:  # one model failing to compile leaves it native; say so and go on
        print(f"{manifest.name}/{manifest.version}: not compiled ({type(exc).__name__}: {exc}); it serves natively")
        return False
    if built:
        print(f"{manifest.name}/{manifest.version}: {built} ({time.perf_counter() - started:.1f} s)")
    return True


def _is_json(v: str) -> bool:
    import json

    try:
        json.loads(v)
        return True
    except ValueError:
        return False


def cmd_serve(args) -> int:
    from .logs import configure_logging
    from .repository import ModelRepository
    from .serving.app import serve
    from .serving.servicer import ServerLimits

    settings = server_settings(args)
    configure_logging(settings["logging"]["level"], settings["logging"]["format"])
    srv, lim, slog = settings["server"], settings["limits"], settings["signal_log"]
    tls, auth = _serve_security(settings)  # bad TLS or token settings fail before any model loads
    if lim["batch_window_us"] < 0:
        raise ValueError(f"batch_window_us: must be >= 0, got {lim['batch_window_us']}")
    limits = ServerLimits(
        batch_window_s=lim["batch_window_us"] * 1e-6,
        max_batch_rows=lim["max_batch_rows"],
        max_concurrent_streams=lim["max_concurrent_streams"],
        max_ticks_per_message=lim["max_ticks_per_message"],
        max_instruments_per_stream=lim["max_instruments_per_stream"],
        max_message_bytes=lim["max_message_bytes"],
    )  # ValueError naming the limit for a value < 1
    if srv["workers"] < 1:
        raise ValueError(f"workers: must be >= 1, got {srv['workers']}")
    if srv["http_port"] < -1 or srv["http_port"] > 65535:
        raise ValueError(f"http_port: -1 (off), 0 (a free port) or a port number, got {srv['http_port']}")
    plugins = _plugins(args)
    for info in plugins.infos:
        if info.status == "failed":
            print(f"plugin {info.name} ({info.distribution}) skipped: {info.reason}", file=sys.stderr)
    repository = ModelRepository(Path(srv["models"]), plugins.adapters, default_model=srv["default_model"])
    repository.load_all()
    for entry in repository.entries():
        line = f"model {entry.name}/{entry.version}: {entry.state.value}"
        print(line + (f" ({entry.reason})" if entry.reason else ""), file=sys.stderr)
    asyncio.run(
        serve(
            repository,
            srv["host"],
            srv["port"],
            grace=srv["grace"],
            ready_file=args.ready_file,
            limits=limits,
            tls=tls,
            auth=auth,
            workers=srv["workers"],
            http_port=srv["http_port"] if srv["http_port"] >= 0 else None,
            signal_log=Path(slog["path"]) if slog["enabled"] else None,
            signal_log_max_rows=slog["max_queued_rows"],
        )
    )
    return 0


def _time_ns(text: str | None, flag: str) -> int | None:
    from datetime import datetime

    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{flag}: expected ns since the epoch or an ISO 8601 time, got {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


def cmd_signals(args) -> int:
    import json

    from .settings import load_settings
    from .signal_log import query_signals

    db = args.db or Path(load_settings(args.config)["signal_log"]["path"])
    rows = query_signals(
        db,
        instrument=args.instrument,
        model=args.model,
        version=args.version,
        start_ns=_time_ns(args.start, "--start"),
        end_ns=_time_ns(args.end, "--end"),
        limit=args.limit,
    )
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(
        f"{'TIME (UTC)':<26} {'INSTRUMENT':<12} {'SEQ':>8} {'MODEL':<18} {'ACTION':<5} {'P_BUY':>6} {'P_SELL':>6} "
        f"{'STRENGTH':<8} {'RISK':<6} {'LAT_US':>8}"
    )
    from datetime import datetime

    for r in rows:
        when = datetime.fromtimestamp(r["timestamp_ns"] / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        seq = "-" if r["sequence"] is None else r["sequence"]
        model = f"{r['model']}/{r['model_version']}"
        print(
            f"{when:<26} {r['instrument']:<12} {seq:>8} {model:<18} {r['action']:<5} {r['p_buy']:6.3f} "
            f"{r['p_sell']:6.3f} {r['strength']:<8} {r['risk']:<6} {r['latency_us']:8.0f}"
        )
    print(f"{len(rows)} signal(s) from {db}")
    return 0


def cmd_config(args) -> int:
    print(server_settings(args).to_toml(), end="")
    return 0


def cmd_stream(args) -> int:
    import time

    from .output import format_error, format_signal, signal_header
    from .serving.converters import frame_to_protos

    frame = _load_frame(args.file, args.samples, args.seed, args.limit)
    counts: dict[str, int] = {}
    started = time.perf_counter()
    with _client(args) as client:
        print(signal_header())
        for i, result in enumerate(
            client.stream_signals(frame_to_protos(frame), model=args.model, version=args.version, batch_size=args.batch)
        ):
            kind = result.WhichOneof("result")
            if kind == "error":
                print(format_error(result.error))
                counts["error"] = counts.get("error", 0) + 1
                continue
            name = _action_name(result.signal.action)
            counts[name] = counts.get(name, 0) + 1
            if i % max(1, args.every) == 0:
                print(format_signal(result.signal), flush=True)
    elapsed = time.perf_counter() - started
    total = sum(counts.values())
    print(
        f"{total} ticks answered in {elapsed:.2f} s ({total / elapsed:.0f} ticks/s, batch {args.batch}); "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    return 0


def _action_name(value: int) -> str:
    from tickserve_proto.v1 import tickserve_pb2 as pb

    return pb.Action.Name(value).removeprefix("ACTION_")


def cmd_evaluate(args) -> int:
    from tickserve_proto.v1 import tickserve_pb2 as pb

    from .evaluate_span import choose_span
    from .output import format_comparison, format_report
    from .progress import ProgressBar
    from .serving.converters import frame_to_protos

    frame = _load_frame(args.file, args.samples, args.seed, args.limit)
    with _client(args) as client:
        if args.all_models:
            listing = client.list_models()
            infos = [m for m in listing.models if m.state == pb.MODEL_STATE_READY]
            infos = [next(m for m in infos if m.name == name) for name in sorted({m.name for m in infos})]
        else:
            infos = [client.get_model(args.model, args.version)]
        span = choose_span(frame, infos, args.span)
        if span.message:
            print(span.message, file=sys.stderr)
        ticks = frame_to_protos(span.frame)
        options = dict(cost_ticks=args.cost_ticks, fee_bps=args.fee_bps, score_from_ns=span.score_from_ns)
        if not args.all_models:
            print(
                format_report(
                    _evaluate_one(client, ticks, args.model, args.version, ProgressBar("evaluating"), **options)
                )
            )
            return 0
        reports = []
        for info in infos:  # the newest READY version of each; a log (not a terminal) gets one line per model
            bar = ProgressBar(f"evaluating {info.name}", enabled=sys.stderr.isatty())
            reports.append(_evaluate_one(client, ticks, info.name, "", bar, **options))
            if not sys.stderr.isatty():
                print(f"evaluated {info.name}: {len(ticks)} ticks", file=sys.stderr)
    print(format_comparison(reports))
    default = next((r for r in reports if r.model == listing.default_model), reports[0] if reports else None)
    if default is not None:
        print()
        print(format_report(default))
    return 0


def _evaluate_one(
    client,
    ticks,
    model: str,
    version: str,
    bar,
    *,
    cost_ticks: float = 0.0,
    fee_bps: float = 0.0,
    score_from_ns: int = 0,
):
    from tickserve_proto.v1 import tickserve_pb2 as pb

    every = max(1, len(ticks) // 10)

    def requests():  # as client.evaluate, plus the EvaluateConfig options
        config = pb.EvaluateConfig(
            model=model,
            version=version,
            progress_every=every,
            cost_ticks=cost_ticks,
            fee_bps=fee_bps,
            score_from_ns=score_from_ns,
        )
        yield pb.EvaluateRequest(config=config)
        for start in range(0, len(ticks), 1000):
            yield pb.EvaluateRequest(batch=pb.TickBatch(ticks=ticks[start : start + 1000]))

    report = None
    for response in client.stub.Evaluate(requests(), timeout=client.timeout):
        if response.WhichOneof("payload") == "progress":
            bar(response.progress.ticks, len(ticks), f"accuracy {response.progress.accuracy:.4f}")
        else:
            report = response.report
    if report is None:
        raise RuntimeError("the server ended Evaluate without a report")
    return report


def cmd_models(args) -> int:
    with _client(args) as client:
        response = client.list_models()
    _print_models(response.models, response.default_model)
    return 0


def _print_models(models, default_model: str = "") -> None:
    from tickserve_proto.v1 import tickserve_pb2 as pb

    print(f"{'MODEL':24s} {'VERSION':8s} {'ADAPTER':10s} {'STATE':8s} {'FEATURES':8s} {'PREDICTOR':10s} NOTE")
    for m in models:
        state = pb.ModelState.Name(m.state).removeprefix("MODEL_STATE_")
        note = m.state_reason or ("default" if m.name == default_model else "")
        # what computes the predictions, when the adapter says (LightGBM: lleaves when compiled)
        predictor = m.runtime.get("predictor", "").split(" (")[0] or "-"
        print(
            f"{m.name:24s} {m.version:8s} {m.adapter:10s} {state:8s} {len(m.feature_names):<8d} {predictor:10s} {note}"
        )


def cmd_repository(args) -> int:
    if args.action != "index" and not args.model:
        raise ValueError(f"repository {args.action}: name the model")
    with _client(args) as client:
        if args.action == "index":
            models = client.repository_index()
        else:
            models = getattr(client, f"{args.action}_model")(args.model, args.version)
    _print_models(models)
    return 0


def cmd_ensemble(args) -> int:
    from .ensemble import ensemble_manifest
    from .manifest import ModelManifest
    from .repository import version_key
    from .training import next_version

    members = []
    for spec in args.member:
        ref, _, weight = spec.partition("=")
        name, _, version = ref.partition(":")
        if not version:
            versions = (
                [p.name for p in (args.models / name).iterdir() if p.is_dir()] if (args.models / name).is_dir() else []
            )
            if not versions:
                raise ValueError(f"--member {spec}: no model {name!r} in {args.models}")
            version = max(versions, key=version_key)
        members.append((ModelManifest.load(args.models / name / version), float(weight or 1.0)))
    version = args.version or next_version(args.models, args.name)
    target = args.models / args.name / version
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    target.mkdir(parents=True)
    ensemble_manifest(args.name, version, members).save(target)
    print(f"wrote {target} (members: {', '.join(f'{m.name}/{m.version}={w:g}' for m, w in members)})")
    return 0


def cmd_plugins(args) -> int:
    plugins = _plugins(args)
    print(f"{'PLUGIN':28s} {'DISTRIBUTION':22s} {'VERSION':9s} {'STATUS':9s} ADAPTERS / REASON")
    for info in plugins.infos:
        detail = info.reason or ", ".join(info.adapters)
        print(f"{info.name:28s} {info.distribution:22s} {info.version:9s} {info.status:9s} {detail}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo, run_real_demo

    if args.data is not None:
        return run_real_demo(
            args.data,
            instrument=args.instrument,
            tick_size=args.tick_size,
            calendar=args.calendar,
            show=args.show,
            models=args.data_models,
        )
    return run_demo(args.models, args.train_samples, args.holdout_samples, args.show, args.prepare_only)


if __name__ == "__main__":
    sys.exit(main())
