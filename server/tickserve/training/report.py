"""What training did and how the model scored, typed, and in words.

`TrainingReport` is stored in the manifest (`training`), shown by `tickserve
train`, served in ModelInfo (spans and notes) and read by the scoreboard
(`benchmarks/signals.py`). `flat_metrics()` gives the manifest's flat
`metrics` (ModelInfo.metrics) from it, with the keys earlier releases wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .scores import SpanScores
from .walk_forward import FoldSpans

SAMPLE_TICKS = 32


def training_sample(frame, end_ns: int, n: int = SAMPLE_TICKS) -> list[tuple[str, int]]:
    """(instrument, timestamp_ns) of up to n ticks evenly spaced among those before end_ns."""
    import numpy as np

    rows = np.flatnonzero(frame.timestamp_ns < end_ns)
    picked = rows[np.unique(np.linspace(0, len(rows) - 1, min(n, len(rows))).astype(np.int64))] if len(rows) else rows
    return [(str(frame.instrument[i]), int(frame.timestamp_ns[i])) for i in picked]


@dataclass
class FoldReport:
    spans: FoldSpans
    train_rows: int
    valid_rows: int
    test: SpanScores
    valid: SpanScores  # the validation span, with the fold's fitted decision rule (not held out)
    action_weight: float
    temperature: float  # fitted on the validation span (applied only if the report's calibration says so)
    test_log_loss_uncalibrated: float
    test_log_loss_calibrated: float
    best_iteration: float = 0.0

    def to_dict(self) -> dict:
        return {
            "spans": self.spans.to_dict(),
            "train_rows": self.train_rows,
            "valid_rows": self.valid_rows,
            "test": self.test.to_dict(),
            "valid": self.valid.to_dict(),
            "action_weight": self.action_weight,
            "temperature": self.temperature,
            "test_log_loss_uncalibrated": self.test_log_loss_uncalibrated,
            "test_log_loss_calibrated": self.test_log_loss_calibrated,
            "best_iteration": self.best_iteration,
        }

    @staticmethod
    def from_dict(d: dict) -> FoldReport:
        return FoldReport(
            spans=FoldSpans(**d["spans"]),
            train_rows=int(d["train_rows"]),
            valid_rows=int(d["valid_rows"]),
            test=SpanScores.from_dict(d["test"]),
            valid=SpanScores.from_dict(d["valid"]),
            action_weight=float(d["action_weight"]),
            temperature=float(d["temperature"]),
            test_log_loss_uncalibrated=float(d["test_log_loss_uncalibrated"]),
            test_log_loss_calibrated=float(d["test_log_loss_calibrated"]),
            best_iteration=float(d.get("best_iteration", 0.0)),
        )


@dataclass
class TrainingReport:
    label: str  # the label config in words
    label_rule: str  # how the horizon (and threshold) were chosen
    horizon_shares: list[tuple[str, float]]  # candidate horizon -> share of BUY/SELL labels
    features: list[str]
    left_out: list[str]  # sentences: features left out of the defaults and why
    calibrated: bool
    calibration: str  # the calibration decision in words
    folds: list[FoldReport]
    instruments: list[str]
    notes: list[str] = field(default_factory=list)  # where the model lost, warnings, in words
    # (instrument, timestamp_ns) of up to SAMPLE_TICKS training ticks: recognises the training file later
    sample: list[tuple[str, int]] = field(default_factory=list)

    @property
    def final(self) -> FoldReport:
        return self.folds[-1]

    def spans(self) -> dict:
        s = self.final.spans
        return {
            "train_start_ns": s.train_start_ns,
            "valid_start_ns": s.valid_start_ns,
            "test_start_ns": s.test_start_ns,
            "test_end_ns": s.test_end_ns,
            "instruments": self.instruments,
            "sample": [list(x) for x in self.sample],
        }

    def sentences(self) -> list[str]:
        """Every choice and every loss, one sentence each (ModelInfo.training_notes)."""
        return [self.label_rule, *self.left_out, self.calibration, *self.notes]

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "label_rule": self.label_rule,
            "horizon_shares": [list(x) for x in self.horizon_shares],
            "features": self.features,
            "left_out": self.left_out,
            "calibrated": self.calibrated,
            "calibration": self.calibration,
            "folds": [f.to_dict() for f in self.folds],
            "instruments": self.instruments,
            "notes": self.notes,
            "spans": self.spans(),
        }

    @staticmethod
    def from_dict(d: dict) -> TrainingReport:
        return TrainingReport(
            label=str(d["label"]),
            label_rule=str(d["label_rule"]),
            horizon_shares=[(str(a), float(b)) for a, b in d.get("horizon_shares", [])],
            features=[str(x) for x in d["features"]],
            left_out=[str(x) for x in d.get("left_out", [])],
            calibrated=bool(d["calibrated"]),
            calibration=str(d["calibration"]),
            folds=[FoldReport.from_dict(f) for f in d["folds"]],
            instruments=[str(x) for x in d.get("instruments", [])],
            notes=[str(x) for x in d.get("notes", [])],
            sample=[(str(a), int(b)) for a, b in d.get("spans", {}).get("sample", [])],
        )

    def flat_metrics(self) -> dict[str, float]:
        """The manifest's flat metrics: test_* (the shipped model on the test span), wf{k}_* per fold
        and wf_mean_* over the folds (model and baselines)."""
        out: dict[str, float] = {"wf_folds": float(len(self.folds))}
        final = self.final
        out.update({"train_rows": float(final.train_rows), "action_weight": final.action_weight})
        for span, t in (("valid", final.valid), ("test", final.test)):
            out.update(
                {
                    f"{span}_accuracy": t.accuracy,
                    f"{span}_macro_f1": t.macro_f1,
                    f"{span}_log_loss": t.log_loss,
                    f"{span}_brier": t.brier,
                    f"{span}_ece": t.ece,
                    f"{span}_count": float(t.rows),
                    f"{span}_majority_baseline_accuracy": t.baselines["majority"]["accuracy"],
                }
            )
            for name, b in t.baselines.items():
                out[f"{span}_baseline_{name}_accuracy"] = b["accuracy"]
                out[f"{span}_baseline_{name}_macro_f1"] = b["macro_f1"]
        per_fold = []
        for k, fold in enumerate(self.folds, start=1):
            s = fold.test
            values = {
                "macro_f1": s.macro_f1,
                "accuracy": s.accuracy,
                "log_loss": s.log_loss,
                "margin": s.margin,
                "strong_trades": float(s.trading["strong"]["trades"]),
                "strong_pnl_ticks": s.trading["strong"]["total_pnl_ticks"],
                "strong_pnl_bps": s.trading["strong"]["total_pnl_bps"],
            }
            values.update({f"baseline_{b}_macro_f1": v["macro_f1"] for b, v in s.baselines.items()})
            per_fold.append(values)
            out.update({f"wf{k}_{name}": v for name, v in values.items()})
            out[f"wf{k}_test_rows"] = float(s.rows)
            out[f"wf{k}_test_start_ns"] = float(fold.spans.test_start_ns)
        for name in per_fold[0]:
            out[f"wf_mean_{name}"] = sum(f[name] for f in per_fold) / len(per_fold)
        return out
