"""Does the simulator's order flow carry signal beyond the book snapshot? Measured, not assumed.

    .venv/bin/python benchmarks/simulator_check.py [--ticks 60000] [--seed 1] [--old-only | --new-only]
    .venv/bin/python benchmarks/simulator_check.py --data-file data/btc.parquet   # a real tick file instead

On `--ticks` simulated ticks (default 60,000, seed 1), for the simulator of the branch's base commit
(a321614, copied below as `old_simulate`) and the current one (`tickserve.simulate.simulate`):

label   the mid 20 ticks later (same instrument) minus the mid now, in ticks: >= +1 BUY, <= -1 SELL,
        else HOLD (the sign of any whole-tick move; a half-tick move from a spread change is HOLD);
(a)     level-1 imbalance (q_b1 - q_a1) / (q_b1 + q_a1);
(b)     level-1..10 snapshot: the imbalance at each level k and over levels 1..k (k = 1..10);
(c)     (b) + per window W in 5, 10, 20, 50 ticks of the instrument (fewer at its start):
        level-1 order-flow imbalance (Cont, Kukanov and Stoikov 2014) summed over the window,
            e_t = 1{b_t >= b_t-1} q^b_t - 1{b_t <= b_t-1} q^b_t-1 - 1{a_t <= a_t-1} q^a_t + 1{a_t >= a_t-1} q^a_t-1,
            divided by the mean level-1 depth (q_b1 + q_a1) / 2 over the window;
        signed trade volume (aggressor * last_size) over the window / traded volume in it (0 if none);
        trades per second over the window (trade ticks / time the window spans);
(m)     a control: (b) + the mid move in ticks over the last 5, 10, 20, 50 ticks (price momentum), to see how
        much of what (c) adds the past mid moves alone would give.

Each feature is computed per instrument from that instrument's ticks up to and including the current one.
Walk-forward, 3 folds: the rows (time order) are cut into 4 equal blocks; fold k trains on blocks 1..k and
tests on block k+1; a training row whose label tick lies in the test block is dropped (purged).
Model: lightgbm.LGBMClassifier(n_estimators=200, num_leaves=31, min_child_samples=200, learning_rate=0.05).
Printed: macro-F1 on each fold's test block for (a), (b), (c), (m), and (c) - (b), (b) - (a).
`--data-file` runs the same on a canonical tick file (`tickserve import`; tick sizes from its metadata),
for a comparison with a real book. On the shared Binance BTCUSD_PERP sample (50,006 ticks, imported as in
the README) it measured (a) 0.41-0.45, (b) +0.05-0.06 over (a), (c) +0.10-0.17 over (b), and (m) within
-0.01..+0.02 of (b): the ordering the simulator is meant to show (its price momentum, (m), is stronger).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from tickserve.core.ticks import MAX_LEVELS, TickFrame  # noqa: E402
from tickserve.simulate import DEFAULT_INSTRUMENTS, DEFAULT_START_NS, simulate  # noqa: E402

HORIZON, THRESHOLD, WINDOWS, FOLDS = 20, 1.0, (5, 10, 20, 50), 3
TICK_SIZES = {spec.name: spec.tick_size for spec in DEFAULT_INSTRUMENTS}


def old_simulate(
    n_ticks: int,
    *,
    seed: int = 0,
    instruments=DEFAULT_INSTRUMENTS,
    start_ns: int = DEFAULT_START_NS,
    mean_interval_ms: float = 250.0,
) -> TickFrame:
    """`tickserve.simulate.simulate` as of a321614: an AR(1) pressure tilts level-1..3 sizes directly."""
    rng = np.random.default_rng(seed)
    per = [n_ticks // len(instruments) + (1 if i < n_ticks % len(instruments) else 0) for i in range(len(instruments))]
    frames = [_old_instrument(spec, n, rng, start_ns, mean_interval_ms) for spec, n in zip(instruments, per) if n > 0]
    merged = TickFrame.concat(frames)
    merged = merged.take(np.argsort(merged.timestamp_ns, kind="stable"))
    merged.sequence = np.arange(len(merged), dtype=np.int64)
    return merged


# tests/test_simulator.py pinned this fingerprint of old_simulate(2_000, seed=5) without sides at a321614.
OLD_FINGERPRINT = "46db2271204c0ec6015381f8791da1b53436ba4bfa74d07f61c16a6972c5a82a"


def _old_instrument(spec, n, rng, start_ns, interval_ms):
    T = spec.tick_size
    shocks = rng.normal(0.0, 0.25, n)
    alpha = np.empty(n)
    a = rng.normal(0.0, 1.0)
    for i in range(n):
        a = 0.97 * a + shocks[i]
        alpha[i] = a
    tilt = 1.0 / (1.0 + np.exp(-1.5 * alpha))
    move_rate = 0.35
    u = rng.random(n)
    move = (u < move_rate * tilt).astype(np.int64) - ((u >= move_rate * tilt) & (u < move_rate)).astype(np.int64)
    move[0] = 0
    bid_ticks = int(round(spec.start_price / T)) + np.cumsum(move)
    spread_ticks = rng.choice([1, 2, 3], size=n, p=[0.6, 0.3, 0.1])
    frame = TickFrame.empty(n)
    frame.instrument[:] = spec.name
    gaps = rng.exponential(interval_ms * 1e6, n).astype(np.int64) + 1_000
    frame.timestamp_ns = start_ns + np.cumsum(gaps)
    levels = np.arange(MAX_LEVELS)
    frame.bid_price = np.round((bid_ticks[:, None] - levels[None, :]) * T, 10)
    frame.ask_price = np.round((bid_ticks[:, None] + spread_ticks[:, None] + levels[None, :]) * T, 10)
    lean = np.where(levels < 3, 0.6 / (1.0 + levels), 0.0)[None, :]
    base = 100.0 * (1.0 + 0.15 * levels)[None, :]
    noise_b = rng.normal(0.0, 0.5, (n, MAX_LEVELS))
    noise_a = rng.normal(0.0, 0.5, (n, MAX_LEVELS))
    frame.bid_size = np.maximum(1.0, np.round(base * np.exp(lean * alpha[:, None] + noise_b)))
    frame.ask_size = np.maximum(1.0, np.round(base * np.exp(-lean * alpha[:, None] + noise_a)))
    traded = rng.random(n) < 0.3
    buy = rng.random(n) < tilt
    price = np.where(buy, frame.ask_price[:, 0], frame.bid_price[:, 0])
    size = np.where(traded, np.maximum(1.0, np.round(rng.lognormal(3.0, 0.8, n))), 0.0)
    last = np.where(traded, price, np.nan)
    idx = np.where(traded, np.arange(n), -1)
    np.maximum.accumulate(idx, out=idx)
    frame.last_price = np.where(idx >= 0, last[np.maximum(idx, 0)], 0.0)
    frame.last_size = size
    frame.aggressor = np.where(traded, np.where(buy, 1, -1), 0).astype(np.int8)
    return frame


def _window_sum(x: np.ndarray, w: int) -> np.ndarray:
    """Sum of x over the last w rows (fewer at the start), current row included."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(1, len(x) + 1)
    return c[i] - c[np.maximum(i - w, 0)]


