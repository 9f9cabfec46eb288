"""Signal rules: class probabilities -> action, edge, strength, urgency, risk.

Thresholds come from each model's manifest (`SignalRules`):

- action: the class with the highest score, where the scores are the
  probabilities with p_buy and p_sell multiplied by `action_weight` (1 = the
  most probable class; `tickserve train` tunes it on the validation span for
  macro-F1, since the most probable class is almost always HOLD on a market
  where most ticks are HOLD). Ties: HOLD, then the earlier class in CLASSES.
- the cost gate (`cost_gate`, set by training), from the model's expected mid
  move in the signal's direction (sum over classes of p_class x the mean move
  of that class in training, `expected_move_*_ticks`): a BUY or SELL whose
  expected move does not even cover `cost_ticks` (what acting costs without
  crossing the spread: fees) is HOLD, and only one whose expected move also
  pays for crossing the current spread may be STRONG (and so AGGRESSIVE). A
  PASSIVE BUY says "the price is expected to rise: buy, but do not pay the
  spread for it"; abstaining is the answer where not even that holds.
- edge = p_buy - p_sell; strength grades a BUY or SELL: STRONG when |edge| >=
  strong_edge, the action is also the most probable class and (with the gate)
  its expected move pays the spread, MEDIUM when |edge| >= medium_edge, else
  WEAK; a HOLD is always WEAK.
- urgency: AGGRESSIVE for a STRONG signal while spread <=
  aggressive_max_spread_ticks, else PASSIVE.
- risk: confidence >= low_risk_confidence and |edge| >= low_risk_edge -> LOW,
  confidence >= medium_risk_confidence and |edge| >= medium_risk_edge ->
  MEDIUM, else HIGH.

`decide` (one row, plain floats) and `decide_many` (arrays) give the same
values bit for bit: the same operations in the same order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ..evaluation.labels import BUY, CLASSES, HOLD, SELL

ACTIONS = CLASSES  # action names follow the class names
STRENGTHS = ("WEAK", "MEDIUM", "STRONG")
URGENCIES = ("PASSIVE", "AGGRESSIVE")
RISKS = ("LOW", "MEDIUM", "HIGH")


@dataclass(frozen=True)
class SignalRules:
    strong_edge: float = 0.30
    medium_edge: float = 0.15
    aggressive_max_spread_ticks: float = 2.0
    low_risk_confidence: float = 0.80
    low_risk_edge: float = 0.40
    medium_risk_confidence: float = 0.60
    medium_risk_edge: float = 0.20
    action_weight: float = 1.0
    cost_gate: bool = False
    expected_move_sell_ticks: float = 0.0
    expected_move_hold_ticks: float = 0.0
    expected_move_buy_ticks: float = 0.0
    cost_ticks: float = 0.0
    # STRONG needs an expected move of this many times (spread + cost_ticks): a margin for the error
    # in the expected move, which rests on estimated probabilities and class means
    strong_cost_multiple: float = 2.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "cost_gate" and not np.isfinite(value):
                raise ValueError(f"signal rule {f.name} must be a finite number, got {value!r}")
        if not self.action_weight > 0:
            raise ValueError(f"signal rule action_weight must be > 0, got {self.action_weight!r}")
        if self.cost_ticks < 0:
            raise ValueError(f"signal rule cost_ticks must be >= 0, got {self.cost_ticks!r}")

    def to_dict(self) -> dict[str, float | bool]:
        return asdict(self)

    def to_numbers(self) -> dict[str, float]:
        """Every rule as a number (the gate as 1 or 0), for ModelInfo.signal_rules."""
        return {k: float(v) for k, v in asdict(self).items()}

    @staticmethod
    def from_dict(d: dict) -> SignalRules:
        known = {f.name: f for f in fields(SignalRules)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown signal rule(s): {', '.join(unknown)}")
        values = {}
        for k, v in d.items():
            if k == "cost_gate":
                if not isinstance(v, (bool, int)) or v not in (0, 1):
                    raise ValueError(f"signal rule cost_gate must be true or false, got {v!r}")
                values[k] = bool(v)
            else:
                values[k] = float(v)
        return SignalRules(**values)


@dataclass(frozen=True, slots=True)
class SignalValues:
    """One signal in the project's own terms (the gRPC edge turns it into protobuf)."""

    action: str
    p_buy: float
    p_hold: float
    p_sell: float
    confidence: float
    edge_score: float
    strength: str
    urgency: str
    risk: str


