"""The seeded order-book simulator and the Parquet tick file."""

from __future__ import annotations

import numpy as np
import pytest

from tickserve.features import FEATURE_INDEX, FeatureConfig, batch_features
from tickserve.labels import BUY, HOLD, SELL, LabelConfig, make_labels, mid_prices
from tickserve.simulate import DEFAULT_INSTRUMENTS, DEFAULT_START_NS, InstrumentSpec, simulate
from tickserve.ticks import MAX_LEVELS, Tick, TickFrame, read_parquet, write_parquet
from tickserve.validation import validate_tick

INSTRUMENTS = (
    InstrumentSpec("AAA", 100.0),
    InstrumentSpec("BBB", 12.34),
    InstrumentSpec("CCC", 250.0, 0.05),
    InstrumentSpec("X", 4000.0, 0.5),
)
TICK_SIZES = {spec.name: spec.tick_size for spec in INSTRUMENTS}


@pytest.fixture(scope="module")
def frame() -> TickFrame:
    return simulate(20_000, seed=42, instruments=INSTRUMENTS)


def assert_frames_equal(a: TickFrame, b: TickFrame) -> None:
    assert a.instrument.tolist() == b.instrument.tolist()
    for name in ("timestamp_ns", "sequence"):
        assert getattr(a, name).dtype == getattr(b, name).dtype == np.int64
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    for name in ("last_price", "last_size", "bid_price", "bid_size", "ask_price", "ask_size"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype == np.float64, name
        assert x.shape == y.shape, name
        assert np.array_equal(x, y, equal_nan=True), name
    assert a.aggressor.dtype == b.aggressor.dtype == np.int8
    assert np.array_equal(a.aggressor, b.aggressor)
    assert a.fingerprint() == b.fingerprint()


def test_same_seed_same_frame_and_different_seed_different():
    a = simulate(3_000, seed=7)
    b = simulate(3_000, seed=7)
    c = simulate(3_000, seed=8)
    assert_frames_equal(a, b)
    assert a.fingerprint() != c.fingerprint()
    assert not np.array_equal(a.bid_size, c.bid_size)
    assert not np.array_equal(a.timestamp_ns, c.timestamp_ns)


def test_fingerprint_sees_every_column():
    base = simulate(500, seed=1)
    fp = base.fingerprint()
    for column, change in [
        ("instrument", lambda f: f.instrument.__setitem__(3, "OTHER")),
        ("timestamp_ns", lambda f: f.timestamp_ns.__setitem__(3, f.timestamp_ns[3] + 1)),
        ("last_size", lambda f: f.last_size.__setitem__(3, f.last_size[3] + 1)),
        ("ask_size", lambda f: f.ask_size.__setitem__((3, 9), 1.0 + f.ask_size[3, 9])),
        ("sequence", lambda f: f.sequence.__setitem__(3, -1)),
        ("aggressor", lambda f: f.aggressor.__setitem__(np.flatnonzero(f.aggressor)[0], 0)),
    ]:
        copy = base.take(np.arange(len(base)))
        assert copy.fingerprint() == fp
        change(copy)
        assert copy.fingerprint() != fp, column


# Fingerprints computed before the aggressor column existed (commit 5622322): a frame whose ticks
# carry no side must keep them, so manifests of models trained on older files still match.
RAGGED_FINGERPRINT = "2e6a67b28a5a76ca3c5568d00840aa25f9497fd52689963181a0e918c406bbf6"
SIMULATED_2000_SEED_5_FINGERPRINT = "46db2271204c0ec6015381f8791da1b53436ba4bfa74d07f61c16a6972c5a82a"


def _ragged_ticks(aggressors=(0, 0, 0)) -> list[Tick]:
    return [
        Tick("A", 10, 0.0, 0.0, (100.0,), (5.0,), (100.5, 101.0), (1.0, 2.0), aggressor=aggressors[0]),
        Tick("LONG-NAME.XYZ", 11, 3.25, 7.0, tuple(10.0 - i for i in range(10)), (1.0,) * 10, (11.0,), (0.0,), 5,
             aggressors[1]),  # fmt: skip
        Tick("A", 12, 100.5, 1.0, (100.0, 99.5, 99.0), (5.0, 0.0, 2.0), (100.5,), (1.0,), aggressor=aggressors[2]),
    ]


def test_fingerprint_without_sides_is_the_one_from_before_the_aggressor_column():
    assert TickFrame.from_ticks(_ragged_ticks()).fingerprint() == RAGGED_FINGERPRINT
    with_sides = TickFrame.from_ticks(_ragged_ticks((0, 1, -1)))
    assert with_sides.aggressor.tolist() == [0, 1, -1] and with_sides.fingerprint() != RAGGED_FINGERPRINT


def test_simulated_ticks_are_those_from_before_the_aggressor_column_plus_the_side():
    """The simulator only fills the new column: every other column is what it was (same draws)."""
    f = simulate(2_000, seed=5)
    assert set(f.aggressor.tolist()) == {-1, 0, 1}
    traded = f.last_size > 0
    assert np.array_equal(f.aggressor != 0, traded)  # a side exactly where a trade printed
    buy, sell = f.aggressor == 1, f.aggressor == -1
    assert np.array_equal(f.last_price[buy], f.ask_price[buy, 0])  # a buyer lifted the ask
    assert np.array_equal(f.last_price[sell], f.bid_price[sell, 0])  # a seller hit the bid
    f.aggressor[:] = 0
    assert f.fingerprint() == SIMULATED_2000_SEED_5_FINGERPRINT


def test_sizes_and_sequence(frame):
    assert len(frame) == 20_000
    assert frame.sequence.tolist() == list(range(20_000))
    counts = {name: int((frame.instrument == name).sum()) for name in frame.instruments()}
    assert counts == {"AAA": 5_000, "BBB": 5_000, "CCC": 5_000, "X": 5_000}
    assert len(simulate(7, seed=0)) == 7
    assert frame.instruments() == ["AAA", "BBB", "CCC", "X"]
    with pytest.raises(ValueError):
        simulate(0)


def test_timestamps(frame):
    ts = frame.timestamp_ns
    assert ts.dtype == np.int64
    assert (np.diff(ts) >= 0).all(), "timestamps must be non-decreasing overall"
    assert ts[0] > DEFAULT_START_NS
    for name in frame.instruments():
        own = ts[frame.instrument == name]
        assert (np.diff(own) > 0).all(), f"{name}: timestamps must increase strictly"
    # instruments really are interleaved, not one block after another
    switches = int((frame.instrument[1:] != frame.instrument[:-1]).sum())
    assert switches > len(frame) / 2


def test_books_are_well_formed(frame):
    for side in ("bid_price", "bid_size", "ask_price", "ask_size"):
        values = getattr(frame, side)
        assert values.shape == (len(frame), MAX_LEVELS)
        assert np.isfinite(values).all(), f"{side}: all 10 levels present"
    assert (frame.bid_price[:, 0] < frame.ask_price[:, 0]).all(), "book crossed or locked"
    assert (np.diff(frame.bid_price, axis=1) < 0).all(), "bids must descend"
    assert (np.diff(frame.ask_price, axis=1) > 0).all(), "asks must ascend"
    assert (frame.bid_size >= 1).all() and (frame.ask_size >= 1).all()
    assert (frame.last_size >= 0).all() and (frame.last_price >= 0).all()
    # every simulated tick passes the server's validation
    for i in range(0, len(frame), 97):
        validate_tick(frame.tick(i))


def test_prices_on_each_instruments_tick_grid(frame):
    for name, tick_size in TICK_SIZES.items():
        rows = frame.instrument == name
        traded = frame.last_price[rows]
        traded = traded[traded > 0]
        assert len(traded) > 100
        for prices in (frame.bid_price[rows], frame.ask_price[rows], traded):
            ticks = prices / tick_size
            assert np.abs(ticks - np.round(ticks)).max() <= 1e-9, name
        spread = np.round((frame.ask_price[rows, 0] - frame.bid_price[rows, 0]) / tick_size).astype(int)
        assert set(spread.tolist()) == {1, 2, 3}, name
        # mid moves at most one tick per update (bid moves by at most one tick)
        assert np.abs(np.diff(frame.bid_price[rows, 0])).max() <= tick_size * (1 + 1e-9), name
        # consecutive levels one tick apart
        gaps = np.diff(frame.bid_price[rows], axis=1) / tick_size
        assert np.allclose(gaps, -1.0, atol=1e-9), name
        # trades print at the touch
        last = frame.last_price[rows]
        size = frame.last_size[rows]
        at_touch = (last == frame.bid_price[rows, 0]) | (last == frame.ask_price[rows, 0])
        assert at_touch[size > 0].all(), name


def test_start_price_and_no_trade_before_first_print():
    f = simulate(3_000, seed=3, instruments=INSTRUMENTS)
    for spec in INSTRUMENTS:
        rows = np.flatnonzero(f.instrument == spec.name)
        assert f.bid_price[rows[0], 0] == pytest.approx(spec.start_price, abs=spec.tick_size / 2)
        first_print = rows[np.argmax(f.last_size[rows] > 0)]
        assert (f.last_price[rows[rows < first_print]] == 0).all()
        assert (f.last_price[rows[rows >= first_print]] > 0).all()


def test_all_three_classes_appear(frame):
    config = FeatureConfig(tick_sizes=tuple(TICK_SIZES.items()))
    y, _ = make_labels(frame, LabelConfig(), config)
    counts = np.bincount(y[y >= 0], minlength=3)
    assert counts[SELL] > 0.1 * len(frame)
    assert counts[HOLD] > 0.05 * len(frame)
    assert counts[BUY] > 0.1 * len(frame)
    for name in frame.instruments():
        own = y[(frame.instrument == name) & (y >= 0)]
        assert set(own.tolist()) == {SELL, HOLD, BUY}, name


def test_imbalance_predicts_the_future_mid_move():
    """The structure models are meant to learn: imbalance leans with the next 50 ticks' move."""
    f = simulate(30_000, seed=123)
    x = batch_features(f, FeatureConfig())[:, FEATURE_INDEX["imbalance_l1"]]
    _, future = make_labels(f, LabelConfig(horizon_ticks=50), FeatureConfig())
    mid = mid_prices(f)
    rows = np.flatnonzero(future >= 0)
    move = mid[future[rows]] - mid[rows]
    imbalance = x[rows]
    both = (np.sign(move) != 0) & (np.sign(imbalance) != 0)
    assert both.mean() > 0.5
    agree = float((np.sign(move[both]) == np.sign(imbalance[both])).mean())
    assert agree > 0.55, f"imbalance_l1 agrees with the future move only {agree:.1%} of the time"
    # control: against a shuffled move the agreement is a coin flip
    shuffled = np.random.default_rng(0).permutation(move[both])
    assert abs(float((np.sign(shuffled) == np.sign(imbalance[both])).mean()) - 0.5) < 0.03


def test_parquet_round_trip_is_exact(frame, tmp_path):
    path = tmp_path / "sub" / "ticks.parquet"
    write_parquet(frame, path)
    assert path.exists()
    assert_frames_equal(read_parquet(path), frame)


def test_parquet_round_trip_with_absent_levels_and_no_sequence(tmp_path):
    ticks = _ragged_ticks((0, -1, 1))
    original = TickFrame.from_ticks(ticks)
    path = tmp_path / "ragged.parquet"
    write_parquet(original, path)
    back = read_parquet(path)
    assert_frames_equal(back, original)
    assert list(back.ticks()) == ticks
    assert back.sequence.tolist() == [-1, 5, -1]
    assert back.aggressor.tolist() == [0, -1, 1]


def test_parquet_file_without_the_aggressor_column_reads_as_no_side(frame, tmp_path):
    """A tick file written before the column existed: every tick reads as aggressor 0, and its
    fingerprint is the one it had."""
    import pyarrow.parquet as pq

    path = tmp_path / "new.parquet"
    write_parquet(frame, path)
    table = pq.read_table(str(path))
    assert table.schema.field("aggressor").type == "int8"
    old = tmp_path / "old.parquet"
    pq.write_table(table.drop_columns(["aggressor"]), str(old))
    back = read_parquet(old)
    assert back.aggressor.dtype == np.int8 and not back.aggressor.any()
    no_side = frame.take(np.arange(len(frame)))
    no_side.aggressor[:] = 0
    assert_frames_equal(back, no_side)
    path = tmp_path / "ragged-old.parquet"
    write_parquet(TickFrame.from_ticks(_ragged_ticks()), path)
    pq.write_table(pq.read_table(str(path)).drop_columns(["aggressor"]), str(path))
    assert read_parquet(path).fingerprint() == RAGGED_FINGERPRINT


def test_default_instruments_and_start():
    f = simulate(300, seed=0)
    assert f.instruments() == sorted(spec.name for spec in DEFAULT_INSTRUMENTS)
    # the default start is the 09:30 New York open on 2024-01-02
    assert DEFAULT_START_NS == 1_704_205_800 * 1_000_000_000
    assert f.timestamp_ns[0] - DEFAULT_START_NS < 10 * 1_000_000_000
