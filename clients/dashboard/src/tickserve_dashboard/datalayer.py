"""The data layer: talks to the server through `TickserveClient`, returns plain Python and pandas.

Nothing here imports Streamlit, so every function is testable on its own. Tick sources are the
simulator (`tickserve.simulate`) or a tick file (Parquet via `tickserve.core.ticks.read_parquet`, or the
wide CSV layout named in `tickserve.core.tick_csv`); nothing else of the core is imported: no adapters, no models.
"""

from __future__ import annotations

import inspect
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tickserve.core.tick_csv import level_column
from tickserve.core.ticks import MAX_LEVELS, TickFrame, read_parquet
from tickserve.simulate import simulate
from tickserve_client import TickserveClient, tick_message
from tickserve_proto.v1 import tickserve_pb2 as pb

from .server_config import ServerSettings

SIGNAL_SERVICE = pb.DESCRIPTOR.services_by_name["SignalService"].full_name
REPOSITORY_SERVICE = pb.DESCRIPTOR.services_by_name["ModelRepositoryService"].full_name
ACTIONS = ("BUY", "HOLD", "SELL")
STRENGTHS = ("WEAK", "MEDIUM", "STRONG")
RISKS = ("LOW", "MEDIUM", "HIGH")
SIGNAL_COLUMNS = [
    "tick",
    "instrument",
    "time",
    "action",
    "strength",
    "urgency",
    "risk",
    "p_buy",
    "p_hold",
    "p_sell",
    "confidence",
    "edge",
    "warmed_up",
    "mid",
    "microprice",
    "model",
    "version",
]


def make_client(settings: ServerSettings) -> TickserveClient:
    return TickserveClient(settings.server, **settings.client_kwargs())


def rpc_error_text(error: BaseException) -> str:
    """`CODE: details` for a gRPC error, the message for anything else."""
    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        code = error.code()
        return f"{code.name if code else 'UNKNOWN'}: {error.details() if hasattr(error, 'details') else error}"
    return f"{type(error).__name__}: {error}"


def _enum_name(enum_type, value: int) -> str:
    """ACTION_BUY -> BUY; an unknown number (a newer server) stays readable."""
    try:
        name = enum_type.Name(value)
    except ValueError:
        return str(value)
    zero = enum_type.Name(0) if 0 in enum_type.values() else ""  # e.g. MODEL_STATE_UNSPECIFIED
    prefix = zero[: -len("UNSPECIFIED")] if zero.endswith("_UNSPECIFIED") else ""
    return name[len(prefix) :] if prefix and name.startswith(prefix) else name


# --- tick sources ------------------------------------------------------------------------


@dataclass(frozen=True)
class TickSource:
    """`simulator`: `n` ticks from the seeded simulator; `file`: a Parquet or CSV tick file."""

    kind: str = "simulator"
    n: int = 2_000
    seed: int = 2
    path: str = ""
    limit: int = 0  # file: read at most this many ticks (0 = all)

    def describe(self) -> str:
        if self.kind == "simulator":
            return f"simulator: {self.n:,} ticks, seed {self.seed}"
        return f"file {self.path}" + (f" (first {self.limit:,} ticks)" if self.limit else "")


