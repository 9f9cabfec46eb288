"""Signal rules: class probabilities -> action, edge, strength, urgency, risk.

Exactly the seed's rules, with thresholds from each model's manifest:
|edge| >= strong_edge -> STRONG, >= medium_edge -> MEDIUM, else WEAK;
STRONG and spread <= aggressive_max_spread_ticks -> AGGRESSIVE, else PASSIVE;
confidence >= low_risk_confidence and |edge| >= low_risk_edge -> LOW risk,
confidence >= medium_risk_confidence and |edge| >= medium_risk_edge -> MEDIUM,
else HIGH. The action is the most probable class (ties: HOLD, then the
earlier class in CLASSES).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .labels import BUY, CLASSES, HOLD, SELL

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

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "SignalRules":
        known = SignalRules.__dataclass_fields__
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown signal rule(s): {', '.join(unknown)}")
        return SignalRules(**{k: float(v) for k, v in d.items()})


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
    probs = (p_sell, p_hold, p_buy)
    confidence = max(probs)
    if p_hold == confidence:
        action = CLASSES[HOLD]
    else:
        action = CLASSES[probs.index(confidence)]
    edge = p_buy - p_sell
    strength_edge = abs(edge)
    if strength_edge >= rules.strong_edge:
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
    return SignalValues(action, p_buy, p_hold, p_sell, confidence, edge, strength, urgency, risk)


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
    (max, a subtraction, abs and comparisons; tested against `decide` on random rows and ties)."""
    p_sell, p_buy = probs[:, SELL], probs[:, BUY]
    confidence = probs.max(axis=1)
    action = predicted_class(probs)
    edge = p_buy - p_sell
    e = np.abs(edge)
    strength = np.where(e >= rules.strong_edge, 2, np.where(e >= rules.medium_edge, 1, 0))
    urgency = ((strength == 2) & (spread_ticks <= rules.aggressive_max_spread_ticks)).astype(np.int64)
    risk = np.where(
        (confidence >= rules.low_risk_confidence) & (e >= rules.low_risk_edge),
        0,
        np.where((confidence >= rules.medium_risk_confidence) & (e >= rules.medium_risk_edge), 1, 2),
    )
    return SignalArrays(action, confidence, edge, strength, urgency, risk)


def predicted_class(probs: np.ndarray) -> np.ndarray:
    """The action index per row of (n, 3) probabilities, with `decide`'s tie rule."""
    best = probs.max(axis=1)
    cls = probs.argmax(axis=1)
    return np.where(probs[:, HOLD] == best, HOLD, cls)


__all__ = ["ACTIONS", "BUY", "HOLD", "RISKS", "SELL", "STRENGTHS", "URGENCIES", "SignalRules", "SignalArrays", "SignalValues", "decide", "decide_many"]
