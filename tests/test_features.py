"""The shared feature stage: streaming and batch paths agree bit for bit and match the spec.

The reference implementations here are deliberately naive (one numpy call on
the window, straight from the definitions in `tickserve.features.spec`), so a
formula or window mistake in *both* paths is still caught.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from tickserve.core.ticks import MAX_LEVELS, Tick, TickFrame
from tickserve.features import (
    ALWAYS_OPEN,
    DEFAULT_MODEL_FEATURES,
    FEATURE_INDEX,
    FEATURE_NAMES,
    LOOKBACKS,
    MAX_LOOKBACK,
    US_EQUITIES,
    FeatureConfig,
    SessionCalendar,
    StreamingFeatures,
    batch_features,
    missing_features,
)
from tickserve.features.spec import BASE_FEATURES, PRICE_LEVEL_FEATURES, WINDOW_FEATURES
from tickserve.simulate import InstrumentSpec, simulate

F = FEATURE_INDEX
NS = 1_000_000_000

FOUR_INSTRUMENTS = (
    InstrumentSpec("AAA", 100.0),
    InstrumentSpec("BBB", 42.5),
    InstrumentSpec("CCC", 250.0, 0.05),
    InstrumentSpec("X", 4000.0, 0.5),
)
FOUR_CONFIG = FeatureConfig(tick_sizes=(("CCC", 0.05), ("X", 0.5)))


def stream_all(frame: TickFrame, config: FeatureConfig, features: StreamingFeatures | None = None) -> np.ndarray:
    if features is None:
        features = StreamingFeatures(config)
    rows = [features.update(frame.tick(i)) for i in range(len(frame))]
    return np.array(rows, dtype=np.float64).reshape(len(frame), len(FEATURE_NAMES))


def assert_bit_identical(streamed: np.ndarray, batch: np.ndarray) -> None:
    assert streamed.shape == batch.shape == (streamed.shape[0], len(FEATURE_NAMES))
    assert np.isfinite(batch).all(), "features must be finite"
    if not np.array_equal(streamed, batch):
        diff = np.abs(streamed - batch)
        row, col = np.unravel_index(np.argmax(diff), diff.shape)
        pytest.fail(
            f"streaming != batch: {int((diff > 0).sum())} cells differ; worst {FEATURE_NAMES[col]} "
            f"at row {row}: {streamed[row, col]!r} vs {batch[row, col]!r}"
        )


def make_tick(
    instrument="AAA",
    ts=1_704_205_800 * NS,
    bids=((100.00, 10.0),),
    asks=((100.01, 10.0),),
    last_price=0.0,
    last_size=0.0,
) -> Tick:
    return Tick(
        instrument=instrument,
        timestamp_ns=ts,
        last_price=last_price,
        last_size=last_size,
        bid_price=tuple(p for p, _ in bids),
        bid_size=tuple(s for _, s in bids),
        ask_price=tuple(p for p, _ in asks),
        ask_size=tuple(s for _, s in asks),
    )


# --- streaming == batch ---------------------------------------------------------------


@pytest.fixture(scope="module")
def big_frame() -> TickFrame:
    return simulate(100_000, seed=2024, instruments=FOUR_INSTRUMENTS)


@pytest.mark.slow
def test_streaming_equals_batch_bit_for_bit_on_100k_ticks(big_frame):
    frame = big_frame
    assert len(frame) == 100_000
    assert frame.instruments() == ["AAA", "BBB", "CCC", "X"]
    batch = batch_features(frame, FOUR_CONFIG)
    streamed = stream_all(frame, FOUR_CONFIG)
    assert float(np.max(np.abs(streamed - batch))) <= 1e-9  # the bound ...
    assert_bit_identical(streamed, batch)  # ... but the contract is exact equality
    # the per-instrument tick size really was used (X moves in 0.5 steps: integer spread ticks)
    x_rows = frame.instrument == "X"
    x_spread_ticks = batch[x_rows, F["spread_ticks"]]
    assert np.array_equal(x_spread_ticks, np.round(x_spread_ticks))
    # a few ticks (mostly 1, wider for a while after a depletion); with tick size 0.01 they would be 50+.
    # (Was <= {1, 2, 3}: the spreads the earlier simulator drew; the event-driven one widens up to ~6.)
    assert x_spread_ticks.min() == 1.0 and x_spread_ticks.max() < 10
    assert np.allclose(batch[x_rows, F["spread"]], 0.5 * x_spread_ticks)


def _ragged_frame(seed: int) -> TickFrame:
    """Simulated ticks, then roughened: shallow books, no trades yet, empty level 1, a flat mid."""
    rng = np.random.default_rng(seed)
    instruments = (
        InstrumentSpec("AAA", 100.0),
        InstrumentSpec("FLAT", 20.0),
        InstrumentSpec("X", 3000.0, 0.5),
    )
    frame = simulate(6_000, seed=seed, instruments=instruments)
    n = len(frame)
    # random book depth per side: 1..10 levels, many with only 1-3
    for prices, sizes in ((frame.bid_price, frame.bid_size), (frame.ask_price, frame.ask_size)):
        depth = np.where(rng.random(n) < 0.5, rng.integers(1, 4, n), rng.integers(1, MAX_LEVELS + 1, n))
        absent = np.arange(MAX_LEVELS)[None, :] >= depth[:, None]
        prices[absent] = np.nan
        sizes[absent] = np.nan
    # no trade yet / no trade on this tick
    frame.last_price[rng.random(n) < 0.2] = 0.0
    frame.last_size[rng.random(n) < 0.2] = 0.0
    # empty level 1 on both sides (d1 == 0), sometimes the whole book sized 0
    empty1 = rng.random(n) < 0.1
    frame.bid_size[empty1, 0] = 0.0
    frame.ask_size[empty1, 0] = 0.0
    empty_all = rng.random(n) < 0.03
    frame.bid_size[empty_all] = np.where(np.isnan(frame.bid_size[empty_all]), np.nan, 0.0)
    frame.ask_size[empty_all] = np.where(np.isnan(frame.ask_size[empty_all]), np.nan, 0.0)
    # a flat instrument: the same book every tick, and never any volume
    flat = frame.instrument == "FLAT"
    frame.bid_price[flat] = np.where(np.isnan(frame.bid_price[flat]), np.nan, 20.0 - 0.01 * np.arange(MAX_LEVELS))
    frame.ask_price[flat] = np.where(np.isnan(frame.ask_price[flat]), np.nan, 20.01 + 0.01 * np.arange(MAX_LEVELS))
    frame.last_price[flat] = 0.0
    frame.last_size[flat] = 0.0
    return frame


@pytest.mark.parametrize("seed", [1, 2])
def test_streaming_equals_batch_on_ragged_books(seed):
    frame = _ragged_frame(seed)
    config = FeatureConfig(tick_sizes=(("X", 0.5),))
    # the roughening really produced the edge cases
    depth_bid = (~np.isnan(frame.bid_price)).sum(axis=1)
    assert (depth_bid == 1).any() and (depth_bid == MAX_LEVELS).any()
    assert ((frame.bid_size[:, 0] + frame.ask_size[:, 0]) == 0).any()
    assert (frame.last_price == 0).any()

    batch = batch_features(frame, config)
    assert_bit_identical(stream_all(frame, config), batch)

    flat = frame.instrument == "FLAT"
    assert (batch[flat, F["price_range_pos_50"]] == 0.5).all()
    assert (batch[flat, F["return_5"]] == 0.0).all()
    assert (batch[flat, F["volatility_50"]] == 0.0).all()
    mid = (frame.bid_price[flat, 0] + frame.ask_price[flat, 0]) * 0.5
    assert np.array_equal(batch[flat, F["vwap_20"]], mid)  # no volume: vwap is the mid
    d1 = frame.bid_size[:, 0] + frame.ask_size[:, 0]
    assert (batch[d1 == 0, F["imbalance_l1"]] == 0.0).all()
    mid_all = (frame.bid_price[:, 0] + frame.ask_price[:, 0]) * 0.5
    assert np.array_equal(batch[d1 == 0, F["microprice"]], mid_all[d1 == 0])


def test_streaming_equals_batch_on_from_ticks_frame():
    """Hand-made ticks (1-level books, locked book, zero sizes, no trades) through TickFrame.from_ticks."""
    ts0 = 1_704_205_800 * NS
    ticks = [
        make_tick(ts=ts0 + 1, bids=((100.00, 5.0),), asks=((100.02, 3.0), (100.03, 7.0))),
        make_tick("B", ts=ts0 + 2, bids=((10.5, 0.0),), asks=((11.0, 0.0),), last_price=10.5, last_size=4.0),
        make_tick(
            ts=ts0 + 3, bids=((100.01, 0.0), (100.00, 1.0)), asks=((100.01, 0.0),), last_price=100.01, last_size=2.0
        ),
        make_tick("B", ts=ts0 + 4, bids=((10.5, 1.0), (10.0, 2.0), (9.5, 3.0)), asks=((11.0, 4.0),)),
        make_tick(ts=ts0 + 5, bids=((100.00, 5.0),), asks=((100.02, 3.0),), last_price=100.02, last_size=1.0),
    ]
    frame = TickFrame.from_ticks(ticks)
    config = FeatureConfig(tick_sizes=(("B", 0.5),))
    for i, t in enumerate(ticks):
        assert frame.tick(i) == t
    assert_bit_identical(stream_all(frame, config), batch_features(frame, config))


def test_empty_frame_gives_empty_matrix():
    out = batch_features(TickFrame.empty(0), FeatureConfig())
    assert out.shape == (0, len(FEATURE_NAMES))


# --- the definitions, against naive references ---------------------------------------


def test_base_features_match_definitions():
    ticks = [
        make_tick(
            bids=((100.00, 30.0), (99.99, 10.0), (99.98, 5.0), (99.97, 1.0), (99.96, 2.0), (99.95, 100.0)),
            asks=((100.03, 10.0), (100.04, 20.0)),
            last_price=100.03,
            last_size=7.0,
        ),
        # no trade yet: last falls back to the mid
        make_tick(bids=((100.00, 30.0),), asks=((100.03, 10.0),), last_price=0.0),
        # empty level 1: imbalance 0, microprice = mid
        make_tick(bids=((100.00, 0.0), (99.99, 4.0)), asks=((100.03, 0.0),), last_price=100.0, last_size=1.0),
        # an empty book: every imbalance 0
        make_tick(bids=((100.00, 0.0),), asks=((100.03, 0.0),)),
    ]
    T = 0.01
    features = StreamingFeatures(FeatureConfig())
    for t in ticks:
        row = features.update(t)
        b1, a1 = t.bid_price[0], t.ask_price[0]
        bs1, as1 = t.bid_size[0], t.ask_size[0]
        mid = (a1 + b1) / 2
        last = t.last_price if t.last_price > 0 else mid
        assert row[F["spread"]] == pytest.approx(a1 - b1, abs=1e-12)
        assert row[F["spread_pct"]] == pytest.approx((a1 - b1) / mid, rel=1e-12)
        assert row[F["spread_ticks"]] == pytest.approx((a1 - b1) / T, rel=1e-9)
        assert row[F["spread_ticks"]] == round((a1 - b1) / T, 6)  # snapped to the 1e-6 tick grid
        for name, levels in (("imbalance_l1", 1), ("imbalance_l5", 5), ("imbalance_l10", 10)):
            b, a = sum(t.bid_size[:levels]), sum(t.ask_size[:levels])
            expected = (b - a) / (b + a) if b + a > 0 else 0.0
            assert row[F[name]] == pytest.approx(expected, abs=1e-15), name
        micro = (b1 * as1 + a1 * bs1) / (bs1 + as1) if bs1 + as1 > 0 else mid
        assert row[F["microprice"]] == pytest.approx(micro, rel=1e-15)
        assert row[F["microprice_vs_mid_ticks"]] == pytest.approx((micro - mid) / T, abs=1e-9)
        assert row[F["microprice_vs_last_ticks"]] == pytest.approx((micro - last) / T, abs=1e-9)
    # spot values of the first tick, by hand
    first = StreamingFeatures(FeatureConfig()).update(ticks[0])
    assert first[F["imbalance_l1"]] == pytest.approx(20 / 40)
    assert first[F["imbalance_l5"]] == pytest.approx((48 - 30) / 78)
    assert first[F["imbalance_l10"]] == pytest.approx((148 - 30) / 178)
    assert first[F["microprice"]] == pytest.approx((100.00 * 10 + 100.03 * 30) / 40)


def _window(values: np.ndarray, t: int, lookback: int) -> np.ndarray:
    """The last `lookback` values up to t (all so far during warm-up)."""
    return values[max(0, t - lookback + 1) : t + 1]


@pytest.mark.parametrize("tick_size", [0.25, 0.01], ids=["dyadic-tick", "cent-tick"])
def test_rolling_statistics_match_naive_reference_tick_by_tick(tick_size):
    spec = InstrumentSpec("ONE", 80.0, tick_size)
    frame = simulate(400, seed=9, instruments=(spec,))
    frame.last_price[:7] = 0.0  # no trade yet at the start
    frame.last_size[:7] = 0.0
    config = FeatureConfig(tick_sizes=(("ONE", tick_size),))
    T = tick_size
    rows = stream_all(frame, config)
    assert_bit_identical(rows, batch_features(frame, config))

    mid = (frame.ask_price[:, 0] + frame.bid_price[:, 0]) * 0.5
    spread_ticks = np.round((frame.ask_price[:, 0] - frame.bid_price[:, 0]) / T, 6)  # snapped, see spec.py
    bs1, as1 = frame.bid_size[:, 0], frame.ask_size[:, 0]
    imb1 = (bs1 - as1) / (bs1 + as1)
    last = np.where(frame.last_price > 0, frame.last_price, mid)
    ret1 = np.concatenate([[0.0], mid[1:] / mid[:-1] - 1.0])
    assert rows[0, F["return_5"]] == 0.0 and rows[0, F["volatility_5"]] == 0.0
    assert np.array_equal(rows[:, F["spread_ticks"]], spread_ticks)
    assert np.array_equal(rows[:, F["imbalance_l1"]], imb1)

    exact_arithmetic = tick_size == 0.25  # integer spread ticks: sums and means are exact
    for t in range(len(frame)):
        row = rows[t]
        for L in LOOKBACKS:
            st = _window(spread_ticks, t, L)
            m = _window(mid, t, L)
            got = {name: row[F[f"{name}_{L}"]] for name in WINDOW_FEATURES}
            where = f"tick {t}, L={L}"

            if exact_arithmetic:
                assert got["spread_ticks_mean"] == np.mean(st), where
            else:
                assert got["spread_ticks_mean"] == pytest.approx(np.mean(st), rel=1e-13), where
            assert got["spread_ticks_std"] == pytest.approx(np.std(st), rel=1e-9, abs=1e-15), where
            pos = (spread_ticks[t] - st.min()) / (st.max() - st.min()) if st.max() > st.min() else 0.5
            assert got["spread_range_pos"] == pos, where

            assert got["imbalance_momentum"] == pytest.approx(imb1[t] - np.mean(_window(imb1, t, L)), abs=1e-14), where

            vol = _window(frame.last_size, t, L)
            vwap = np.sum(_window(last, t, L) * vol) / np.sum(vol) if np.sum(vol) > 0 else mid[t]
            assert got["vwap"] == pytest.approx(vwap, rel=1e-14), where
            assert got["last_vs_vwap_ticks"] == pytest.approx((last[t] - vwap) / T, abs=1e-9), where

            assert got["return"] == mid[t] / mid[max(0, t - L)] - 1.0, where
            assert got["volatility"] == pytest.approx(np.std(_window(ret1, t, L)), rel=1e-9, abs=1e-15), where
            snap = lambda v: np.floor(v * 1e6 + 0.5) / 1e6  # noqa: E731 - differences in ticks, as spec.py
            m_range = snap((m.max() - m.min()) / T)
            pos = snap((mid[t] - m.min()) / T) / m_range if m_range > 0 else 0.5
            assert got["price_range_pos"] == pos, where
            assert got["price_range_pos"] == pytest.approx(
                (mid[t] - m.min()) / (m.max() - m.min()) if m_range else 0.5, abs=1e-6
            )

    # the warm-up really is "all ticks so far", not a zero-padded window
    assert rows[2, F["return_50"]] == mid[2] / mid[0] - 1.0
    assert rows[3, F["spread_ticks_mean_50"]] == pytest.approx(np.mean(spread_ticks[:4]), rel=1e-13)
    # and after warm-up the window slides: tick 60's 50-tick mean ignores ticks 0..10
    assert rows[60, F["spread_ticks_mean_50"]] == pytest.approx(np.mean(spread_ticks[11:61]), rel=1e-13)


def test_std_of_a_flat_spread_is_zero():
    """Cent prices carry float noise (100.02 - 100.01 != 0.01): one tick must still be exactly
    one tick, and a window of one-tick spreads must have a std of exactly 0 (found by review:
    sqrt(E[x^2] - mean^2) on the raw ratio left ~1e-8)."""
    # one-tick spread at many price levels: spread_ticks is 1 up to float noise
    ticks = []
    for i in range(60):
        bid = round(100.0 + 0.01 * ((i * 37) % 90), 2)
        ticks.append(make_tick(ts=1_704_205_800 * NS + i, bids=((bid, 10.0),), asks=((round(bid + 0.01, 2), 10.0),)))
    frame = TickFrame.from_ticks(ticks)
    rows = batch_features(frame, FeatureConfig())
    spread_ticks = rows[:, F["spread_ticks"]]
    assert np.array_equal(spread_ticks, np.ones(len(rows)))
    for L in LOOKBACKS:
        assert np.array_equal(rows[:, F[f"spread_ticks_std_{L}"]], np.zeros(len(rows))), L
        assert np.array_equal(rows[:, F[f"spread_range_pos_{L}"]], np.full(len(rows), 0.5)), L


# --- per-instrument state ------------------------------------------------------------


def test_instruments_are_independent():
    frame = simulate(3_000, seed=77, instruments=FOUR_INSTRUMENTS)
    together = stream_all(frame, FOUR_CONFIG)
    batch = batch_features(frame, FOUR_CONFIG)
    for name in frame.instruments():
        rows = np.flatnonzero(frame.instrument == name)
        alone = stream_all(frame.take(rows), FOUR_CONFIG)
        assert np.array_equal(together[rows], alone), name
        assert np.array_equal(batch_features(frame.take(rows), FOUR_CONFIG), batch[rows]), name


def test_count_and_drop():
    frame = simulate(300, seed=4, instruments=FOUR_INSTRUMENTS[:2])
    features = StreamingFeatures(FeatureConfig())
    stream_all(frame, FeatureConfig(), features)
    assert len(features) == 2
    assert features.count("AAA") == int((frame.instrument == "AAA").sum())
    assert features.count("nope") == 0
    features.drop("AAA")
    features.drop("nope")  # no error
    assert features.count("AAA") == 0 and len(features) == 1
    # after a drop the instrument starts over, exactly like a fresh stream
    rows = np.flatnonzero(frame.instrument == "AAA")[:80]
    again = np.array([features.update(frame.tick(i)) for i in rows])
    fresh = stream_all(frame.take(rows), FeatureConfig())
    assert np.array_equal(again, fresh)


def test_memory_is_bounded():
    frame = simulate(10_000, seed=5, instruments=FOUR_INSTRUMENTS)
    features = StreamingFeatures(FOUR_CONFIG)
    for i in range(len(frame)):
        features.update(frame.tick(i))
    assert set(features._states) == set(frame.instruments())
    for name, state in features._states.items():
        assert state.count == int((frame.instrument == name).sum()) > MAX_LOOKBACK + 1
        # fixed-size arrays, whatever the number of ticks: the state cannot grow
        assert state.hist.shape == (9, MAX_LOOKBACK + 1) and state.hist.dtype == np.float64, name
        assert state.stamps.shape == (MAX_LOOKBACK + 1,) and state.stamps.dtype == np.int64, name
        assert state.hist.nbytes + state.stamps.nbytes < 5_000, name


# --- time features --------------------------------------------------------------------


def _utc_ns(*args) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * NS


def _time_row(ts_ns: int, calendar: SessionCalendar) -> tuple[float, float, float]:
    config = FeatureConfig(calendar=calendar)
    tick = make_tick(ts=ts_ns)
    streamed = StreamingFeatures(config).update(tick)
    batch = batch_features(TickFrame.from_ticks([tick]), config)[0]
    names = ("session_open", "minutes_since_open", "minutes_to_close")
    for name in names:
        assert streamed[F[name]] == batch[F[name]], name
    return tuple(streamed[F[name]] for name in names)


@pytest.mark.parametrize(
    "when, expected",
    [
        ((2024, 1, 2, 14, 30), (1.0, 0.0, 390.0)),  # Tuesday 09:30 EST: the open
        ((2024, 7, 2, 13, 30), (1.0, 0.0, 390.0)),  # Tuesday 09:30 EDT: the open in summer
        ((2024, 1, 2, 14, 29), (0.0, -1.0, 391.0)),  # one minute before the open
        ((2024, 1, 2, 20, 59), (1.0, 389.0, 1.0)),  # last minute of the session
        ((2024, 1, 2, 21, 0), (0.0, 390.0, 0.0)),  # the close is exclusive
        ((2024, 1, 2, 15, 0, 30), (1.0, 30.5, 359.5)),  # fractional minutes
        ((2024, 1, 6, 15, 0), (0.0, 30.0, 360.0)),  # Saturday: closed, clock still runs
        ((2024, 1, 7, 15, 0), (0.0, 30.0, 360.0)),  # Sunday
        ((2024, 3, 11, 13, 30), (1.0, 0.0, 390.0)),  # Monday after the DST switch
        ((2024, 1, 3, 4, 0), (0.0, 810.0, -420.0)),  # 23:00 EST on Jan 2 (the local date, not the UTC one)
        ((2024, 1, 2, 10, 0), (0.0, -270.0, 660.0)),  # 05:00 EST: before the open
    ],
)
def test_us_equities_time_features(when, expected):
    assert _time_row(_utc_ns(*when), US_EQUITIES) == expected


@pytest.mark.parametrize("when", [(2024, 1, 6, 3, 0), (2024, 1, 2, 14, 30), (2024, 7, 7, 23, 59), (2024, 1, 1, 0, 0)])
def test_always_open_calendar(when):
    session, since_open, to_close = _time_row(_utc_ns(*when), ALWAYS_OPEN)
    assert session == 1.0
    dt = datetime(*when)
    assert since_open == dt.hour * 60 + dt.minute
    assert to_close == 1440 - since_open


def test_time_features_across_weekend_and_dst_match_zoneinfo():
    """Several days around the 2024-03-10 DST switch, against a zoneinfo reference."""
    start = _utc_ns(2024, 3, 8, 12, 0)
    frame = simulate(2_000, seed=3, start_ns=start, mean_interval_ms=10 * 60_000.0)  # ~4.6 days per instrument
    config = FeatureConfig()
    batch = batch_features(frame, config)
    assert_bit_identical(stream_all(frame, config), batch)
    zone = ZoneInfo("America/New_York")
    seen_sessions = set()
    for i in range(0, len(frame), 7):
        local = datetime.fromtimestamp(frame.timestamp_ns[i] / NS, tz=UTC).astimezone(zone)
        minute = local.hour * 60 + local.minute + local.second / 60 + local.microsecond / 60e6
        is_open = local.weekday() < 5 and 570 <= minute < 960
        seen_sessions.add((local.date(), is_open))
        assert batch[i, F["session_open"]] == float(is_open), local
        assert batch[i, F["minutes_since_open"]] == pytest.approx(minute - 570, abs=1e-6), local
        assert batch[i, F["minutes_to_close"]] == pytest.approx(960 - minute, abs=1e-6), local
    dates = {d for d, _ in seen_sessions}
    assert {datetime(2024, 3, 9).date(), datetime(2024, 3, 11).date()} <= dates
    assert {o for _, o in seen_sessions} == {True, False}


def test_calendar_validation_and_round_trip():
    with pytest.raises(ValueError):
        SessionCalendar("bad", "UTC", 600, 600, (0,))
    with pytest.raises(ValueError):
        SessionCalendar("bad", "UTC", 0, 1441, (0,))
    with pytest.raises((ValueError, KeyError)):  # zoneinfo's ZoneInfoNotFoundError is a KeyError
        SessionCalendar("bad", "Not/AZone", 0, 60, (0,))
    for cal in (US_EQUITIES, ALWAYS_OPEN):
        assert SessionCalendar.from_dict(cal.to_dict()) == cal


# --- names and config -----------------------------------------------------------------


def test_feature_names():
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == len(BASE_FEATURES) + len(WINDOW_FEATURES) * len(LOOKBACKS)
    assert all(FEATURE_NAMES[FEATURE_INDEX[name]] == name for name in FEATURE_NAMES)
    assert len(DEFAULT_MODEL_FEATURES) == len(set(DEFAULT_MODEL_FEATURES))
    assert set(DEFAULT_MODEL_FEATURES) < set(FEATURE_NAMES)
    assert not set(DEFAULT_MODEL_FEATURES) & PRICE_LEVEL_FEATURES
    assert set(DEFAULT_MODEL_FEATURES) | PRICE_LEVEL_FEATURES == set(FEATURE_NAMES)
    assert missing_features(DEFAULT_MODEL_FEATURES) == []
    assert missing_features(["spread", "nope", "vwap_7", "return_50"]) == ["nope", "vwap_7"]
    assert missing_features([]) == []
    assert len(StreamingFeatures(FeatureConfig()).update(make_tick())) == len(FEATURE_NAMES)


def test_feature_config():
    config = FeatureConfig(default_tick_size=0.05, tick_sizes=(("X", 0.5), ("Y", 0.25)), calendar=ALWAYS_OPEN)
    assert config.tick_size("X") == 0.5
    assert config.tick_size("Y") == 0.25
    assert config.tick_size("other") == 0.05
    assert FeatureConfig.from_dict(config.to_dict()) == config
    assert FeatureConfig.from_dict({}) == FeatureConfig()
    assert hash(config) == hash(FeatureConfig.from_dict(config.to_dict()))
    for bad in (0.0, -0.01, float("nan"), 5e-324, 1e-13, float("inf"), 1e13):  # each would overflow a feature
        with pytest.raises(ValueError):
            FeatureConfig(default_tick_size=bad)
        with pytest.raises(ValueError):
            FeatureConfig(tick_sizes=(("X", bad),))


def test_update_many_equals_update_tick_by_tick_in_any_chunking():
    """The vectorised stream update (big messages) carries state exactly like `update`."""
    import random

    specs = (InstrumentSpec("A", 100.0), InstrumentSpec("B", 50.0), InstrumentSpec("X", 4000.0, 0.5))
    config = FeatureConfig(tick_sizes=(("X", 0.5),))
    ticks = list(simulate(12_000, seed=5, instruments=specs).ticks())
    reference = StreamingFeatures(config)
    expected = np.array([reference.update(t) for t in ticks])
    expected_counts = []
    seen: dict[str, int] = {}
    for t in ticks:
        seen[t.instrument] = seen.get(t.instrument, 0) + 1
        expected_counts.append(seen[t.instrument])

    rng = random.Random(3)
    stream = StreamingFeatures(config)
    rows, counts, i = [], [], 0
    while i < len(ticks):
        chunk = ticks[i : i + rng.choice([1, 2, 7, 49, 50, 51, 300, 1000])]
        if len(chunk) == 1 or rng.random() < 0.3:
            for t in chunk:
                rows.append(stream.update(t))
                counts.append(stream.count(t.instrument))
        else:
            out, after = stream.update_many(chunk)
            rows.extend(out.tolist())
            counts.extend(after)
        i += len(chunk)
    assert np.array_equal(np.array(rows), expected)
    assert counts == expected_counts


# --- order flow (feature stage version 2) ---------------------------------------------


def test_order_flow_features_match_naive_reference_tick_by_tick():
    spec = InstrumentSpec("ONE", 80.0, 0.25)
    frame = simulate(300, seed=4, instruments=(spec,))
    # a mix of known and unknown aggressors (unknown: the quote rule decides), and ragged books (depth)
    frame.aggressor[::3] = 0
    frame.bid_price[5:9, 7:] = np.nan
    frame.bid_size[5:9, 7:] = np.nan
    frame.ask_price[20:30, 4:] = np.nan
    frame.ask_size[20:30, 4:] = np.nan
    frame.timestamp_ns[40:44] = frame.timestamp_ns[40]  # a burst on one timestamp
    frame.last_size[100:160] = 0.0  # no trade for 60 ticks: since_trade_s covers the whole window
    frame.aggressor[100:160] = 0
    config = FeatureConfig(tick_sizes=(("ONE", 0.25),))
    rows = stream_all(frame, config)
    assert_bit_identical(rows, batch_features(frame, config))

    n = len(frame)
    b1, a1 = frame.bid_price[:, 0], frame.ask_price[:, 0]
    mid = (a1 + b1) / 2
    last = np.where(frame.last_price > 0, frame.last_price, mid)
    depth1 = (frame.bid_size[:, 0] + frame.ask_size[:, 0]) / 2
    quote = np.where(last >= a1, 1, np.where(last <= b1, -1, np.sign(last - mid)))
    side = np.where(frame.aggressor != 0, frame.aggressor, quote)
    sv = np.where(frame.last_size > 0, side * frame.last_size, 0.0)
    ts = frame.timestamp_ns
    for t in range(n):
        row = rows[t]
        where = f"tick {t}"
        assert row[F["tick_interval_s"]] == ((ts[t] - ts[t - 1]) / 1e9 if t else 0.0), where
        recent = [j for j in range(max(0, t - MAX_LOOKBACK + 1), t + 1)]
        trades = [j for j in recent if frame.last_size[j] > 0]
        since = (ts[t] - ts[trades[-1]]) / 1e9 if trades else (ts[t] - ts[recent[0]]) / 1e9
        assert row[F["since_trade_s"]] == since, where
        for L in LOOKBACKS:
            w = slice(max(0, t - L + 1), t + 1)
            c = w.stop - w.start
            got = {name: row[F[f"{name}_{L}"]] for name in WINDOW_FEATURES}
            volume = frame.last_size[w].sum()
            assert got["trade_flow"] == pytest.approx(sv[w].sum() / volume if volume > 0 else 0.0, abs=1e-12), where
            assert got["trade_flow_depth"] == pytest.approx(sv[w].sum() / depth1[w].mean(), rel=1e-9, abs=1e-12)
            span = (ts[t] - ts[w.start]) / 1e9
            rate = (frame.last_size[w] > 0).sum() / max(span, 0.001) if c > 1 else 0.0
            assert got["trade_rate"] == pytest.approx(rate, rel=1e-12), where
            assert got["tick_interval_mean"] == pytest.approx(span / (c - 1) if c > 1 else 0.0, rel=1e-12), where
    # the window slides: no trade among the last 50 ticks -> since_trade_s covers those 50 ticks
    assert rows[159, F["since_trade_s"]] == (ts[159] - ts[110]) / 1e9
    assert rows[159, F["trade_flow_50"]] == 0.0 and rows[159, F["trade_rate_50"]] == 0.0


def test_features_after_max_lookback_ticks_of_warm_up_are_exact():
    """Every feature looks at most MAX_LOOKBACK ticks back, so a stream that starts MAX_LOOKBACK
    ticks before a span computes the span's features exactly (what `tickserve evaluate --span test`
    and a reconnecting client rely on)."""
    frame = simulate(3_000, seed=8, instruments=FOUR_INSTRUMENTS)
    full = batch_features(frame, FOUR_CONFIG)
    start = 1_700
    first = {}
    for name in np.unique(frame.instrument):
        rows = np.flatnonzero(frame.instrument == name)
        first[name] = rows[rows >= start][0]
    warm_from = min(
        np.flatnonzero(frame.instrument == name)[
            np.searchsorted(np.flatnonzero(frame.instrument == name), first[name]) - MAX_LOOKBACK
        ]
        for name in first
    )
    resumed = batch_features(frame.take(slice(warm_from, None)), FOUR_CONFIG)
    assert np.array_equal(resumed[start - warm_from :], full[start:])