def decide(p_sell: float, p_hold: float, p_buy: float, spread_ticks: float, rules: SignalRules) -> SignalValues:
    confidence = max(p_sell, p_hold, p_buy)
    w = rules.action_weight
    s_sell = p_sell * w
    s_buy = p_buy * w
    best = max(s_sell, p_hold, s_buy)
    if p_hold == best:
        action = HOLD
    elif s_sell == best:
        action = SELL
    else:
        action = BUY
    pays_spread = True
    if action != HOLD and rules.cost_gate:
        move = p_sell * rules.expected_move_sell_ticks + p_hold * rules.expected_move_hold_ticks
        move = move + p_buy * rules.expected_move_buy_ticks
        if action == SELL:
            move = -move
        if move <= rules.cost_ticks:
            action = HOLD
        pays_spread = move > (spread_ticks + rules.cost_ticks) * rules.strong_cost_multiple
    edge = p_buy - p_sell
    strength_edge = abs(edge)
    if action == HOLD:
        strength = "WEAK"
    elif strength_edge >= rules.strong_edge and (p_buy if action == BUY else p_sell) == confidence and pays_spread:
        strength = "STRONG"
    elif strength_edge >= rules.medium_edge:
        strength = "MEDIUM"
    else:
        strength = "WEAK"
    urgency = "AGGRESSIVE" if strength == "STRONG" and spread_ticks <= rules.aggressive_max_spread_ticks else "PASSIVE"
    if confidence >= rules.low_risk_confidence and strength_edge >= rules.low_risk_edge:
        risk = "LOW"
    elif confidence >= rules.medium_risk_confidence and strength_edge >= rules.medium_risk_edge:
        risk = "MEDIUM"
    else:
        risk = "HIGH"
    return SignalValues(CLASSES[action], p_buy, p_hold, p_sell, confidence, edge, strength, urgency, risk)


@dataclass(frozen=True, slots=True)
class SignalArrays:
    """`decide` over many rows: indices into ACTIONS, STRENGTHS, URGENCIES and RISKS."""

    action: np.ndarray  # int, index into ACTIONS (= CLASSES)
    confidence: np.ndarray
    edge_score: np.ndarray
    strength: np.ndarray  # int, index into STRENGTHS
    urgency: np.ndarray  # int, index into URGENCIES
    risk: np.ndarray  # int, index into RISKS


def decide_many(probs: np.ndarray, spread_ticks: np.ndarray, rules: SignalRules) -> SignalArrays:
    """`decide` vectorised over (n, 3) probabilities (SELL, HOLD, BUY): the same values, bit for bit
    (the same products, sums, max, abs and comparisons; tested against `decide` on random rows and ties)."""
    p_sell, p_hold, p_buy = probs[:, SELL], probs[:, HOLD], probs[:, BUY]
    confidence = probs.max(axis=1)
    action = weighted_class(probs, rules.action_weight)
    pays_spread = True
    if rules.cost_gate:
        move = p_sell * rules.expected_move_sell_ticks + p_hold * rules.expected_move_hold_ticks
        move = move + p_buy * rules.expected_move_buy_ticks
        move = np.where(action == SELL, -move, move)
        action = np.where((action != HOLD) & (move <= rules.cost_ticks), HOLD, action)
        pays_spread = move > (spread_ticks + rules.cost_ticks) * rules.strong_cost_multiple
    edge = p_buy - p_sell
    e = np.abs(edge)
    top = (np.where(action == BUY, p_buy, p_sell) == confidence) & pays_spread
    strength = np.where(
        action == HOLD, 0, np.where((e >= rules.strong_edge) & top, 2, np.where(e >= rules.medium_edge, 1, 0))
    )
    urgency = ((strength == 2) & (spread_ticks <= rules.aggressive_max_spread_ticks)).astype(np.int64)
    risk = np.where(
        (confidence >= rules.low_risk_confidence) & (e >= rules.low_risk_edge),
        0,
        np.where((confidence >= rules.medium_risk_confidence) & (e >= rules.medium_risk_edge), 1, 2),
    )
    return SignalArrays(action, confidence, edge, strength, urgency, risk)


def weighted_class(probs: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """The action index per row before the cost gate, with `decide`'s weights and tie rule."""
    scores = probs * np.array([weight, 1.0, weight]) if weight != 1.0 else probs
    best = scores.max(axis=1)
    cls = scores.argmax(axis=1)  # the first maximum: SELL before BUY, as `decide`
    return np.where(scores[:, HOLD] == best, HOLD, cls)


def predicted_class(probs: np.ndarray) -> np.ndarray:
    """The most probable class per row of (n, 3) probabilities, with `decide`'s tie rule."""
    return weighted_class(probs, 1.0)


__all__ = [
    "ACTIONS",
    "BUY",
    "HOLD",
    "RISKS",
    "SELL",
    "STRENGTHS",
    "URGENCIES",
    "SignalRules",
    "SignalArrays",
    "SignalValues",
    "decide",
    "decide_many",
    "predicted_class",
    "weighted_class",
]