def features_and_labels(frame: TickFrame, tick_sizes: dict[str, float] = TICK_SIZES):
    """Per row: the (a), (b), (c) feature matrices, the label (-1 = none) and the label tick's row."""
    n = len(frame)
    snap = np.zeros((n, 2 * MAX_LEVELS))
    flow = np.zeros((n, 3 * len(WINDOWS)))
    momentum = np.zeros((n, len(WINDOWS)))
    y = np.full(n, -1)
    label_row = np.full(n, n)
    for name in frame.instruments():
        rows = np.flatnonzero(frame.instrument == name)
        qb, qa = frame.bid_size[rows], frame.ask_size[rows]
        snap[rows, :MAX_LEVELS] = (qb - qa) / (qb + qa)
        cb, ca = np.cumsum(qb, axis=1), np.cumsum(qa, axis=1)
        snap[rows, MAX_LEVELS:] = (cb - ca) / (cb + ca)
        b, a, qb1, qa1 = frame.bid_price[rows, 0], frame.ask_price[rows, 0], qb[:, 0], qa[:, 0]
        e = np.zeros(len(rows))
        e[1:] = (
            (b[1:] >= b[:-1]) * qb1[1:]
            - (b[1:] <= b[:-1]) * qb1[:-1]
            - (a[1:] <= a[:-1]) * qa1[1:]
            + (a[1:] >= a[:-1]) * qa1[:-1]
        )
        depth = (qb1 + qa1) / 2
        traded = frame.last_size[rows] > 0
        signed = frame.aggressor[rows] * frame.last_size[rows]
        t = frame.timestamp_ns[rows] / 1e9
        for j, w in enumerate(WINDOWS):
            count = np.minimum(np.arange(1, len(rows) + 1), w)
            flow[rows, 3 * j] = _window_sum(e, w) / (_window_sum(depth, w) / count)
            volume = _window_sum(frame.last_size[rows], w)
            flow[rows, 3 * j + 1] = np.where(volume > 0, _window_sum(signed, w) / np.maximum(volume, 1e-12), 0.0)
            span = t - t[np.maximum(np.arange(len(rows)) - (w - 1), 0)]
            trades = _window_sum(traded.astype(float), w)
            flow[rows, 3 * j + 2] = np.where(span > 0, trades / np.maximum(span, 1e-9), 0.0)
        mid = (a + b) / 2
        for j, w in enumerate(WINDOWS):
            momentum[rows, j] = (mid - mid[np.maximum(np.arange(len(rows)) - w, 0)]) / tick_sizes[name]
        move = np.round((mid[HORIZON:] - mid[:-HORIZON]) / tick_sizes[name], 6)
        y[rows[:-HORIZON]] = np.where(move >= THRESHOLD, 2, np.where(move <= -THRESHOLD, 0, 1))
        label_row[rows[:-HORIZON]] = rows[HORIZON:]
    sets = {"a": snap[:, :1], "b": snap, "c": np.hstack([snap, flow]), "m": np.hstack([snap, momentum])}
    return sets, y, label_row


