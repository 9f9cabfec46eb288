"""The argument parser of the `tickserve` command: every subcommand, its flags, defaults and help.

Each subcommand's `func` is the `cmd_*` function of its module (data, train, serve, client,
signals, plugins, demo), which imports what it needs only when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import __doc__ as cli_doc  # its first line is the description of `tickserve --help`
from .bridge import add_bridge_parser
from .client import cmd_evaluate, cmd_models, cmd_repository, cmd_stream
from .cluster import cmd_cluster
from .data import cmd_import, cmd_simulate
from .demo import cmd_demo
from .flags import _client_security_args, _feature_args, _plugin_filter_args, _server_settings_args
from .plugins import cmd_check_plugin, cmd_plugins
from .serve import cmd_config, cmd_serve
from .signals import cmd_signals
from .train import cmd_check, cmd_compile, cmd_ensemble, cmd_train

DEFAULT_SERVER = "127.0.0.1:50051"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tickserve", description=cli_doc.splitlines()[0])
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="default: warning")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="write simulated order-book ticks to a Parquet (or CSV) file")
    s.add_argument("--ticks", type=int, default=30_000, help="ticks in total, across instruments")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--out",
        type=Path,
        required=True,
        help="a .csv name writes the wide CSV layout (instrument, timestamp_ns, last_price, last_size, "
        "bid_px_N, bid_qty_N, ask_px_N, ask_qty_N, sequence, aggressor) that the Node client and the "
        "dashboard read; any other name writes Parquet",
    )
    s.set_defaults(func=cmd_simulate)

    i = sub.add_parser(
        "import",
        help="import order-book (+ trades) files in the wide layout into a canonical tick file",
        description="Wide layout: a timestamp column and bid_px_N, bid_qty_N, ask_px_N, ask_qty_N per "
        "level (CSV, .csv.gz or Parquet); trades: timestamp, price, qty and optionally the "
        "aggressor side (an aggressor or a buyer_is_maker column). Every setting may "
        "also come from the [import] table of --config; flags win. See "
        "server/tickserve/importer/__init__.py for the merge rule and the bad-row reasons.",
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
    t.add_argument(
        "--name",
        default=None,
        help="the model's name (default: <data file stem>-<adapter>, or simulated-<adapter>)",
    )
    t.add_argument("--version", default=None, help="default: the next integer")
    t.add_argument(
        "--new-version",
        action="store_true",
        help="add a version to an existing model even though its data, feature config or adapter "
        "differ from its newest version's (refused without this flag)",
    )
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
        "15%% of the training labels are BUY or SELL (server/tickserve/training/label_choice.py)",
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
    t.add_argument(
        "--dask",
        default=None,
        metavar="ADDRESS|local[:N]",
        help="compute features and labels in chunks on a Dask cluster (the same bits as one process) and "
        "fit with the adapter's train_dask (lightgbm.dask) where it has one: a scheduler address, or "
        "local[:N] for N local worker processes (default 2); needs tickserve[dask]",
    )
    t.add_argument(
        "--dask-chunk-rows",
        type=int,
        default=200_000,
        metavar="ROWS",
        help="with --dask: ticks per chunk (default 200000), each with its warm-up and label look-ahead",
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

    cl = sub.add_parser(
        "cluster",
        help="N serve replicas behind nginx (gRPC) on loopback, health-checked through gRPC health",
        description="Starts the replicas on free loopback ports (each with --drain), nginx on --port "
        "(installed with apt-get when missing and root) and a supervisor that takes a replica whose "
        "gRPC health is not SERVING out of nginx's upstream. SIGINT/SIGTERM drains and stops all. "
        "Flags after -- go to every `tickserve serve`.",
    )
    cl.add_argument("--models", default="models", help="the model repository (default: models)")
    cl.add_argument("--replicas", type=int, default=3, help="serve processes (default 3)")
    cl.add_argument("--host", default="127.0.0.1", help="nginx's listen address (default 127.0.0.1)")
    cl.add_argument("--port", type=int, default=50051, help="nginx's gRPC port (default 50051)")
    cl.add_argument("--drain", type=float, default=5.0, help="each replica's --drain on stop (default 5)")
    cl.add_argument("--grace", type=float, default=5.0, help="each replica's --grace on stop (default 5)")
    cl.add_argument("--health-interval", type=float, default=0.5, help="seconds between health polls (0.5)")
    cl.add_argument("--run-dir", type=Path, help="nginx's prefix, config, logs, replica logs (default: a temp dir)")
    cl.add_argument("--no-install", action="store_true", help="never apt-get install nginx")
    cl.add_argument("serve_args", nargs=argparse.REMAINDER, help="-- then flags for every replica's `serve`")
    cl.set_defaults(func=cmd_cluster)

    sg = sub.add_parser("signals", help="query the signal log (every signal the server served)")
    sg.add_argument("--db", type=Path, help="the SQLite file (default: the [signal_log] path of the settings)")
    sg.add_argument("--config", type=Path, default=None, help="TOML config file (default: $TICKSERVE_CONFIG)")
    sg.add_argument("--instrument")
    sg.add_argument("--model")
    sg.add_argument("--version")
    sg.add_argument("--start", help="first tick time: ns since the epoch or ISO 8601 (UTC unless it says)")
    sg.add_argument("--end", help="end of the time range (exclusive), same forms")
    sg.add_argument(
        "--limit", type=int, default=100, help="at most this many: the latest, or the first from --start (100)"
    )
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
    _plugin_filter_args(e)
    e.set_defaults(func=cmd_ensemble)

    ck = sub.add_parser(
        "check",
        help="run the server's load-time checks on a model version, a model or a repository, offline "
        "(exit 1 when any would not be READY)",
    )
    ck.add_argument("path", type=Path, help="models/NAME/VERSION, models/NAME or models/")
    _plugin_filter_args(ck)
    ck.set_defaults(func=cmd_check)

    r = sub.add_parser("repository", help="index, load, reload or unload models on a running server")
    r.add_argument("action", choices=["index", "load", "reload", "unload"])
    r.add_argument("model", nargs="?", default="")
    r.add_argument("--version", default="")
    r.add_argument("--server", default=DEFAULT_SERVER)
    _client_security_args(r)
    r.set_defaults(func=cmd_repository)

    m = sub.add_parser("models", help="list the models a server serves, or show one (tickserve models NAME)")
    m.add_argument("model", nargs="?", default="", help="show this model's details (its newest READY version)")
    m.add_argument("--version", default="", help="with MODEL: this version")
    m.add_argument("--server", default=DEFAULT_SERVER)
    _client_security_args(m)
    m.set_defaults(func=cmd_models)

    g = sub.add_parser("plugins", help="list the plugins and adapters installed here")
    _plugin_filter_args(g)
    g.set_defaults(func=cmd_plugins)

    k = sub.add_parser(
        "check-plugin",
        help="run the adapter contract on an installed adapter (exit 1 if any check fails)",
        description="Trains the adapter on synthetic rows (or loads --model-dir) and checks storage, load, "
        "probabilities, batch == single rows, determinism, concurrent calls and threads.",
    )
    k.add_argument("name", help="the adapter's name, as `tickserve plugins` lists it")
    k.add_argument("--model-dir", type=Path, help="a model version directory to check (for an adapter without train)")
    _plugin_filter_args(k)
    k.set_defaults(func=cmd_check_plugin)

    add_bridge_parser(sub, _plugin_filter_args)  # its flags are the [bridge] settings, from settings.py

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
