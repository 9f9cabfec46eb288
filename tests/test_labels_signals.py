"""Labels, signal rules, classification metrics and tick validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tickserve.errors import InvalidArgument
from tickserve.features import FeatureConfig
from tickserve.labels import (
    BUY,
    CLASSES,
    HOLD,
    NO_LABEL,
    SELL,
    LabelConfig,
    label_move,
    make_labels,
    mid_prices,
)
from tickserve.metrics import ClassificationMetrics
from tickserve.signals import SignalRules, decide, predicted_class
from tickserve.ticks import Tick, TickFrame
from tickserve.validation import validate_tick

NS = 1_000_000_000
TS0 = 1_704_205_800 * NS


def frame_from_books(rows: list[tuple[str, float, float]]) -> TickFrame:
    """(instrument, best bid, best ask) per row, one level per side."""
    ticks = [
        Tick(name, TS0 + i, 0.0, 0.0, (bid,), (10.0,), (ask,), (10.0,))
        for i, (name, bid, ask) in enumerate(rows)
    ]
    return TickFrame.from_ticks(ticks)


# --- labels ---------------------------------------------------------------------------


def test_two_tick_moves_survive_float_noise():
    # mid 100.02 -> 100.04 is 1.9999999999996 ticks in floats: still BUY; and back down: still SELL
    frame = frame_from_books([("A", 100.01, 100.03), ("A", 100.03, 100.05), ("A", 100.01, 100.03)])
    mid = mid_prices(frame)
    up, down = (mid[1] - mid[0]) / 0.01, (mid[2] - mid[1]) / 0.01
    assert up < 2.0 and down > -2.0  # the float noise this test is about
    y, future = make_labels(frame, LabelConfig(horizon_ticks=1, threshold_ticks=2.0), FeatureConfig())
    assert y.tolist() == [BUY, SELL, NO_LABEL]
    assert future.tolist() == [1, 2, -1]
    assert label_move(up, 2.0) == BUY and label_move(down, 2.0) == SELL


@pytest.mark.parametrize(
    "bid_later, expected",
    [
        (100.02, BUY),  # +2 ticks
        (100.03, BUY),  # +3 ticks
        (99.98, SELL),  # -2 ticks
        (99.97, SELL),
        (100.0199, HOLD),  # +1.99 ticks
        (99.9801, HOLD),  # -1.99 ticks
        (100.01, HOLD),  # +1
        (100.00, HOLD),  # no move
    ],
)
def test_threshold_semantics(bid_later, expected):
    frame = frame_from_books([("A", 100.00, 100.02), ("A", round(bid_later, 4), round(bid_later + 0.02, 4))])
    y, _ = make_labels(frame, LabelConfig(horizon_ticks=1, threshold_ticks=2.0), FeatureConfig())
    assert y[0] == expected


def test_horizon_and_per_instrument_labels_when_interleaved():
    # A on the cent grid, B on a 0.5 grid; interleaved irregularly
    a_bids = [100.00, 100.01, 100.02, 100.04, 100.05, 100.03, 100.00, 99.99]
    b_bids = [50.0, 50.5, 51.5, 51.0, 49.5, 49.5]
    order = ["A", "B", "B", "A", "A", "B", "A", "A", "B", "B", "A", "A", "B", "A"]
    rows, ia, ib = [], iter(a_bids), iter(b_bids)
    for name in order:
        bid = next(ia) if name == "A" else next(ib)
        rows.append((name, bid, round(bid + (0.01 if name == "A" else 0.5), 2)))
    frame = frame_from_books(rows)
    config = FeatureConfig(tick_sizes=(("B", 0.5),))
    h = 2
    y, future = make_labels(frame, LabelConfig(horizon_ticks=h, threshold_ticks=2.0), config)

    mid = mid_prices(frame)
    for name, tick_size in (("A", 0.01), ("B", 0.5)):
        idx = np.flatnonzero(frame.instrument == name)
        # the last `horizon` ticks of each instrument have no label
        assert (y[idx[-h:]] == NO_LABEL).all() and (future[idx[-h:]] == -1).all()
        for k, row in enumerate(idx[:-h]):
            later = idx[k + h]
            assert future[row] == later
            move = round((mid[later] - mid[row]) / tick_size, 6)
            assert y[row] == (BUY if move >= 2 else SELL if move <= -2 else HOLD)
    # spelled out: A's moves (in ticks) are +2, +3, +3, -1, -5, -4 -> BUY BUY BUY HOLD SELL SELL
    a_rows = np.flatnonzero(frame.instrument == "A")
    assert y[a_rows].tolist() == [BUY, BUY, BUY, HOLD, SELL, SELL, NO_LABEL, NO_LABEL]
    # B's moves: +3, +1, -4, -3 -> BUY HOLD SELL SELL
    b_rows = np.flatnonzero(frame.instrument == "B")
    assert y[b_rows].tolist() == [BUY, HOLD, SELL, SELL, NO_LABEL, NO_LABEL]


def test_instrument_with_too_few_ticks_is_unlabeled():
    frame = frame_from_books([("A", 100.0, 100.01)] * 3 + [("B", 10.0, 10.01)] * 5)
    y, future = make_labels(frame, LabelConfig(horizon_ticks=3, threshold_ticks=1.0), FeatureConfig())
    assert (y[:3] == NO_LABEL).all() and (future[:3] == -1).all()
    assert y[3:].tolist() == [HOLD, HOLD, NO_LABEL, NO_LABEL, NO_LABEL]


def test_label_move_agrees_with_make_labels():
    rng = np.random.default_rng(0)
    n = 4_000
    steps = rng.integers(-4, 5, n) * 0.01
    # many moves within a hair of the threshold (+-1e-7 tick), where rounding decides
    steps += rng.choice([0.0, 1e-9, -1e-9, 5e-9, -5e-9, 2e-8], n) * 0.01
    bids = np.round(100.0 + np.cumsum(steps), 12)
    frame = frame_from_books([("A", float(b), float(b) + 0.02) for b in bids])
    h = 3
    for threshold in (2.0, 1.5, 3.0):
        y, future = make_labels(frame, LabelConfig(horizon_ticks=h, threshold_ticks=threshold), FeatureConfig())
        mid = mid_prices(frame)
        got = [label_move((mid[i + h] - mid[i]) / 0.01, threshold) for i in range(n - h)]
        assert y[: n - h].tolist() == got
        assert set(got) == {SELL, HOLD, BUY}
    assert label_move(2.0000004, 2.0) == BUY
    assert label_move(1.9999996, 2.0) == BUY  # rounds to 2.0 at 1e-6 tick
    assert label_move(1.999999, 2.0) == HOLD
    assert label_move(-1.9999996, 2.0) == SELL
    assert label_move(-1.999999, 2.0) == HOLD


def test_label_config_validation_and_round_trip():
    with pytest.raises(ValueError):
        LabelConfig(horizon_ticks=0)
    with pytest.raises(ValueError):
        LabelConfig(threshold_ticks=0.0)
    with pytest.raises(ValueError):
        LabelConfig(threshold_ticks=float("nan"))
    config = LabelConfig(horizon_ticks=7, threshold_ticks=1.5)
    assert LabelConfig.from_dict(config.to_dict()) == config
    assert CLASSES == ("SELL", "HOLD", "BUY") and (SELL, HOLD, BUY) == (0, 1, 2)


# --- signal rules ---------------------------------------------------------------------

RULES = SignalRules()
BELOW = lambda x: float(np.nextafter(x, -math.inf))  # noqa: E731  the float just under x


@pytest.mark.parametrize(
    "p_buy, expected",
    [
        (0.3, "STRONG"),
        (BELOW(0.3), "MEDIUM"),
        (0.15, "MEDIUM"),
        (BELOW(0.15), "WEAK"),
        (0.0, "WEAK"),
        (1.0, "STRONG"),
    ],
)
def test_strength_boundaries_both_directions(p_buy, expected):
    # p_sell = 0 makes edge == p_buy exactly, so the boundary is hit exactly
    buy = decide(0.0, 1.0 - p_buy, p_buy, 1.0, RULES)
    assert buy.edge_score == p_buy and buy.strength == expected
    sell = decide(p_buy, 1.0 - p_buy, 0.0, 1.0, RULES)
    assert sell.edge_score == -p_buy and sell.strength == expected


@pytest.mark.parametrize(
    "p_buy, spread, expected",
    [
        (0.3, 2.0, "AGGRESSIVE"),  # STRONG and spread at the limit
        (0.3, 1.0, "AGGRESSIVE"),
        (0.3, 2.0000001, "PASSIVE"),  # spread over the limit
        (BELOW(0.3), 1.0, "PASSIVE"),  # MEDIUM is never aggressive
        (0.1, 0.0, "PASSIVE"),
    ],
)
def test_urgency_boundaries(p_buy, spread, expected):
    assert decide(0.0, 1.0 - p_buy, p_buy, spread, RULES).urgency == expected
    assert decide(p_buy, 1.0 - p_buy, 0.0, spread, RULES).urgency == expected


@pytest.mark.parametrize(
    "p_sell, p_hold, p_buy, expected",
    [
        # decide() does not need normalised probabilities; these isolate each condition
        (0.0, 0.0, 0.8, "LOW"),  # confidence 0.8, edge 0.8
        (0.4, 0.0, 0.8, "LOW"),  # edge exactly 0.4
        (BELOW(0.8) - 0.4, 0.0, BELOW(0.8), "MEDIUM"),  # confidence just under 0.8
        (0.0, 0.8, 0.4, "LOW"),  # HOLD is the most probable, confidence 0.8 counts
        (0.0, 0.8, BELOW(0.4), "MEDIUM"),  # edge just under 0.4
        (0.0, 0.6, 0.2, "MEDIUM"),  # confidence 0.6, edge exactly 0.2
        (0.0, BELOW(0.6), 0.2, "HIGH"),  # confidence just under 0.6
        (0.0, 0.6, BELOW(0.2), "HIGH"),  # edge just under 0.2
        (0.7, 0.0, 0.0, "MEDIUM"),  # SELL side: |edge| counts
        (0.9, 0.05, 0.05, "LOW"),
        (1 / 3, 1 / 3, 1 / 3, "HIGH"),
    ],
)
def test_risk_boundaries(p_sell, p_hold, p_buy, expected):
    assert decide(p_sell, p_hold, p_buy, 1.0, RULES).risk == expected


def test_decide_values_and_action():
    s = decide(0.1, 0.2, 0.7, 1.5, RULES)
    assert (s.action, s.p_sell, s.p_hold, s.p_buy) == ("BUY", 0.1, 0.2, 0.7)
    assert s.confidence == 0.7
    assert s.edge_score == 0.7 - 0.1
    assert (s.strength, s.urgency, s.risk) == ("STRONG", "AGGRESSIVE", "MEDIUM")
    assert decide(0.6, 0.3, 0.1, 1.0, RULES).action == "SELL"
    assert decide(0.2, 0.5, 0.3, 1.0, RULES).action == "HOLD"
    # ties: HOLD first, then the earlier class (SELL before BUY)
    assert decide(0.4, 0.4, 0.2, 1.0, RULES).action == "HOLD"
    assert decide(0.2, 0.4, 0.4, 1.0, RULES).action == "HOLD"
    assert decide(0.45, 0.1, 0.45, 1.0, RULES).action == "SELL"


def test_custom_rules_are_honoured():
    rules = SignalRules(
        strong_edge=0.5,
        medium_edge=0.25,
        aggressive_max_spread_ticks=1.0,
        low_risk_confidence=0.9,
        low_risk_edge=0.7,
        medium_risk_confidence=0.5,
        medium_risk_edge=0.1,
    )
    default = decide(0.0, 0.6, 0.4, 1.0, RULES)
    assert (default.strength, default.urgency, default.risk) == ("STRONG", "AGGRESSIVE", "MEDIUM")
    s = decide(0.0, 0.6, 0.4, 1.0, rules)
    assert (s.strength, s.urgency, s.risk) == ("MEDIUM", "PASSIVE", "MEDIUM")
    assert decide(0.0, 0.15, 0.85, 1.0, RULES).risk == "LOW"
    assert decide(0.0, 0.55, 0.1, 1.0, RULES).risk == "HIGH"
    assert decide(0.0, 0.5, 0.5, 1.0, rules).strength == "STRONG"
    assert decide(0.0, 0.5, 0.5, 1.0, rules).urgency == "AGGRESSIVE"
    assert decide(0.0, 0.5, 0.5, 1.5, rules).urgency == "PASSIVE"  # 1.5 > 1.0 (default would allow)
    assert decide(0.0, 0.76, 0.24, 1.0, rules).strength == "WEAK"  # 0.24 < 0.25 (default: MEDIUM)
    assert decide(0.0, 0.1, 0.9, 1.0, rules).risk == "LOW"
    assert decide(0.0, 0.15, 0.85, 1.0, rules).risk == "MEDIUM"  # default rules: LOW
    assert decide(0.0, 0.55, 0.1, 1.0, rules).risk == "MEDIUM"  # default rules: HIGH
    assert decide(0.05, 0.9, 0.05, 1.0, rules).risk == "HIGH"


def test_signal_rules_from_dict():
    assert SignalRules.from_dict({}) == SignalRules()
    rules = SignalRules.from_dict({"strong_edge": "0.4", "medium_risk_edge": 0.25})
    assert rules.strong_edge == 0.4 and rules.medium_risk_edge == 0.25 and rules.medium_edge == 0.15
    assert SignalRules.from_dict(rules.to_dict()) == rules
    with pytest.raises(ValueError, match="strong_edgee"):
        SignalRules.from_dict({"strong_edgee": 0.3})
    with pytest.raises(ValueError, match="bogus"):
        SignalRules.from_dict({"strong_edge": 0.3, "bogus": 1})


def test_predicted_class_agrees_with_decide():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet([1.0, 1.0, 1.0], 3_000)
    # rounded rows: many exact ties between classes
    ties = np.round(rng.dirichlet([1.0, 1.0, 1.0], 3_000) * 5) / 5
    probs = np.vstack([probs, ties, [[0.5, 0.0, 0.5], [0.0, 0.5, 0.5], [0.5, 0.5, 0.0], [1 / 3] * 3]])
    cls = predicted_class(probs)
    assert len(cls) == len(probs)
    tied = 0
    for row, k in zip(probs, cls):
        p_sell, p_hold, p_buy = (float(x) for x in row)
        assert decide(p_sell, p_hold, p_buy, 1.0, RULES).action == CLASSES[k], row
        tied += int((row == row.max()).sum() > 1)
    assert tied > 100  # the tie rule really was exercised
    assert predicted_class(np.array([[0.5, 0.0, 0.5]])).tolist() == [SELL]
    assert predicted_class(np.array([[0.0, 0.5, 0.5]])).tolist() == [HOLD]


# --- metrics --------------------------------------------------------------------------

TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
PRED = np.array([0, 1, 2, 1, 1, 2, 2, 0, 2, 2])
PROBS = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.4, 0.5, 0.1],
        [0.2, 0.3, 0.5],
        [0.1, 0.8, 0.1],
        [0.3, 0.6, 0.1],
        [0.1, 0.1, 0.8],
        [0.0, 0.4, 0.6],
        [0.6, 0.4, 0.0],  # true class has probability 0: clipped to 1e-15
        [0.2, 0.2, 0.6],
        [0.1, 0.3, 0.6],
    ]
)


def _check_hand_computed(m: ClassificationMetrics) -> None:
    assert m.count == 10
    assert m.confusion.tolist() == [[1, 1, 1], [0, 2, 1], [1, 0, 3]]
    assert m.accuracy == pytest.approx(6 / 10)
    per = {c["label"]: c for c in m.per_class()}
    # SELL: tp 1, predicted 2, support 3
    assert per["SELL"]["precision"] == pytest.approx(1 / 2)
    assert per["SELL"]["recall"] == pytest.approx(1 / 3)
    assert per["SELL"]["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    # HOLD: tp 2, predicted 3, support 3
    assert per["HOLD"]["precision"] == pytest.approx(2 / 3)
    assert per["HOLD"]["recall"] == pytest.approx(2 / 3)
    assert per["HOLD"]["f1"] == pytest.approx(2 / 3)
    # BUY: tp 3, predicted 5, support 4
    assert per["BUY"]["precision"] == pytest.approx(3 / 5)
    assert per["BUY"]["recall"] == pytest.approx(3 / 4)
    assert per["BUY"]["f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert [per[c]["support"] for c in CLASSES] == [3, 3, 4]
    assert m.macro_f1 == pytest.approx((0.4 + 2 / 3 + 2 * 0.6 * 0.75 / 1.35) / 3)
    p_true = [0.7, 0.4, 0.2, 0.8, 0.6, 0.8, 0.6, 1e-15, 0.6, 0.3]
    assert m.log_loss == pytest.approx(-sum(math.log(p) for p in p_true) / 10, rel=1e-12)
    assert m.majority_baseline() == ("BUY", pytest.approx(0.4))
    summary = m.summary()
    assert summary["accuracy"] == pytest.approx(0.6)
    assert summary["count"] == 10.0
    assert summary["majority_baseline_accuracy"] == pytest.approx(0.4)
    assert summary["log_loss"] == m.log_loss and summary["macro_f1"] == m.macro_f1


def test_metrics_against_hand_computed_values_add():
    m = ClassificationMetrics()
    for t, p, pr in zip(TRUE, PRED, PROBS):
        m.add(int(t), int(p), pr)
    _check_hand_computed(m)


def test_metrics_against_hand_computed_values_add_batch():
    m = ClassificationMetrics()
    m.add_batch(TRUE[:4], PRED[:4], PROBS[:4])
    m.add_batch(TRUE[4:], PRED[4:], PROBS[4:])
    _check_hand_computed(m)


def test_add_and_add_batch_agree_on_random_data():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet([1.0, 1.0, 1.0], 500)
    true = rng.integers(0, 3, 500)
    pred = predicted_class(probs)
    one, batch = ClassificationMetrics(), ClassificationMetrics()
    for t, p, pr in zip(true, pred, probs):
        one.add(int(t), int(p), pr)
    batch.add_batch(true, pred, probs)
    assert np.array_equal(one.confusion, batch.confusion)
    assert one.log_loss == pytest.approx(batch.log_loss, rel=1e-12)
    assert one.per_class() == batch.per_class()


def test_empty_metrics():
    m = ClassificationMetrics()
    assert m.count == 0
    assert m.accuracy == 0.0 and m.log_loss == 0.0 and m.macro_f1 == 0.0
    assert all(c["precision"] == c["recall"] == c["f1"] == 0.0 for c in m.per_class())
    assert m.majority_baseline()[1] == 0.0


# --- tick validation ------------------------------------------------------------------


def good_tick(**changes) -> Tick:
    fields = dict(
        instrument="AAPL",
        timestamp_ns=TS0,
        last_price=100.01,
        last_size=5.0,
        bid_price=(100.00, 99.99, 99.98),
        bid_size=(10.0, 20.0, 30.0),
        ask_price=(100.02, 100.03),
        ask_size=(15.0, 25.0),
    )
    fields.update(changes)
    return Tick(**fields)


def test_valid_ticks_pass():
    validate_tick(good_tick())
    validate_tick(good_tick(last_price=0.0, last_size=0.0))  # no trade yet
    validate_tick(good_tick(bid_size=(0.0, 0.0, 0.0)))  # zero sizes are allowed
    validate_tick(good_tick(bid_price=(100.02,), bid_size=(1.0,)))  # locked book: bid == ask
    validate_tick(good_tick(bid_price=tuple(100.0 - 0.01 * i for i in range(10)), bid_size=(1.0,) * 10))
    validate_tick(good_tick(timestamp_ns=1))


NAN = float("nan")
INF = float("inf")


@pytest.mark.parametrize(
    "changes, field, shown",
    [
        (dict(instrument=""), "instrument", "empty"),
        (dict(instrument="X" * 129), "instrument", "129"),
        (dict(timestamp_ns=0), "timestamp_ns", "got 0"),
        (dict(timestamp_ns=-5), "timestamp_ns", "-5"),
        (dict(last_price=NAN), "last_price", "nan"),
        (dict(last_price=-1.5), "last_price", "-1.5"),
        (dict(last_size=INF), "last_size", "inf"),
        (dict(last_size=-2.0), "last_size", "-2.0"),
        (dict(bid_price=(NAN, 99.99, 99.98)), "bid_price[0]", "nan"),
        (dict(ask_price=(100.02, NAN)), "ask_price[1]", "nan"),
        (dict(bid_price=(100.00, 0.0, -1.0)), "bid_price[1]", "0.0"),
        (dict(bid_size=(10.0, -3.0, 30.0)), "bid_size[1]", "-3.0"),
        (dict(ask_size=(15.0, NAN)), "ask_size[1]", "nan"),
        (dict(bid_price=(100.03, 100.02), bid_size=(1.0, 1.0)), "bid_price[0]", "100.03"),  # crossed
        (dict(bid_price=(100.00, 100.00, 99.98)), "bid_price[1]", "100.0"),  # not strictly descending
        (dict(bid_price=(100.00, 100.005, 99.98)), "bid_price[1]", "100.005"),
        (dict(ask_price=(100.03, 100.02)), "ask_price[1]", "100.02"),  # not ascending
        (dict(ask_price=(100.02, 100.02)), "ask_price[1]", "100.02"),
        (dict(bid_size=(10.0, 20.0)), "bid_size", "2 values"),  # mismatched sizes
        (dict(ask_size=(1.0, 2.0, 3.0)), "ask_size", "3 values"),
        (dict(bid_price=(), bid_size=()), "bid_price", "none"),  # empty side
        (dict(ask_price=(), ask_size=()), "ask_price", "none"),
        (dict(bid_price=tuple(100.0 - 0.01 * i for i in range(11)), bid_size=(1.0,) * 11), "bid_price", "11"),
        (dict(ask_price=tuple(100.02 + 0.01 * i for i in range(11)), ask_size=(1.0,) * 11), "ask_price", "11"),
    ],
)
def test_each_validation_rule(changes, field, shown):
    with pytest.raises(InvalidArgument) as info:
        validate_tick(good_tick(**changes))
    err = info.value
    assert err.field == field
    assert shown in err.message and shown in str(err)
    assert err.message.startswith(field.split("[")[0])
    assert err.status.name == "INVALID_ARGUMENT"


def test_crossed_book_message_shows_both_prices():
    with pytest.raises(InvalidArgument) as info:
        validate_tick(good_tick(bid_price=(100.05,), bid_size=(1.0,)))
    assert info.value.field == "bid_price[0]"
    assert "100.05" in info.value.message and "100.02" in info.value.message
