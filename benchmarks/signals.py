"""The signal scoreboard: `make signal-bench` (= `.venv/bin/python benchmarks/signals.py`).

For every real data set under ../shared/data (one directory per instrument: a
book file, book*.csv[.gz]|parquet, optionally trades*, and a README naming the
price tick size; absent: the tick size is inferred from the prices), this
imports the ticks as `tickserve import` does, trains a LightGBM model with
`tickserve train`'s defaults (taker labels, the horizon chosen from the data,
3 walk-forward folds; `training.train_model`), and writes benchmarks/SIGNALS.md:
per instrument and fold, macro-F1 of the model and of each baseline, the
margin, what STRONG signals earned with one position at a time after
crossing the spread (trades, hit and win rates, P&L in ticks and bps), the
same for the naive rules, the top ten features, the command, machine and
versions; then the issue's targets, met or not, per instrument.

A benchmark, not a test: nothing here asserts a score. tests/test_signal_bench.py
runs it on a small slice so it cannot rot.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
_TICK_SIZE = re.compile(r"tick size is\s*([0-9]*\.?[0-9]+(?:e-?\d+)?)", re.IGNORECASE)


@dataclass
class Result:
    name: str
    ticks: int
    seconds: float
    tick_size: float
    tick_size_from: str
    report: object  # training.report.TrainingReport
    top_features: list[tuple[str, float]]
    train_seconds: float


def readme_tick_size(directory: Path) -> float | None:
    for readme in sorted(directory.glob("README*")):
        match = _TICK_SIZE.search(readme.read_text(errors="replace"))
        if match:
            return float(match.group(1))
    return None


def import_dir(directory: Path, out: Path, max_ticks: int):
    from tickserve.core.ticks import read_parquet
    from tickserve.demo import find_file
    from tickserve.features import ALWAYS_OPEN
    from tickserve.importer import ImportSettings, column_names, run_import

    book = find_file(directory, "book")
    if book is None:
        raise FileNotFoundError(f"no book file (book*.csv[.gz] or book*.parquet) in {directory}")
    trades = find_file(directory, "trades")
    tick_size = readme_tick_size(directory)
    mapping = {}
    if "timestamp_ns" not in column_names(book) and "local_ts_ns" in column_names(book):
        mapping["timestamp_ns"] = "local_ts_ns"  # the receive time, as the shared data's READMEs describe
    settings = ImportSettings(instrument=directory.name, tick_size=tick_size, calendar=ALWAYS_OPEN, mapping=mapping)
    run_import(book, trades, out, settings)
    frame = read_parquet(out)
    if max_ticks and len(frame) > max_ticks:
        frame = frame.take(slice(0, max_ticks))
    return frame, settings.tick_size, "README" if tick_size is not None else "inferred from the prices"


def score(directory: Path, models: Path, max_ticks: int, params: dict) -> Result:
    from tickserve.features import ALWAYS_OPEN, FeatureConfig
    from tickserve.models.manifest import ModelManifest
    from tickserve.plugins.manager import load_plugins
    from tickserve.training import train_model
    from tickserve.training.report import TrainingReport

    frame, tick_size, source = import_dir(directory, models / f"{directory.name}.parquet", max_ticks)
    adapter = load_plugins().adapters["lightgbm"]
    config = FeatureConfig(default_tick_size=tick_size, tick_sizes=((directory.name, tick_size),), calendar=ALWAYS_OPEN)
    started = time.perf_counter()
    path, manifest = train_model(
        frame,
        adapter=adapter,
        models_dir=models,
        name=_model_name(directory.name),
        feature_config=config,
        params=params,
    )
    elapsed = time.perf_counter() - started
    model = adapter.load(path, ModelManifest.load(path))
    importance = sorted(model.feature_importance().items(), key=lambda kv: -kv[1])
    total = sum(v for _, v in importance) or 1.0
    return Result(
        directory.name,
        len(frame),
        (int(frame.timestamp_ns[-1]) - int(frame.timestamp_ns[0])) / 1e9,
        tick_size,
        source,
        TrainingReport.from_dict(manifest.training),
        [(k, v / total) for k, v in importance[:10]],
        elapsed,
    )


def _model_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", name).strip("-.") or "instrument"
    return cleaned[:100]


# --- the report ---------------------------------------------------------------------------------

BASELINES = ("majority", "last_move", "imbalance")


def fold_rows(r: Result) -> list[str]:
    rows = []
    for k, fold in enumerate(r.report.folds, start=1):
        s = fold.test
        b = s.baselines
        st, rules = s.trading["strong"], s.trading
        best_name, _ = s.best_baseline()
        last = "(test span)" if k == len(r.report.folds) else ""
        rows.append(
            f"| {r.name} | {k} {last} | {s.rows} | {s.label_shares['BUY'] + s.label_shares['SELL']:.2f} | "
            f"**{s.macro_f1:.3f}** | {b['majority']['macro_f1']:.3f} | {b['last_move']['macro_f1']:.3f} | "
            f"{b['imbalance']['macro_f1']:.3f} | {s.margin:+.3f} ({best_name}) | {st['trades']} | "
            f"{st['hit_rate']:.2f} / {st['win_rate']:.2f} | {st['total_pnl_ticks']:+.1f} | {st['total_pnl_bps']:+.2f} | "
            f"{st['mean_pnl_bps']:+.3f} | "
            f"{rules['all']['trades']} / {rules['all']['total_pnl_bps']:+.2f} | "
            f"{rules['last_move']['total_pnl_bps']:+.2f} | {rules['imbalance']['total_pnl_bps']:+.2f} |"
        )
    return rows


def targets(results: list[Result]) -> list[str]:
    lines = [
        "| instrument | above the best baseline in every fold | mean margin | margin >= +0.05 | "
        "STRONG P&L >= 0 (every fold, summed) | STRONG P&L > 0 and hit rate > 55% (summed) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    every = half_margin = nonneg = good = 0
    for r in results:
        folds = [f.test for f in r.report.folds]
        margins = [s.margin for s in folds]
        trades = sum(s.trading["strong"]["trades"] for s in folds)
        pnl = sum(s.trading["strong"]["total_pnl_ticks"] for s in folds)
        hits = sum(s.trading["strong"]["hit_rate"] * s.trading["strong"]["trades"] for s in folds)
        hit_rate = hits / trades if trades else 0.0
        all_above = all(m > 0 for m in margins)
        mean = float(np.mean(margins))
        pnl_ok = all(s.trading["strong"]["total_pnl_ticks"] >= 0 for s in folds)
        profitable = pnl > 0 and hit_rate > 0.55
        every += all_above
        half_margin += mean >= 0.05
        nonneg += pnl_ok
        good += profitable
        lines.append(
            f"| {r.name} | {'yes' if all_above else 'NO'} ({', '.join(f'{m:+.3f}' for m in margins)}) | "
            f"{mean:+.3f} | {'yes' if mean >= 0.05 else 'no'} | {'yes' if pnl_ok else 'NO'} "
            f"({pnl:+.1f} ticks, {trades} trades) | {'yes' if profitable else 'no'} (hit rate "
            f"{hit_rate:.2f}) |"
        )
    n = len(results)
    lines += [
        "",
        f"Every fold above the best baseline: {every} of {n} instruments (target: all). Mean margin >= +0.05: "
        f"{half_margin} of {n} (target: at least half). STRONG P&L >= 0 in every fold: {nonneg} of {n} "
        f"(target: all). STRONG P&L > 0 with hit rate > 55%: {good} of {n} (target: at least half).",
    ]
    return lines


def write_report(results: list[Result], skipped: list[str], out: Path, command: str, elapsed: float) -> str:
    import lightgbm

    import tickserve

    lines = [
        "# Signal scoreboard",
        "",
        f"`{command}` ({datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {elapsed:.0f} s; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, tickserve "
        f"{tickserve.__version__}, LightGBM {lightgbm.__version__}, numpy {np.__version__}). Written by "
        "`benchmarks/signals.py`; what each figure means: docs/trading-metrics.md.",
        "",
        "Each instrument is imported as `tickserve import` does and trained with `tickserve train`'s defaults: "
        "taker labels (a BUY or SELL is a round trip at the touch that pays for the spread), the horizon chosen "
        "from the ticks before the first test block, LightGBM, 3 walk-forward folds (expanding window, purged; "
        "each fold tests on the next 20% of the ticks; fold 3's model is the one a user gets, its block the "
        "held-out test span). Nothing below was tuned on these figures' spans.",
        "",
        "Columns: `BUY/SELL share` of the fold's labels; macro-F1 of the model and of each baseline on the same "
        "labeled ticks, and the model's margin over the best one; `STRONG`: one position per instrument on the "
        "STRONG signals, held to the label tick, after crossing the spread (no fees): trades, hit rate (the mid "
        "moved the signal's way) / win rate (the round trip made money), P&L in ticks and in bps of price; then "
        "every BUY/SELL signal of the model, and the last-move and imbalance rules, one position at a time, in bps.",
        "",
        "Fees are not charged here: compare `bps / trade` (the STRONG round trips' mean P&L after the spread) with "
        "your own fees per round trip. On these crypto books the spread is a fraction of a basis point, so the "
        "edges are real but small: at a typical exchange taker fee of a few bps per side none of them would pay; "
        "train with `--cost-ticks` so the labels and the cost gate charge your costs.",
        "",
        "| instrument | fold | test ticks | BUY/SELL share | model | majority | last_move | imbalance | margin "
        "(best) | STRONG trades | hit / win | STRONG P&L ticks | STRONG P&L bps | bps / trade | model all: trades / bps | "
        "last_move bps | imbalance bps |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in results:
        lines += fold_rows(r)
    lines += ["", "## Targets", ""] + targets(results)
    lines += ["", "## Per instrument", ""]
    for r in results:
        rep = r.report
        lines += [
            f"### {r.name}",
            "",
            f"{r.ticks} ticks over {r.seconds:.0f} s; tick size {r.tick_size:g} ({r.tick_size_from}); "
            f"training took {r.train_seconds:.0f} s.",
            "",
            f"- labels: {rep.label}",
            *[f"- {n}" for n in rep.sentences()],
            "- top ten features (share of total gain): " + ", ".join(f"{k} {v:.3f}" for k, v in r.top_features),
            "",
        ]
    if skipped:
        lines += ["## Skipped", ""] + [f"- {s}" for s in skipped] + [""]
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help=f"one directory per instrument (default {DEFAULT_DATA})"
    )
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "SIGNALS.md")
    p.add_argument("--max-ticks", type=int, default=0, help="use only the first N ticks of each instrument (0: all)")
    p.add_argument("--only", action="append", default=[], help="only this instrument directory (repeatable)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="LightGBM parameter override (JSON values), as `tickserve train --param`",
    )
    args = p.parse_args(argv)
    import json

    params = {}
    for item in args.param:
        key, _, value = item.partition("=")
        params[key] = json.loads(value)
    command = "make signal-bench" if not argv else "benchmarks/signals.py " + " ".join(argv)
    if not args.data.is_dir():
        print(f"signal-bench: skipped: no data directory {args.data} (the shared real data sets live there)")
        return 0
    dirs = sorted(d for d in args.data.iterdir() if d.is_dir() and (not args.only or d.name in args.only))
    results, skipped = [], []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tickserve-signal-bench-") as tmp:
        for directory in dirs:
            print(f"== {directory.name}", flush=True)
            try:
                r = score(directory, Path(tmp), args.max_ticks, params)
            except (OSError, ValueError) as exc:
                skipped.append(f"{directory.name}: {exc}")
                print(f"   skipped: {exc}", flush=True)
                continue
            results.append(r)
            for row in fold_rows(r):
                print("  " + row, flush=True)
    if not results:
        print("signal-bench: no data set could be scored" + "".join(f"\n  {s}" for s in skipped))
        return 0
    write_report(results, skipped, args.out, command, time.perf_counter() - started)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
