"""The `tickserve` command: simulate, train, serve, stream, evaluate, models, plugins, demo.

Each subcommand imports what it needs when it runs, so `tickserve --help` is fast
and client-side commands never load model libraries.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

DEFAULT_MODEL_NAME = "signal-lgbm"
DEFAULT_SERVER = "127.0.0.1:50051"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
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
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="write simulated order-book ticks to a Parquet file")
    s.add_argument("--ticks", type=int, default=30_000, help="ticks in total, across instruments")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=cmd_simulate)

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
    t.add_argument("--horizon", type=int, default=50, help="label horizon in ticks")
    t.add_argument("--threshold", type=float, default=2.0, help="label threshold in tick sizes")
    t.add_argument("--features", default="", help="comma-separated feature names (default: the standard set)")
    t.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="adapter parameter override")
    _plugin_filter_args(t)
    t.set_defaults(func=cmd_train)

    v = sub.add_parser("serve", help="serve the model repository over gRPC")
    v.add_argument("--models", type=Path, default=Path("models"))
    v.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    v.add_argument("--port", type=int, default=50051, help="0 picks a free port")
    v.add_argument("--default-model", default="", help="model used when a request names none")
    v.add_argument("--grace", type=float, default=5.0, help="seconds in-flight calls get at shutdown")
    v.add_argument("--ready-file", type=Path, help="write the bound port here once serving")
    v.add_argument("--batch-window-us", type=float, default=300.0,
                   help="micro-batching window across streams, in us (0 disables batching)")
    v.add_argument("--max-batch-rows", type=int, default=256, help="largest micro-batch")
    _plugin_filter_args(v)
    v.set_defaults(func=cmd_serve)

    for name, func, helptext in (
        ("stream", cmd_stream, "stream ticks through StreamSignals and print the signals"),
        ("evaluate", cmd_evaluate, "evaluate a served model on ticks (labels come from the ticks)"),
    ):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("--server", default=DEFAULT_SERVER)
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
            c.add_argument("--all-models", action="store_true",
                           help="evaluate every READY model: a comparison table, then the default model's report")
        c.set_defaults(func=func)

    e = sub.add_parser("ensemble", help="write an ensemble manifest from models in the repository")
    e.add_argument("--models", type=Path, default=Path("models"))
    e.add_argument("--name", required=True)
    e.add_argument("--version", default=None, help="default: the next integer")
    e.add_argument("--member", action="append", required=True, metavar="MODEL[:VERSION][=WEIGHT]",
                   help="a member (default version: the newest on disk; default weight 1)")
    e.set_defaults(func=cmd_ensemble)

    r = sub.add_parser("repository", help="index, load, reload or unload models on a running server")
    r.add_argument("action", choices=["index", "load", "reload", "unload"])
    r.add_argument("model", nargs="?", default="")
    r.add_argument("--version", default="")
    r.add_argument("--server", default=DEFAULT_SERVER)
    r.set_defaults(func=cmd_repository)

    m = sub.add_parser("models", help="list the models a server serves")
    m.add_argument("--server", default=DEFAULT_SERVER)
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
    d.set_defaults(func=cmd_demo)
    return p


def _feature_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--default-tick-size", type=float, default=0.01)
    p.add_argument("--tick-size", action="append", default=[], metavar="INSTRUMENT=SIZE")
    p.add_argument("--calendar", default="us-equities", help="session calendar name (us-equities, 24x7, plugins')")


def _plugin_filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="TOML config file (default: $TICKSERVE_CONFIG)")
    p.add_argument("--allow-plugin", action="append", default=None, metavar="NAME", help="load only these plugins")
    p.add_argument("--deny-plugin", action="append", default=None, metavar="NAME", help="never load these plugins")


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

    from .features import DEFAULT_MODEL_FEATURES, FeatureConfig
    from .labels import LabelConfig
    from .progress import ProgressBar
    from .training import train_model

    plugins = _plugins(args)
    adapter = plugins.adapters.get(args.adapter)
    if adapter is None:
        raise ValueError(f"--adapter: no adapter named {args.adapter!r} (installed: {', '.join(sorted(plugins.adapters)) or 'none'})")
    feature_config = FeatureConfig(
        default_tick_size=args.default_tick_size,
        tick_sizes=tuple(sorted((k, float(v)) for k, v in _key_values(args.tick_size, "--tick-size").items())),
        calendar=plugins.calendar(args.calendar),
    )
    params = {k: json.loads(v) if _is_json(v) else v for k, v in _key_values(args.param, "--param").items()}
    features = tuple(f.strip() for f in args.features.split(",") if f.strip()) or DEFAULT_MODEL_FEATURES
    frame = _load_frame(args.data_file, args.samples, args.seed)
    source = args.data_file or f"simulator (seed {args.seed})"
    print(f"training {args.adapter} model {args.name!r} on {len(frame)} ticks from {source}")
    path, manifest = train_model(
        frame,
        adapter=adapter,
        models_dir=args.models,
        name=args.name,
        version=args.version,
        feature_config=feature_config,
        label_config=LabelConfig(args.horizon, args.threshold),
        feature_names=features,
        params=params,
        progress=ProgressBar("boosting"),
    )
    m = manifest.metrics
    print(f"wrote {path}")
    for span in ("valid", "test"):
        if f"{span}_accuracy" in m:
            print(
                f"  {span:5s}: accuracy {m[f'{span}_accuracy']:.4f}  macro-F1 {m[f'{span}_macro_f1']:.4f}  "
                f"log loss {m[f'{span}_log_loss']:.4f}  majority baseline {m[f'{span}_majority_baseline_accuracy']:.4f}  "
                f"Brier {m[f'{span}_brier_uncalibrated']:.4f} -> {m[f'{span}_brier']:.4f} calibrated"
            )
    if manifest.calibration:
        print(f"  calibration: temperature {manifest.calibration['temperature']:.3f} (fitted on the validation span)")
    return 0


def _is_json(v: str) -> bool:
    import json

    try:
        json.loads(v)
        return True
    except ValueError:
        return False


def cmd_serve(args) -> int:
    from .repository import ModelRepository
    from .serving.app import serve

    plugins = _plugins(args)
    for info in plugins.infos:
        if info.status == "failed":
            print(f"plugin {info.name} ({info.distribution}) skipped: {info.reason}", file=sys.stderr)
    repository = ModelRepository(args.models, plugins.adapters, default_model=args.default_model)
    repository.load_all()
    for entry in repository.entries():
        line = f"model {entry.name}/{entry.version}: {entry.state.value}"
        print(line + (f" ({entry.reason})" if entry.reason else ""), file=sys.stderr)
    from .serving.servicer import ServerLimits

    if args.batch_window_us < 0 or args.max_batch_rows < 1:
        raise ValueError("--batch-window-us must be >= 0 and --max-batch-rows >= 1")
    limits = ServerLimits(batch_window_s=args.batch_window_us * 1e-6, max_batch_rows=args.max_batch_rows)
    asyncio.run(serve(repository, args.host, args.port, grace=args.grace, ready_file=args.ready_file, limits=limits))
    return 0


def cmd_stream(args) -> int:
    from tickserve_client import TickserveClient

    from .serving.converters import frame_to_protos

    from .output import format_error, format_signal, signal_header

    import time

    frame = _load_frame(args.file, args.samples, args.seed, args.limit)
    counts: dict[str, int] = {}
    started = time.perf_counter()
    with TickserveClient(args.server) as client:
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
    from tickserve_client import TickserveClient

    from .output import format_report
    from .progress import ProgressBar
    from .serving.converters import frame_to_protos

    from tickserve_proto.v1 import tickserve_pb2 as pb

    from .output import format_comparison

    frame = _load_frame(args.file, args.samples, args.seed, args.limit)
    ticks = frame_to_protos(frame)
    with TickserveClient(args.server) as client:
        if not args.all_models:
            print(format_report(_evaluate_one(client, ticks, args.model, args.version, ProgressBar("evaluating"))))
            return 0
        listing = client.list_models()
        ready = sorted({m.name for m in listing.models if m.state == pb.MODEL_STATE_READY})
        reports = []
        for name in ready:  # a log (not a terminal) gets one line per model, not ten
            bar = ProgressBar(f"evaluating {name}", enabled=sys.stderr.isatty())
            reports.append(_evaluate_one(client, ticks, name, "", bar))
            if not sys.stderr.isatty():
                print(f"evaluated {name}: {len(ticks)} ticks", file=sys.stderr)
    print(format_comparison(reports))
    default = next((r for r in reports if r.model == listing.default_model), reports[0] if reports else None)
    if default is not None:
        print()
        print(format_report(default))
    return 0


def _evaluate_one(client, ticks, model: str, version: str, bar):
    report = None
    for response in client.evaluate(ticks, model=model, version=version, progress_every=max(1, len(ticks) // 10)):
        if response.WhichOneof("payload") == "progress":
            bar(response.progress.ticks, len(ticks), f"accuracy {response.progress.accuracy:.4f}")
        else:
            report = response.report
    if report is None:
        raise RuntimeError("the server ended Evaluate without a report")
    return report


def cmd_models(args) -> int:
    from tickserve_client import TickserveClient

    with TickserveClient(args.server) as client:
        response = client.list_models()
    _print_models(response.models, response.default_model)
    return 0


def _print_models(models, default_model: str = "") -> None:
    from tickserve_proto.v1 import tickserve_pb2 as pb

    print(f"{'MODEL':24s} {'VERSION':8s} {'ADAPTER':10s} {'STATE':8s} {'FEATURES':8s} NOTE")
    for m in models:
        state = pb.ModelState.Name(m.state).removeprefix("MODEL_STATE_")
        note = m.state_reason or ("default" if m.name == default_model else "")
        print(f"{m.name:24s} {m.version:8s} {m.adapter:10s} {state:8s} {len(m.feature_names):<8d} {note}")


def cmd_repository(args) -> int:
    from tickserve_client import TickserveClient

    if args.action != "index" and not args.model:
        raise ValueError(f"repository {args.action}: name the model")
    with TickserveClient(args.server) as client:
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
            versions = [p.name for p in (args.models / name).iterdir() if p.is_dir()] if (args.models / name).is_dir() else []
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
    from .demo import run_demo

    return run_demo(args.models, args.train_samples, args.holdout_samples, args.show, args.prepare_only)


if __name__ == "__main__":
    sys.exit(main())