def load_frame(source: TickSource) -> TickFrame:
    if source.kind == "simulator":
        return simulate(int(source.n), seed=int(source.seed))
    if source.kind != "file":
        raise ValueError(f"unknown tick source {source.kind!r}")
    path = Path(source.path.strip()).expanduser()
    if not source.path.strip():
        raise ValueError("no tick file given")
    if not path.is_file():
        raise FileNotFoundError(f"no such tick file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        frame = read_parquet(path)
    elif suffix in (".csv", ".gz") or path.name.lower().endswith(".csv.gz"):
        frame = read_csv(path)
    else:
        raise ValueError(f"{path.name}: expected a .parquet or .csv tick file")
    if source.limit and source.limit < len(frame):
        frame = frame.take(slice(0, int(source.limit)))
    return frame


# the optional aggressor column of a CSV tick file: the side that took the tick's trade
AGGRESSOR_CELLS = {"buy": 1, "b": 1, "1": 1, "+1": 1, "sell": -1, "s": -1, "-1": -1, "": 0, "0": 0, "nan": 0}


BOOK_FIELDS = ("bid_price", "bid_size", "ask_price", "ask_size")


def _canonical_book_columns(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """The book columns under their wide-CSV names (`bid_px_1`, ...; `tickserve.core.tick_csv`).

    Older dashboard files spelled them as the Parquet columns (`bid_price_1`, `bid_size_1`, ...):
    still read, renamed here; a level without a number is level 1. A file giving one column in
    both spellings is refused rather than one of them silently winning."""
    renames = {}
    for book_field in BOOK_FIELDS:
        csv_prefix = level_column(book_field, 1)[: -len("_1")]  # bid_px
        for level in range(1, MAX_LEVELS + 1):
            target = level_column(book_field, level)
            spellings = [f"{book_field}_{level}"] + ([book_field, csv_prefix] if level == 1 else [])
            for other in (c for c in spellings if c in df.columns):
                if target in df.columns or target in renames.values():
                    raise ValueError(f"{name}: columns {other} and {target} are the same book column")
                renames[other] = target
    return df.rename(columns=renames)


def read_csv(path: str | Path) -> TickFrame:
    """A tick file in the wide CSV layout that `tickserve simulate --out x.csv`, `tickserve import`
    and the Node client share (`tickserve.core.tick_csv`): instrument, timestamp_ns, [sequence],
    last_price, last_size, [aggressor], bid_px_1..10, bid_qty_1..10, ask_px_1..10, ask_qty_1..10
    (empty = no level). The Parquet spelling `bid_price_N`/`bid_size_N`/`ask_price_N`/`ask_size_N`
    is read too. `aggressor`: buy/sell (or b/s, 1/-1, any case), empty or 0 = unknown or no trade."""
    name = Path(path).name
    # sequence read as text: with an empty cell (no sequence) pandas would make the column float and
    # round every sequence above 2^53
    df = _canonical_book_columns(pd.read_csv(path, dtype={"sequence": str}), name)
    missing = [
        c for c in ("instrument", "timestamp_ns", *(level_column(f, 1) for f in BOOK_FIELDS)) if c not in df.columns
    ]
    if missing:
        raise ValueError(f"{name}: missing columns {', '.join(missing)}")
    n = len(df)
    frame = TickFrame.empty(n)
    frame.instrument = df["instrument"].astype(str).to_numpy(dtype=object)
    frame.timestamp_ns = df["timestamp_ns"].to_numpy().astype(np.int64)
    if "sequence" in df.columns:
        cells = df["sequence"].fillna("").str.strip().str.removesuffix(".0")  # 3.0: a float column written out
        frame.sequence = np.array([int(c) if c else -1 for c in cells], dtype=np.int64)
    frame.last_price = df["last_price"].fillna(0).to_numpy(dtype=np.float64) if "last_price" in df else np.zeros(n)
    frame.last_size = df["last_size"].fillna(0).to_numpy(dtype=np.float64) if "last_size" in df else np.zeros(n)
    if "aggressor" in df.columns:
        cells = df["aggressor"].fillna("").astype(str).str.strip().str.lower().str.removesuffix(".0")
        sides = cells.map(AGGRESSOR_CELLS)
        if sides.isna().any():
            i = int(np.flatnonzero(sides.isna().to_numpy())[0])
            raise ValueError(
                f"{name}: aggressor must be buy, sell or empty, got {df['aggressor'].iloc[i]!r} (data row {i + 1})"
            )
        frame.aggressor = sides.to_numpy(dtype=np.int8)
    for book_field in BOOK_FIELDS:
        values = getattr(frame, book_field)
        for level in range(MAX_LEVELS):
            column = level_column(book_field, level + 1)
            if column in df.columns:
                values[:, level] = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64)
    return frame


def frame_to_ticks(frame: TickFrame) -> list[pb.Tick]:
    """TickFrame -> Tick messages (levels up to the first absent one, as `TickFrame.tick`)."""
    return [tick_message(t) for t in frame.ticks()]


def book_top(frame: TickFrame) -> pd.DataFrame:
    """Per tick: instrument, time, mid and microprice from the best level of the book."""
    b1, a1 = frame.bid_price[:, 0], frame.ask_price[:, 0]
    bs1, as1 = frame.bid_size[:, 0], frame.ask_size[:, 0]
    mid = (a1 + b1) / 2.0
    depth = bs1 + as1
    with np.errstate(invalid="ignore", divide="ignore"):
        micro = np.where(depth > 0, (b1 * as1 + a1 * bs1) / np.where(depth > 0, depth, 1.0), mid)
    return pd.DataFrame(
        {
            "instrument": frame.instrument.astype(str),
            "time": pd.to_datetime(frame.timestamp_ns, unit="ns", utc=True),
            "mid": mid,
            "microprice": micro,
        }
    )


# --- models ----------------------------------------------------------------------------


def state_name(value: int) -> str:
    return _enum_name(pb.ModelState, value)


def _models_frame(models, default_model: str = "") -> pd.DataFrame:
    rows = [
        {
            "model": m.name,
            "version": m.version,
            "adapter": m.adapter,
            "state": state_name(m.state),
            "reason": m.state_reason,
            "features": len(m.feature_names),
            "default": bool(default_model) and m.name == default_model,
        }
        for m in models
    ]
    df = pd.DataFrame(rows, columns=["model", "version", "adapter", "state", "reason", "features", "default"])
    if len(df):
        df["_v"] = pd.to_numeric(df["version"], errors="coerce")
        df = df.sort_values(["model", "_v", "version"]).drop(columns="_v").reset_index(drop=True)
    return df


@dataclass
class ModelCatalog:
    models: pd.DataFrame  # one row per model version: model, version, adapter, state, reason, features, default
    default_model: str
    infos: dict[tuple[str, str], pb.ModelInfo] = field(default_factory=dict)

    def ready(self) -> pd.DataFrame:
        return self.models[self.models["state"] == "READY"]

    def names(self, ready_only: bool = True) -> list[str]:
        df = self.ready() if ready_only else self.models
        return sorted(set(df["model"]))

    def versions(self, model: str, ready_only: bool = True) -> list[str]:
        df = self.ready() if ready_only else self.models
        return df[df["model"] == model]["version"].tolist()


def list_models(client: TickserveClient) -> ModelCatalog:
    response = client.list_models()
    return ModelCatalog(
        _models_frame(response.models, response.default_model),
        response.default_model,
        {(m.name, m.version): m for m in response.models},
    )


def repository_index(client: TickserveClient, default_model: str = "") -> ModelCatalog:
    models = client.repository_index()
    return ModelCatalog(_models_frame(models, default_model), default_model, {(m.name, m.version): m for m in models})


SIGNAL_RULE_HELP = {
    "strong_edge": "|edge| at or above this: STRONG",
    "medium_edge": "|edge| at or above this: MEDIUM (else WEAK)",
    "aggressive_max_spread_ticks": "STRONG and spread at most this many ticks: AGGRESSIVE (else PASSIVE)",
    "low_risk_confidence": "LOW risk needs confidence at or above this …",
    "low_risk_edge": "… and |edge| at or above this",
    "medium_risk_confidence": "MEDIUM risk needs confidence at or above this …",
    "medium_risk_edge": "… and |edge| at or above this (else HIGH)",
}


def model_details(info: pb.ModelInfo) -> dict:
    """ModelInfo as plain data: signal rules, label config, metrics, parameters, features."""
    order = {name: i for i, name in enumerate(SIGNAL_RULE_HELP)}
    rules = pd.DataFrame(
        [
            {"rule": k, "threshold": v, "meaning": SIGNAL_RULE_HELP.get(k, "")}
            for k, v in sorted(info.signal_rules.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
        ],
        columns=["rule", "threshold", "meaning"],
    )
    metrics = pd.DataFrame(sorted(info.metrics.items()), columns=["metric", "value"])
    params = pd.DataFrame(sorted(info.parameters.items()), columns=["parameter", "value (JSON)"])
    label = info.label_config
    return {
        "name": info.name,
        "version": info.version,
        "adapter": info.adapter,
        "state": state_name(info.state),
        "state_reason": info.state_reason,
        "classes": list(info.classes),
        "feature_names": list(info.feature_names),
        "label": {
            "horizon_ticks": label.horizon_ticks,
            "horizon_ns": label.horizon_ns,
            # a time horizon (horizon_ns) leaves horizon_ticks at 0: say what the model was trained on
            "horizon": f"{label.horizon_ns / 1e9:g} s" if label.horizon_ns else f"{label.horizon_ticks} ticks",
            "mode": label.mode or "mid",
            "threshold_ticks": label.threshold_ticks,
            "cost_ticks": label.cost_ticks,
        },
        "feature_stage_version": info.feature_stage_version,
        "data_fingerprint": info.data_fingerprint,
        "signal_rules": rules,
        "metrics": metrics,
        "parameters": params,
    }


def get_model(client: TickserveClient, model: str = "", version: str = "") -> pb.ModelInfo:
    return client.get_model(model, version)


def repository_action(client: TickserveClient, action: str, model: str, version: str = "") -> pd.DataFrame:
    """load | reload | unload; the affected versions with their new states."""
    call = {"load": client.load_model, "reload": client.reload_model, "unload": client.unload_model}[action]
    return _models_frame(call(model, version))


# --- live signals -------------------------------------------------------------------------


@dataclass
class LiveResult:
    signals: pd.DataFrame  # SIGNAL_COLUMNS, one row per tick that got a signal
    features: pd.DataFrame | None  # one row per signal (same index), model input features
    errors: pd.DataFrame  # tick, instrument, code, field, message
    feature_names: list[str]
    model: str
    version: str
    ticks_sent: int
    seconds: float
    source: str

    @property
    def rate(self) -> float:
        return self.ticks_sent / self.seconds if self.seconds > 0 else 0.0


def iter_results(
    client: TickserveClient,
    ticks: list[pb.Tick],
    *,
    model: str = "",
    version: str = "",
    return_features: bool = False,
    batch_size: int = 1,
    pace: float = 0.0,
) -> Iterator[tuple[int, pb.TickResult]]:
    """(tick index, TickResult) in order. `pace` > 0 sends at most that many ticks a second."""

    def paced():
        start = time.perf_counter()
        for i, tick in enumerate(ticks):
            if pace > 0:
                delay = start + i / pace - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            yield tick

    results = client.stream_signals(
        paced(), model=model, version=version, return_features=return_features, batch_size=max(1, batch_size)
    )
    yield from enumerate(results)


def signal_row(i: int, s: pb.Signal, top: pd.DataFrame, microprice_index: int | None) -> dict:
    """One signal as a table row; mid from the tick, microprice from the features if the model has it."""
    in_range = i < len(top)
    if microprice_index is not None and len(s.features) > microprice_index:
        micro = float(s.features[microprice_index])
    else:
        micro = float(top["microprice"].iat[i]) if in_range else float("nan")
    return {
        "tick": i,
        "instrument": s.instrument,
        "time": pd.Timestamp(s.timestamp_ns, unit="ns", tz="UTC"),
        "action": _enum_name(pb.Action, s.action),
        "strength": _enum_name(pb.Strength, s.strength),
        "urgency": _enum_name(pb.Urgency, s.urgency),
        "risk": _enum_name(pb.Risk, s.risk),
        "p_buy": s.p_buy,
        "p_hold": s.p_hold,
        "p_sell": s.p_sell,
        "confidence": s.confidence,
        "edge": s.edge_score,
        "warmed_up": s.warmed_up,
        "mid": float(top["mid"].iat[i]) if in_range else float("nan"),
        "microprice": micro,
        "model": s.model,
        "version": s.model_version,
    }


def error_row(i: int, e: pb.TickError) -> dict:
    return {"tick": i, "instrument": e.instrument, "code": e.code, "field": e.field, "message": e.message}


class LiveCollector:
    """Accumulates a stream's results; `snapshot()` gives the DataFrames at any point."""

    def __init__(self, frame: TickFrame, feature_names: list[str], source: str = "") -> None:
        self.top = book_top(frame)
        self.feature_names = list(feature_names)
        self.microprice_index = self.feature_names.index("microprice") if "microprice" in self.feature_names else None
        self.rows: list[dict] = []
        self.feature_rows: list[list[float]] = []
        self.errors: list[dict] = []
        self.model = ""
        self.version = ""
        self.source = source
        self.started = time.perf_counter()
        self.seconds = 0.0

    def add(self, i: int, result: pb.TickResult) -> None:
        if result.HasField("signal"):
            s = result.signal
            self.rows.append(signal_row(i, s, self.top, self.microprice_index))
            if s.features:
                self.feature_rows.append(list(s.features))
            self.model, self.version = s.model, s.model_version
        else:
            self.errors.append(error_row(i, result.error))
        self.seconds = time.perf_counter() - self.started

    @property
    def count(self) -> int:
        return len(self.rows) + len(self.errors)

    def signals(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=SIGNAL_COLUMNS)

    def snapshot(self) -> LiveResult:
        signals = self.signals()
        features = None
        names = self.feature_names
        if self.feature_rows and len(self.feature_rows) == len(self.rows):
            width = len(self.feature_rows[0])
            if len(names) != width:  # a server newer than the names we were given: keep the values
                names = [f"f{k}" for k in range(width)]
            features = pd.DataFrame(self.feature_rows, columns=names, index=signals.index)
        return LiveResult(
            signals=signals,
            features=features,
            errors=pd.DataFrame(self.errors, columns=["tick", "instrument", "code", "field", "message"]),
            feature_names=names,
            model=self.model,
            version=self.version,
            ticks_sent=self.count,
            seconds=self.seconds,
            source=self.source,
        )


def resolve_feature_names(client: TickserveClient, model: str, version: str) -> list[str]:
    """The input features of the model a stream will use (its newest READY version if none given)."""
    try:
        return list(client.get_model(model, version).feature_names)
    except grpc.RpcError:
        return []


def run_stream(
    client: TickserveClient,
    frame: TickFrame,
    *,
    model: str = "",
    version: str = "",
    return_features: bool = True,
    batch_size: int = 1,
    pace: float = 0.0,
    source: str = "",
    on_update: Callable[[LiveCollector], None] | None = None,
    update_every: int = 0,
) -> LiveResult:
    """Stream every tick of `frame` through StreamSignals; `on_update` every `update_every` results."""
    names = resolve_feature_names(client, model, version) if return_features else []
    collector = LiveCollector(frame, names, source)
    results = iter_results(
        client,
        frame_to_ticks(frame),
        model=model,
        version=version,
        return_features=return_features,
        batch_size=batch_size,
        pace=pace,
    )
    try:
        for i, result in results:
            collector.add(i, result)
            if on_update is not None and update_every > 0 and collector.count % update_every == 0:
                on_update(collector)  # may raise (Streamlit stops a run the user interrupts) ...
    finally:
        results.close()  # ... and then the call is cancelled rather than left streaming
    if collector.feature_rows and collector.model:
        # the names of exactly the version that answered (the server picks default model / newest version)
        collector.feature_names = resolve_feature_names(client, collector.model, collector.version) or names
    return collector.snapshot()


def signal_counts(signals: pd.DataFrame) -> dict[str, pd.Series]:
    """Counts by action, strength and risk, every category present (0 when absent)."""
    out = {}
    for column, order in (("action", ACTIONS), ("strength", STRENGTHS), ("risk", RISKS)):
        counts = Counter(signals[column]) if len(signals) else Counter()
        keys = list(order) + sorted(k for k in counts if k not in order)
        out[column] = pd.Series([counts.get(k, 0) for k in keys], index=keys, name="count", dtype="int64")
    return out


# --- evaluation ---------------------------------------------------------------------------


@dataclass
class EvaluationRun:
    report: pb.EvaluationReport | None
    progress: pd.DataFrame  # ticks, labeled, accuracy, fraction
    ticks_sent: int
    seconds: float
    source: str
    model: str = ""
    version: str = ""


def supports_cost_ticks(client: TickserveClient) -> bool:
    """Whether both the contract (EvaluateConfig.cost_ticks) and this client's `evaluate` carry a trading cost."""
    return "cost_ticks" in pb.EvaluateConfig.DESCRIPTOR.fields_by_name and (
        "cost_ticks" in inspect.signature(client.evaluate).parameters
    )


def run_evaluate(
    client: TickserveClient,
    frame: TickFrame,
    *,
    model: str = "",
    version: str = "",
    progress_every: int = 0,
    batch_size: int = 1000,
    cost_ticks: float = 0.0,
    source: str = "",
    on_progress: Callable[[dict], None] | None = None,
) -> EvaluationRun:
    total = len(frame)
    every = progress_every or max(100, total // 50)
    progress: list[dict] = []
    extra = {}
    if cost_ticks:
        if not supports_cost_ticks(client):
            raise ValueError("this tickserve-client/contract cannot send a trading cost (EvaluateConfig.cost_ticks)")
        extra["cost_ticks"] = float(cost_ticks)
    start = time.perf_counter()
    messages = client.evaluate(
        frame_to_ticks(frame), model=model, version=version, progress_every=every, batch_size=batch_size, **extra
    )
    try:
        report = _consume_evaluate(messages, total, progress, on_progress)
    finally:
        if hasattr(messages, "close"):
            messages.close()
    seconds = time.perf_counter() - start
    return EvaluationRun(
        report=report,
        progress=pd.DataFrame(progress, columns=["ticks", "labeled", "accuracy", "fraction"]),
        ticks_sent=total,
        seconds=seconds,
        source=source,
        model=report.model if report is not None else model,
        version=report.model_version if report is not None else version,
    )


def _consume_evaluate(messages, total: int, progress: list[dict], on_progress) -> pb.EvaluationReport | None:
    report = None
    for message in messages:
        kind = message.WhichOneof("payload")
        if kind == "progress":
            p = message.progress
            row = {
                "ticks": p.ticks,
                "labeled": p.labeled,
                "accuracy": p.accuracy,
                "fraction": min(1.0, p.ticks / total) if total else 1.0,
            }
            progress.append(row)
            if on_progress is not None:
                on_progress(row)
        elif kind == "report":
            report = message.report
    return report


# --- server health and metrics ------------------------------------------------------------


def health(
    settings: ServerSettings, services: tuple[str, ...] = ("", SIGNAL_SERVICE, REPOSITORY_SERVICE)
) -> pd.DataFrame:
    """grpc.health.v1 Check per service: service, status (SERVING, NOT_SERVING, … or the error)."""
    kwargs = settings.client_kwargs()
    options = [("grpc.enable_retries", 0)]
    if settings.secure:
        creds = grpc.ssl_channel_credentials(
            kwargs["root_certificates"], kwargs["private_key"], kwargs["certificate_chain"]
        )
        channel = grpc.secure_channel(settings.server, creds, options=options)
    else:
        channel = grpc.insecure_channel(settings.server, options=options)
    metadata = [("authorization", f"Bearer {settings.token}")] if settings.token else None
    rows = []
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in services:
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=3.0, metadata=metadata)
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            except grpc.RpcError as e:
                status = rpc_error_text(e)
            rows.append({"service": service or "(server)", "status": status})
    return pd.DataFrame(rows, columns=["service", "status"])


def parse_prometheus(text: str) -> pd.DataFrame:
    """Prometheus text format -> metric, labels, value (samples only; comments skipped)."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, rest = line.split("{", 1)
            labels, _, value = rest.rpartition("}")
        else:
            name, _, value = line.partition(" ")
            labels = ""
        try:
            number = float(value.split()[0])
        except (ValueError, IndexError):
            continue
        rows.append({"metric": name.strip(), "labels": labels, "value": number})
    return pd.DataFrame(rows, columns=["metric", "labels", "value"])


def metrics_summary(url: str, timeout: float = 3.0) -> pd.DataFrame:
    """Each tickserve_* metric (not histogram buckets) summed over its labels."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (a URL the operator configured)
        text = response.read().decode("utf-8", "replace")
    samples = parse_prometheus(text)
    samples = samples[samples["metric"].str.startswith("tickserve_") & ~samples["metric"].str.endswith("_bucket")]
    summary = samples.groupby("metric", as_index=False).agg(value=("value", "sum"), series=("labels", "count"))
    return summary
