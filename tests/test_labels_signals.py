"""Labels, signal rules, classification metrics and tick validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tickserve.core.signals import RISKS, STRENGTHS, URGENCIES, SignalRules, decide, decide_many, predicted_class
from tickserve.core.ticks import Tick, TickFrame
from tickserve.core.validation import validate_tick
from tickserve.errors import InvalidArgument
from tickserve.evaluation.labels import (
    BUY,
    CLASSES,
    HOLD,
    NO_LABEL,
    SELL,
    LabelConfig,
    label_class,
    make_labels,
    mid_prices,
)
from tickserve.evaluation.metrics import ClassificationMetrics
from tickserve.features import FeatureConfig

NS = 1_000_000_000
TS0 = 1_704_205_800 * NS


def frame_from_books(rows: list[tuple[str, float, float]]) -> TickFrame:
    """(instrument, best bid, best ask) per row, one level per side."""
    ticks = [Tick(name, TS0 + i, 0.0, 0.0, (bid,), (10.0,), (ask,), (10.0,)) for i, (name, bid, ask) in enumerate(rows)]
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
    labels = LabelConfig(horizon_ticks=1, threshold_ticks=2.0)
    assert label_class(100.01, 100.03, 100.03, 100.05, 0.01, labels) == BUY
    assert label_class(100.03, 100.05, 100.01, 100.03, 0.01, labels) == SELL


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


def test_label_class_agrees_with_make_labels_in_both_modes():
    rng = np.random.default_rng(0)
    n = 4_000
    steps = rng.integers(-4, 5, n) * 0.01
    # many moves within a hair of the threshold (+-1e-7 tick), where rounding decides
    steps += rng.choice([0.0, 1e-9, -1e-9, 5e-9, -5e-9, 2e-8], n) * 0.01
    bids = np.round(100.0 + np.cumsum(steps), 12)
    spreads = rng.choice([0.01, 0.02, 0.03, 0.05], n)
    frame = frame_from_books([("A", float(b), float(b + s)) for b, s in zip(bids, spreads)])
    h = 3
    bid, ask = frame.bid_price[:, 0], frame.ask_price[:, 0]
    for labels in (
        LabelConfig(horizon_ticks=h, threshold_ticks=2.0),
        LabelConfig(horizon_ticks=h, threshold_ticks=1.5),
        LabelConfig(horizon_ticks=h, mode="taker"),
        LabelConfig(horizon_ticks=h, mode="taker", cost_ticks=1.0),
    ):
        y, future = make_labels(frame, labels, FeatureConfig())
        got = [label_class(bid[i], ask[i], bid[i + h], ask[i + h], 0.01, labels) for i in range(n - h)]
        assert y[: n - h].tolist() == got, labels
        assert set(got) == {SELL, HOLD, BUY}
    mid = LabelConfig(horizon_ticks=1, threshold_ticks=2.0)
    # mid moves of +2.0000004, +1.9999996 (rounds to 2.0 at 1e-6 tick), +1.999999 ticks
    assert label_class(100.0, 100.02, 100.020000004, 100.040000004, 0.01, mid) == BUY
    assert label_class(100.0, 100.02, 100.019999996, 100.039999996, 0.01, mid) == BUY
    assert label_class(100.0, 100.02, 100.01999999, 100.03999999, 0.01, mid) == HOLD
    assert label_class(100.0, 100.02, 99.980000004, 100.000000004, 0.01, mid) == SELL


@pytest.mark.parametrize(
    "later_bid, later_ask, cost, expected",
    [
        # now: bid 100.00, ask 100.03 (a 3-tick spread)
        (100.04, 100.05, 0.0, BUY),  # sell at 100.04 what was bought at 100.03: +1 tick
        (100.03, 100.04, 0.0, HOLD),  # the mid rose 2 ticks but the round trip earns 0
        (100.05, 100.06, 1.0, BUY),  # +2 ticks > 1 tick of cost
        (100.04, 100.05, 1.0, HOLD),  # +1 tick does not beat 1 tick of cost
        (99.98, 99.99, 0.0, SELL),  # bought back at 99.99 what was sold at 100.00: +1 tick
        (99.97, 100.00, 0.0, HOLD),  # a wider book: buying back at the old bid earns nothing
        (100.0, 100.03, 0.0, HOLD),
    ],
)
def test_taker_labels_are_round_trips_after_the_spread(later_bid, later_ask, cost, expected):
    frame = frame_from_books([("A", 100.00, 100.03), ("A", later_bid, later_ask)])
    labels = LabelConfig(horizon_ticks=1, mode="taker", cost_ticks=cost)
    y, _ = make_labels(frame, labels, FeatureConfig())
    assert y[0] == expected
    assert label_class(100.00, 100.03, later_bid, later_ask, 0.01, labels) == expected


def test_label_config_validation_and_round_trip():
    with pytest.raises(ValueError):
        LabelConfig(horizon_ticks=0)
    with pytest.raises(ValueError):
        LabelConfig(threshold_ticks=0.0)
    with pytest.raises(ValueError):
        LabelConfig(threshold_ticks=float("nan"))
    with pytest.raises(ValueError, match="label mode"):
        LabelConfig(mode="maker")
    for bad in (-1.0, float("inf")):
        with pytest.raises(ValueError, match="cost_ticks"):
            LabelConfig(mode="taker", cost_ticks=bad)
    for config in (
        LabelConfig(horizon_ticks=7, threshold_ticks=1.5),
        LabelConfig(horizon_ns=10**9, mode="taker", cost_ticks=0.5),
    ):
        assert LabelConfig.from_dict(config.to_dict()) == config
    # a mid label writes exactly the keys older manifests have; a manifest without a mode is a mid one
    assert LabelConfig(horizon_ticks=7).to_dict() == {"horizon_ticks": 7, "threshold_ticks": 2.0}
    assert LabelConfig.from_dict({"horizon_ticks": 50, "threshold_ticks": 2.0}).mode == "mid"
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
    # p_sell = 0 makes edge == p_buy exactly, so the boundary is hit exactly; p_hold = 0 keeps
    # the BUY (SELL) the most probable class (decide() does not need normalised probabilities)
    buy = decide(0.0, 0.0, p_buy, 1.0, RULES)
    assert buy.edge_score == p_buy and buy.strength == expected
    sell = decide(p_buy, 0.0, 0.0, 1.0, RULES)
    assert sell.edge_score == -p_buy and sell.strength == expected


def test_hold_is_always_weak_and_strong_needs_the_most_probable_class():
    assert decide(0.0, 0.7, 0.3, 1.0, RULES).strength == "WEAK"  # HOLD with |edge| 0.3 is not STRONG
    assert decide(0.45, 0.1, 0.45, 1.0, RULES).strength == "WEAK"  # a SELL with edge 0
    weighted = SignalRules(action_weight=2.0)
    s = decide(0.0, 0.6, 0.4, 1.0, weighted)  # the weight makes it a BUY, but HOLD is more probable
    assert (s.action, s.strength, s.urgency) == ("BUY", "MEDIUM", "PASSIVE")
    assert decide(0.0, 0.4, 0.6, 1.0, weighted).strength == "STRONG"


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
    assert decide(0.0, 0.0, p_buy, spread, RULES).urgency == expected
    assert decide(p_buy, 0.0, 0.0, spread, RULES).urgency == expected


def test_action_weight_and_cost_gate():
    gate = SignalRules(
        action_weight=2.0,
        cost_gate=True,
        expected_move_sell_ticks=-6.0,
        expected_move_hold_ticks=0.0,
        expected_move_buy_ticks=6.0,
        cost_ticks=0.5,
        strong_cost_multiple=1.0,
    )
    # 2 x 0.3 > 0.55: a BUY by weight; expected move 0.3 x 6 - 0.15 x 6 = 0.9 ticks > 0.5 of cost
    buy = decide(0.15, 0.55, 0.3, 0.2, gate)
    assert (buy.action, buy.strength) == ("BUY", "MEDIUM")  # HOLD is more probable: never STRONG
    assert decide(0.15, 0.55, 0.3, 5.0, gate).action == "BUY"  # a passive BUY does not cross the spread
    assert decide(0.3, 0.55, 0.15, 5.0, gate).action == "SELL"
    small = SignalRules(
        action_weight=2.0, cost_gate=True, expected_move_sell_ticks=-2.0, expected_move_buy_ticks=2.0, cost_ticks=0.5
    )
    # expected move 0.3 x 2 - 0.15 x 2 = 0.3 ticks: not even the 0.5 ticks of cost: abstain
    assert decide(0.15, 0.55, 0.3, 0.0, small).action == "HOLD"
    assert decide(0.15, 0.55, 0.3, 0.0, small).strength == "WEAK"
    # STRONG needs the expected move to pay (spread + cost) x strong_cost_multiple
    top = dict(p_sell=0.05, p_hold=0.15, p_buy=0.8)  # expected move 0.75 x 6 = 4.5 ticks, edge 0.75
    assert decide(*top.values(), 3.9, gate).strength == "STRONG"  # 4.5 > 3.9 + 0.5
    assert decide(*top.values(), 4.1, gate).strength == "MEDIUM"  # 4.5 is not > 4.6
    assert decide(*top.values(), 4.1, gate).urgency == "PASSIVE"
    twice = SignalRules(**{**gate.to_dict(), "strong_cost_multiple": 2.0})
    assert decide(*top.values(), 1.7, twice).strength == "STRONG"  # 4.5 > (1.7 + 0.5) x 2
    assert decide(*top.values(), 1.8, twice).strength == "MEDIUM"
    no_gate = SignalRules(action_weight=2.0)
    assert decide(0.15, 0.55, 0.3, 100.0, no_gate).action == "BUY"
    with pytest.raises(ValueError, match="action_weight"):
        SignalRules(action_weight=0.0)
    with pytest.raises(ValueError, match="cost_gate"):
        SignalRules.from_dict({"cost_gate": "yes"})
    assert SignalRules.from_dict(gate.to_dict()) == gate
    assert gate.to_numbers()["cost_gate"] == 1.0


def test_decide_many_equals_decide_with_the_cost_gate():
    rng = np.random.default_rng(7)
    probs = rng.dirichlet([1.0, 2.0, 1.0], 4_000)
    spread = rng.choice([0.0, 1.0, 2.0, 3.5, 20.0], 4_000)
    rules = SignalRules(
        action_weight=2.5,
        cost_gate=True,
        expected_move_sell_ticks=-8.0,
        expected_move_hold_ticks=0.3,
        expected_move_buy_ticks=7.0,
        cost_ticks=0.25,
    )
    arrays = decide_many(probs, spread, rules)
    actions = strengths = 0
    for i, row in enumerate(probs):
        s = decide(*map(float, row), float(spread[i]), rules)
        assert (
            CLASSES[arrays.action[i]],
            STRENGTHS[arrays.strength[i]],
            URGENCIES[arrays.urgency[i]],
            RISKS[arrays.risk[i]],
        ) == (s.action, s.strength, s.urgency, s.risk)
        assert (arrays.confidence[i], arrays.edge_score[i]) == (s.confidence, s.edge_score)
        actions += s.action != "HOLD"
        strengths += s.strength == "STRONG"
    assert actions > 500 and strengths > 100  # both rules really were exercised


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
    default = decide(0.0, 0.35, 0.45, 1.0, RULES)
    assert (default.strength, default.urgency, default.risk) == ("STRONG", "AGGRESSIVE", "HIGH")
    s = decide(0.0, 0.35, 0.45, 1.0, rules)
    assert (s.strength, s.urgency, s.risk) == ("MEDIUM", "PASSIVE", "HIGH")
    assert decide(0.0, 0.15, 0.85, 1.0, RULES).risk == "LOW"
    assert decide(0.0, 0.55, 0.1, 1.0, RULES).risk == "HIGH"
    assert decide(0.0, 0.5, 0.5, 1.0, rules).strength == "WEAK"  # a tie goes to HOLD
    assert decide(0.0, 0.4, 0.5, 1.0, rules).strength == "STRONG"
    assert decide(0.0, 0.4, 0.5, 1.0, rules).urgency == "AGGRESSIVE"
    assert decide(0.0, 0.4, 0.5, 1.5, rules).urgency == "PASSIVE"  # 1.5 > 1.0 (default would allow)
    assert decide(0.0, 0.2, 0.24, 1.0, rules).strength == "WEAK"  # 0.24 < 0.25 (default: MEDIUM)
    assert decide(0.0, 0.2, 0.24, 1.0, RULES).strength == "MEDIUM"
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
