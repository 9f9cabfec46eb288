"""Tick data: `tickserve simulate` and `tickserve import`, and the tick frame other commands load."""

from __future__ import annotations

from pathlib import Path

from .plugins import _plugins


def cmd_simulate(args) -> int:
    from ..core.tick_csv import write_csv
    from ..core.ticks import write_parquet
    from ..simulate import simulate

    frame = simulate(args.ticks, seed=args.seed)
    # .csv: the wide CSV layout the Node client and the dashboard read; anything else stays Parquet
    if args.out.suffix.lower() == ".csv":
        write_csv(frame, args.out)
    else:
        write_parquet(frame, args.out)
    print(f"wrote {len(frame)} ticks of {', '.join(frame.instruments())} to {args.out}")
    return 0


def cmd_import(args) -> int:
    from ..config import read_config
    from ..importer import ImportSettings, config_table, parse_mapping, run_import

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
    from ..errors import InvalidArgument
    from ..plugins.calendars import CALENDARS

    try:
        return plugins.calendar(name)
    except InvalidArgument as exc:
        raise ValueError(f"{exc.message} (built in: {', '.join(CALENDARS)})") from None


def _load_frame(path: Path | None, samples: int, seed: int, limit: int = 0):
    from ..core.ticks import read_parquet

    if path is not None:
        if not Path(path).is_file():  # read_parquet's error is the bare path
            hint = " (a CSV? convert it with `tickserve import`)" if Path(path).suffix in (".csv", ".gz") else ""
            raise FileNotFoundError(f"tick file {path}: no such file{hint}")
        frame = read_parquet(path)
    else:
        from ..simulate import simulate

        frame = simulate(samples, seed=seed)
    if limit:
        frame = frame.take(slice(0, limit))
    return frame