def evaluate(frame: TickFrame, tick_sizes: dict[str, float] = TICK_SIZES) -> tuple[list[dict[str, float]], np.ndarray]:
    import lightgbm
    from sklearn.metrics import f1_score

    sets, y, label_row = features_and_labels(frame, tick_sizes)
    bounds = np.linspace(0, len(frame), FOLDS + 2).astype(int)
    results = []
    for k in range(1, FOLDS + 1):
        start, end = bounds[k], bounds[k + 1]
        train = np.flatnonzero((y[:start] >= 0) & (label_row[:start] < start))
        test = start + np.flatnonzero(y[start:end] >= 0)
        scores = {}
        for key, x in sets.items():
            model = lightgbm.LGBMClassifier(
                n_estimators=200, num_leaves=31, min_child_samples=200, learning_rate=0.05, verbose=-1, n_jobs=1
            )
            model.fit(x[train], y[train])
            scores[key] = f1_score(y[test], model.predict(x[test]), average="macro", labels=[0, 1, 2])
        results.append(scores)
    return results, np.bincount(y[y >= 0], minlength=3) / (y >= 0).sum()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=1)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--old-only", action="store_true")
    which.add_argument("--new-only", action="store_true")
    which.add_argument("--data-file", help="a canonical Parquet tick file instead of the simulators")
    args = parser.parse_args()
    if args.data_file:
        from tickserve.core.ticks import read_metadata, read_parquet

        frame = read_parquet(args.data_file)
        sizes = {name: spec["tick_size"] for name, spec in read_metadata(args.data_file)["instruments"].items()}
        results, shares = evaluate(frame, sizes)
        print(
            f"{args.data_file}: {len(frame):,} ticks; label: mid move over the next {HORIZON} ticks, "
            f"threshold {THRESHOLD:g} tick; macro-F1 per walk-forward fold\n"
        )
        _table([(args.data_file, results)])
        print("\nlabel shares SELL/HOLD/BUY " + "/".join(f"{v:.1%}" for v in shares))
        return 0
    check = old_simulate(2_000, seed=5)
    check.aggressor[:] = 0
    assert check.fingerprint() == OLD_FINGERPRINT, "old_simulate is no longer the simulator of a321614"
    runs = [("old (a321614)", old_simulate), ("new", simulate)]
    runs = runs[:1] if args.old_only else runs[1:] if args.new_only else runs
    print(
        f"{args.ticks:,} ticks, seed {args.seed}; label: mid move over the next {HORIZON} ticks, "
        f"threshold {THRESHOLD:g} tick; macro-F1 per walk-forward fold\n"
    )
    rows, notes = [], []
    for label, simulator in runs:
        started = time.perf_counter()
        frame = simulator(args.ticks, seed=args.seed)
        seconds = time.perf_counter() - started
        results, shares = evaluate(frame)
        rows.append((label, results))
        notes.append(
            f"{label}: generated in {seconds:.2f} s; label shares SELL/HOLD/BUY " + "/".join(f"{v:.1%}" for v in shares)
        )
    _table(rows)
    print("\n" + "\n".join(notes))
    return 0


def _table(rows: list[tuple[str, list[dict[str, float]]]]) -> None:
    print(
        "| data | fold | (a) L1 imbalance | (b) L1-10 snapshot | (c) (b) + order flow | (c) - (b) | (b) - (a) "
        "| (m) (b) + mid moves |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, results in rows:
        for k, s in enumerate(results, 1):
            print(
                f"| {label} | {k} | {s['a']:.3f} | {s['b']:.3f} | {s['c']:.3f} | {s['c'] - s['b']:+.3f} | "
                f"{s['b'] - s['a']:+.3f} | {s['m']:.3f} |"
            )


if __name__ == "__main__":
    sys.exit(main())
