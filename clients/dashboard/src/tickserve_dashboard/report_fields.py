"""EvaluationReport -> plain tables, read defensively.

The report grows (baselines, trading metrics such as hit rate and a cumulative P&L series,
reliability bins). Nothing here names a field that may not exist without checking the message
descriptor first, so the dashboard works against servers and stubs from before and after such
additions: known fields get their own views, and any other field that is set is found by walking
the descriptor and sorted by its name into trading / baselines / calibration / other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

# Fields of the report this module shows in their own views.
CORE_FIELDS = {
    "model",
    "model_version",
    "ticks",
    "labeled",
    "accuracy",
    "macro_f1",
    "log_loss",
    "majority_baseline_accuracy",
    "majority_class",
    "classes",
    "per_class",
    "confusion_matrix",
    "action_counts",
    "strength_counts",
    "risk_counts",
    "feature_importance",
    "brier_score",
    "brier_score_uncalibrated",
    "expected_calibration_error",
    "expected_calibration_error_uncalibrated",
    "calibration_temperature",
}

TRADING_WORDS = (
    "pnl",
    "p_and_l",
    "hit_rate",
    "hit",
    "trade",
    "trades",
    "sharpe",
    "drawdown",
    "turnover",
    "profit",
    "trading",
    "win_rate",
    "exposure",
    "position",
    "positions",
    "equity",
)
BASELINE_WORDS = ("baseline", "baselines")
CALIBRATION_WORDS = ("calibration", "reliability", "brier", "ece", "bin", "bins")
X_WORDS = ("tick", "index", "step", "time", "timestamp", "t", "n", "x")
CONFIDENCE_WORDS = (
    "mean_confidence",
    "confidence",
    "mean_predicted",
    "predicted",
    "mean_probability",
    "probability",
    "bin_center",
    "center",
    "lower",
    "x",
)
ACCURACY_WORDS = ("accuracy", "observed", "frequency", "fraction", "empirical", "actual", "hit_rate", "y")
_NUMERIC = {
    FieldDescriptor.TYPE_DOUBLE,
    FieldDescriptor.TYPE_FLOAT,
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
}


def has(msg: Message, name: str) -> bool:
    """True when the message type has a field of this name (whatever the stubs' age)."""
    return name in msg.DESCRIPTOR.fields_by_name


def get(msg: Message, name: str, default=None):
    """The field's value if the type has it (and, for fields with presence, it is set)."""
    fd = msg.DESCRIPTOR.fields_by_name.get(name)
    if fd is None:
        return default
    if _is_repeated(fd):
        return getattr(msg, name)
    if fd.has_presence and not msg.HasField(name):
        return default
    return getattr(msg, name)


def _is_repeated(fd: FieldDescriptor) -> bool:
    is_repeated = getattr(fd, "is_repeated", None)
    if is_repeated is not None:
        return bool(is_repeated)
    return fd.label == FieldDescriptor.LABEL_REPEATED


def _is_map(fd: FieldDescriptor) -> bool:
    return fd.type == FieldDescriptor.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry


def _words(path: str, words: tuple[str, ...]) -> bool:
    parts = path.lower().replace(".", "_").split("_")
    joined = path.lower()
    return any(w in parts or ("_" in w and w in joined) for w in words)


# --- the fields every report has ------------------------------------------------------------


def summary(report: Message) -> dict:
    out = {}
    for name in (
        "model",
        "model_version",
        "ticks",
        "labeled",
        "accuracy",
        "macro_f1",
        "log_loss",
        "majority_baseline_accuracy",
        "majority_class",
        "calibration_temperature",
    ):
        value = get(report, name)
        if value is not None:
            out[name] = value
    return out


def classes(report: Message) -> list[str]:
    names = list(get(report, "classes", []) or [])
    if not names:
        names = [c.label for c in get(report, "per_class", [])]
    return names


def confusion(report: Message, normalize: bool = False) -> pd.DataFrame | None:
    """Rows = true class, columns = predicted class; None when the report has no matrix."""
    values = list(get(report, "confusion_matrix", []) or [])
    names = classes(report)
    n = len(names)
    if not values or n == 0 or len(values) != n * n:
        return None
    df = pd.DataFrame([values[r * n : (r + 1) * n] for r in range(n)], index=names, columns=names, dtype="float64")
    df.index.name, df.columns.name = "true", "predicted"
    if normalize:
        sums = df.sum(axis=1).replace(0, float("nan"))
        df = df.div(sums, axis=0).fillna(0.0)
    else:
        df = df.astype("int64")
    return df


def per_class(report: Message) -> pd.DataFrame:
    rows = [
        MessageToDict(c, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        for c in get(report, "per_class", [])
    ]
    df = pd.DataFrame(rows)
    if len(df) and "support" in df:
        df["support"] = pd.to_numeric(df["support"])
    return df


def importance(report: Message) -> pd.DataFrame:
    rows = [{"feature": f.feature, "importance": f.importance} for f in get(report, "feature_importance", [])]
    df = pd.DataFrame(rows, columns=["feature", "importance"])
    return df.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)


COUNT_ORDER = {
    "action_counts": ("BUY", "HOLD", "SELL"),
    "strength_counts": ("WEAK", "MEDIUM", "STRONG"),
    "risk_counts": ("LOW", "MEDIUM", "HIGH"),
}


def counts(report: Message) -> dict[str, pd.Series]:
    """Signals by action, strength and risk, in their natural order (unknown names last)."""
    out = {}
    for name, order in COUNT_ORDER.items():
        mapping = get(report, name)
        if mapping:
            keys = [k for k in order if k in mapping] + sorted(k for k in mapping if k not in order)
            out[name.removesuffix("_counts")] = pd.Series(
                [mapping[k] for k in keys], index=keys, name="count", dtype="int64"
            )
    return out


# --- anything else: walk the descriptor -----------------------------------------------------


@dataclass
class Extra:
    path: str  # dotted, e.g. "trading.hit_rate"
    kind: str  # scalar | series | table | map | text
    value: object  # float/int/str | pd.Series | pd.DataFrame | dict


def extras(report: Message, skip: set[str] = CORE_FIELDS) -> list[Extra]:
    """Every set field not in `skip`, flattened: scalars, numeric series, tables of messages, maps."""
    out: list[Extra] = []
    _walk(report, "", skip, out)
    return out


def _walk(msg: Message, prefix: str, skip: set[str], out: list[Extra]) -> None:
    for fd, value in msg.ListFields():
        if not prefix and fd.name in skip:
            continue
        path = f"{prefix}{fd.name}"
        if _is_map(fd):
            entries = {
                str(k): MessageToDict(v, preserving_proto_field_name=True) if isinstance(v, Message) else v
                for k, v in value.items()
            }
            out.append(Extra(path, "map", entries))
        elif _is_repeated(fd):
            if fd.type == FieldDescriptor.TYPE_MESSAGE:
                rows = [
                    MessageToDict(v, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
                    for v in value
                ]
                df = pd.json_normalize(rows) if rows else pd.DataFrame()
                for column in df.columns:  # 64-bit integers arrive as JSON strings
                    converted = pd.to_numeric(df[column], errors="coerce")
                    if converted.notna().sum() == df[column].notna().sum():
                        df[column] = converted
                out.append(Extra(path, "table", df))
            elif fd.type in _NUMERIC:
                out.append(Extra(path, "series", pd.Series(list(value), name=fd.name, dtype="float64")))
            else:
                out.append(Extra(path, "text", ", ".join(map(str, value))))
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            _walk(value, path + ".", skip, out)
        elif fd.type == FieldDescriptor.TYPE_ENUM:
            known = fd.enum_type.values_by_number.get(value)
            out.append(Extra(path, "text", known.name if known is not None else str(value)))
        elif fd.type in _NUMERIC:
            out.append(Extra(path, "scalar", value))
        elif fd.type == FieldDescriptor.TYPE_BOOL:
            out.append(Extra(path, "scalar", bool(value)))
        else:
            out.append(Extra(path, "text", str(value)))


# --- calibration ----------------------------------------------------------------------------


@dataclass
class Calibration:
    scores: pd.DataFrame  # metric, before (raw adapter), after (served)
    temperature: float | None
    reliability: pd.DataFrame | None  # confidence, accuracy[, count]: one row per bin
    other: list[Extra] = field(default_factory=list)


def _pick(columns, words) -> str | None:
    lowered = {c.lower(): c for c in columns}
    for w in words:
        if w in lowered:
            return lowered[w]
    for w in words:
        for low, c in lowered.items():
            if len(w) > 2 and w in low:
                return c
    return None


def _reliability_from(extra: Extra) -> pd.DataFrame | None:
    if extra.kind != "table" or not len(extra.value):
        return None
    df: pd.DataFrame = extra.value
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
    conf = _pick(numeric, CONFIDENCE_WORDS)
    acc = _pick([c for c in numeric if c != conf], ACCURACY_WORDS)
    if conf is None or acc is None:
        return None
    out = pd.DataFrame({"confidence": df[conf].astype(float), "accuracy": df[acc].astype(float)})
    count = _pick([c for c in numeric if c not in (conf, acc)], ("count", "n", "support", "samples", "ticks"))
    if count is not None:
        out["count"] = df[count].astype(float)
    return out


def _reliability_from_series(series: list[Extra]) -> pd.DataFrame | None:
    """Parallel repeated numbers, e.g. calibration.bin_confidence + calibration.bin_accuracy."""
    by_name = {e.path.rsplit(".", 1)[-1]: e.value for e in series}
    conf = _pick(list(by_name), CONFIDENCE_WORDS)
    acc = _pick([n for n in by_name if n != conf], ACCURACY_WORDS)
    if conf is None or acc is None or len(by_name[conf]) != len(by_name[acc]) or not len(by_name[conf]):
        return None
    out = pd.DataFrame({"confidence": by_name[conf].to_numpy(), "accuracy": by_name[acc].to_numpy()})
    count = _pick([n for n in by_name if n not in (conf, acc)], ("count", "counts", "support", "n"))
    if count is not None and len(by_name[count]) == len(out):
        out["count"] = by_name[count].to_numpy()
    return out


def calibration(report: Message, all_extras: list[Extra] | None = None) -> Calibration:
    rows = []
    for metric, before, after in (
        ("Brier score", "brier_score_uncalibrated", "brier_score"),
        ("Expected calibration error", "expected_calibration_error_uncalibrated", "expected_calibration_error"),
    ):
        b, a = get(report, before), get(report, after)
        if b is not None or a is not None:
            rows.append({"metric": metric, "before (raw)": b, "after (calibrated)": a})
    scores = pd.DataFrame(rows, columns=["metric", "before (raw)", "after (calibrated)"])
    temperature = get(report, "calibration_temperature")
    found = [e for e in (all_extras if all_extras is not None else extras(report)) if _words(e.path, CALIBRATION_WORDS)]
    reliability = None
    for e in found:
        reliability = _reliability_from(e)
        if reliability is not None:
            break
    if reliability is None:
        reliability = _reliability_from_series([e for e in found if e.kind == "series"])
    return Calibration(scores, temperature, reliability, found)


# --- trading metrics and baselines -----------------------------------------------------------


@dataclass
class Trading:
    metrics: pd.DataFrame  # metric, value (scalars; "trading." and "all." dropped from the names)
    pnl: pd.DataFrame | None  # x (tick index or time) and one or more cumulative P&L columns
    pnl_columns: list[str] = field(default_factory=list)
    buckets: pd.DataFrame | None = None  # group (strength/risk/action), name, then the bucket's fields
    other: list[Extra] = field(default_factory=list)

    @property
    def present(self) -> bool:
        return bool(len(self.metrics)) or self.pnl is not None or self.buckets is not None or bool(self.other)

    def value(self, *names: str):
        """The first of these metrics present (e.g. "hit_rate"), else None."""
        lookup = dict(zip(self.metrics["metric"], self.metrics["value"]))
        for name in names:
            if name in lookup:
                return lookup[name]
        return None


_BUCKET_ORDER = {name: i for i, name in enumerate(("BUY", "SELL", "WEAK", "MEDIUM", "STRONG", "LOW", "HIGH"))}


def _pnl_frame(extra: Extra) -> tuple[pd.DataFrame, list[str]] | None:
    cumulative = "cum" in extra.path.lower()
    if extra.kind == "series" and len(extra.value):
        y = extra.value.to_numpy(dtype=float)
        return pd.DataFrame({"x": range(len(y)), "cumulative_pnl": y if cumulative else y.cumsum()}), ["cumulative_pnl"]
    if extra.kind == "table" and len(extra.value):
        df: pd.DataFrame = extra.value
        numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
        ys = [c for c in numeric if _words(c, ("pnl", "p_and_l", "equity", "profit", "value"))]
        if not ys:
            return None
        out = pd.DataFrame(index=df.index)
        xcol = _pick([c for c in df.columns if c not in ys], ("tick_index", *X_WORDS))
        out["x"] = df[xcol] if xcol is not None else range(len(df))
        tcol = _pick([c for c in df.columns if c not in ys and c != xcol], ("timestamp_ns", "timestamp", "time"))
        if tcol is not None and pd.api.types.is_numeric_dtype(df[tcol]) and df[tcol].max() > 1e15:
            out["time"] = pd.to_datetime(df[tcol], unit="ns", utc=True)
        for c in ys:
            y = df[c].astype(float)
            out[c] = y if (cumulative or "cum" in c.lower() or "equity" in c.lower()) else y.cumsum()
        return out.reset_index(drop=True), ys
    return None


def _bucket_table(maps: list[Extra]) -> pd.DataFrame | None:
    rows = []
    for e in maps:
        group = e.path.rsplit(".", 1)[-1].removeprefix("by_")
        for name, values in e.value.items():
            row = {"group": group, "name": name}
            row.update(values if isinstance(values, dict) else {"value": values})
            rows.append(row)
    if not rows:
        return None
    df = pd.DataFrame(rows)
    for column in df.columns[2:]:
        converted = pd.to_numeric(df[column], errors="coerce")
        if converted.notna().sum() == df[column].notna().sum():
            df[column] = converted
    df["_order"] = df["name"].map(_BUCKET_ORDER).fillna(99)
    return df.sort_values(["group", "_order", "name"], kind="stable").drop(columns="_order").reset_index(drop=True)


def _metric_name(path: str) -> str:
    name = path.removeprefix("trading.")
    return name.removeprefix("all.")


def trading(report: Message, all_extras: list[Extra] | None = None) -> Trading:
    found = [
        e
        for e in (all_extras if all_extras is not None else extras(report))
        if _words(e.path, TRADING_WORDS) and not _words(e.path, BASELINE_WORDS)
    ]
    metrics = pd.DataFrame(
        [{"metric": _metric_name(e.path), "value": e.value} for e in found if e.kind == "scalar"],
        columns=["metric", "value"],
    )
    pnl, pnl_columns, used = None, [], None
    candidates = sorted(
        (e for e in found if e.kind in ("series", "table") and _words(e.path, ("pnl", "p_and_l", "equity", "profit"))),
        key=lambda e: (0 if "cum" in e.path.lower() else 1, e.path),
    )
    for e in candidates:
        got = _pnl_frame(e)
        if got is not None:
            (pnl, pnl_columns), used = got, e
            break
    maps = [e for e in found if e.kind == "map" and all(isinstance(v, dict) for v in e.value.values())]
    buckets = _bucket_table(maps)
    other = [e for e in found if e.kind != "scalar" and e is not used and e not in maps]
    return Trading(metrics, pnl, pnl_columns, buckets, other)


def baselines(report: Message, all_extras: list[Extra] | None = None) -> pd.DataFrame:
    """The model beside every baseline the report carries (the majority class always)."""
    rows = [
        {
            "name": "model",
            "accuracy": get(report, "accuracy"),
            "macro_f1": get(report, "macro_f1"),
            "description": f"the evaluated model ({get(report, 'model', '')} v{get(report, 'model_version', '')})",
        }
    ]
    found = [e for e in (all_extras if all_extras is not None else extras(report)) if _words(e.path, BASELINE_WORDS)]
    listed = {str(n).lower() for e in found if e.kind == "table" and "name" in e.value for n in e.value["name"]}
    majority = get(report, "majority_baseline_accuracy")
    if majority is not None and "majority" not in listed:
        rows.append({"name": f"majority class ({get(report, 'majority_class', '') or '?'})", "accuracy": majority})
    by_parent: dict[str, dict] = {}
    for e in found:
        if e.kind == "table" and len(e.value):
            for _, r in e.value.iterrows():
                row = {k: v for k, v in r.items()}
                name = row.pop("name", None) or row.pop("baseline", None) or row.pop("kind", None) or e.path
                rows.append({"name": str(name), **row})
        elif e.kind == "scalar":
            parent, _, leaf = e.path.rpartition(".")
            if parent:  # a message per baseline: its fields are the columns
                by_parent.setdefault(parent, {})[leaf] = e.value
            else:  # e.g. random_baseline_accuracy -> name "random", column "accuracy"
                name = leaf.replace("baseline", "").strip("_") or leaf
                metric = "accuracy"
                for m in ("accuracy", "macro_f1", "log_loss", "hit_rate", "pnl", "brier"):
                    if m in name:
                        metric, name = m, name.replace(m, "").strip("_") or leaf
                rows.append({"name": name.replace("_", " "), metric: e.value})
    for parent, values in by_parent.items():
        rows.append({"name": parent.rsplit(".", 1)[-1].replace("_baseline", "").replace("_", " "), **values})
    df = pd.DataFrame(rows)
    return df.dropna(axis=1, how="all")


def other_fields(report: Message, all_extras: list[Extra] | None = None) -> list[Extra]:
    """Set fields that neither the core views nor calibration/trading/baselines show."""
    found = all_extras if all_extras is not None else extras(report)
    return [
        e
        for e in found
        if not (_words(e.path, TRADING_WORDS) or _words(e.path, BASELINE_WORDS) or _words(e.path, CALIBRATION_WORDS))
    ]


def fmt(value: object, digits: int = 4) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:.{digits}f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
