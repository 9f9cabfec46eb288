"""Clients of a running server: `tickserve stream`, `evaluate`, `models` and `repository`.

They import tickserve_client and the generated stubs, never a model library.
"""

from __future__ import annotations

import sys

from .data import _load_frame


def _client(args):
    """A TickserveClient for --server with the TLS and token flags (and $TICKSERVE_TOKEN)."""
    import os

    from tickserve_client import TickserveClient

    from ..serving.security import CLIENT_TOKEN_ENV, SecurityConfigError, read_pem, read_token_file

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


def cmd_stream(args) -> int:
    import time

    from ..serving.converters import frame_to_protos
    from .output import format_error, format_signal, signal_header

    frame = _load_frame(args.file, args.samples, args.seed, args.limit)
    counts: dict[str, int] = {}
    started = time.perf_counter()
    with _client(args) as client:
        for i, result in enumerate(
            client.stream_signals(frame_to_protos(frame), model=args.model, version=args.version, batch_size=args.batch)
        ):
            if i == 0:  # after the first answer: a server that is down or refuses prints no table
                print(signal_header())
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

    from ..evaluation.span import choose_span
    from .output import format_comparison, format_report
    from .progress import ProgressBar

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
        ticks = span.frame  # sent as TickColumns
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
    frame,
    model: str,
    version: str,
    bar,
    *,
    cost_ticks: float = 0.0,
    fee_bps: float = 0.0,
    score_from_ns: int = 0,
):
    from tickserve_client import frame_columns

    report = None
    for response in client.evaluate(
        columns=frame_columns(frame, 1000),
        model=model,
        version=version,
        progress_every=max(1, len(frame) // 10),
        cost_ticks=cost_ticks,
        fee_bps=fee_bps,
        score_from_ns=score_from_ns,
    ):
        if response.WhichOneof("payload") == "progress":
            bar(response.progress.ticks, len(frame), f"accuracy {response.progress.accuracy:.4f}")
        else:
            report = response.report
    if report is None:
        raise RuntimeError("the server ended Evaluate without a report")
    return report


def cmd_models(args) -> int:
    with _client(args) as client:
        if args.model:  # one model: its details, as GetModel answers them
            _print_model(client.get_model(args.model, args.version))
            return 0
        response = client.list_models()
    _print_models(response.models, response.default_model)
    return 0


def _print_model(m) -> None:
    from tickserve_proto.v1 import tickserve_pb2 as pb

    state = pb.ModelState.Name(m.state).removeprefix("MODEL_STATE_")
    print(f"{m.name}/{m.version}: {state}" + (f" ({m.state_reason})" if m.state_reason else ""))
    print(f"  adapter         {m.adapter}" + "".join(f", {k} {v}" for k, v in sorted(m.runtime.items())))
    lc = m.label_config
    horizon = f"{lc.horizon_ns / 1e9:g} s" if lc.horizon_ns else f"{lc.horizon_ticks} ticks"
    print(f"  labels          {lc.mode or 'mid'}, horizon {horizon}, classes {', '.join(m.classes)}")
    print(
        f"  features        {len(m.feature_names)} (stage version {m.feature_stage_version}): {', '.join(m.feature_names)}"
    )
    print(f"  data            fingerprint {m.data_fingerprint[:16] or '-'}")
    for key in sorted(m.metrics):
        print(f"  {key:<15} {m.metrics[key]:.4f}")
    for note in m.training_notes:
        print(f"  note: {note}")


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
    if args.action in ("load", "reload"):  # a script or CI must not pass a deployment that failed
        from tickserve_proto.v1 import tickserve_pb2 as pb

        # not READY, or READY only because a failed reload left the previous load serving
        failed = [
            m
            for m in models
            if m.name == args.model and (m.state != pb.MODEL_STATE_READY or m.state_reason.startswith("reload failed"))
        ]
        if failed:
            what = "; ".join(
                f"{m.name}/{m.version} {pb.ModelState.Name(m.state).removeprefix('MODEL_STATE_')}"
                + (f" ({m.state_reason})" if m.state_reason else "")
                for m in failed
            )
            print(f"tickserve: error: repository {args.action} {args.model}: {what}", file=sys.stderr)
            return 1
    return 0
