"""`tickserve signals`: query the signal log, the SQLite file of every signal the server served."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path


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

    from ..serving.signal_log import query_signals
    from ..settings import load_settings

    db = args.db or Path(load_settings(args.config)["signal_log"]["path"])
    rows = query_signals(
        db,
        instrument=args.instrument,
        model=args.model,
        version=args.version,
        start_ns=_time_ns(args.start, "--start"),
        end_ns=_time_ns(args.end, "--end"),
        limit=args.limit,
        newest=args.start is None,  # a log is read from its end (the latest signals), unless a start is given
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
    which = "the first" if args.start is not None else "the latest"
    print(f"{len(rows)} signal(s) from {db} ({which} {args.limit} at most: --limit N, --start TIME)")
    return 0
