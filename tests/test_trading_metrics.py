"""Time horizons, baselines and trading metrics: hand-made sequences with known answers, batch == streaming,
and the served Evaluate report == the same Evaluation computed offline."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from tickserve.core.signals import ACTIONS, RISKS, STRENGTHS, SignalValues, decide
from tickserve.core.ticks import Tick, TickFrame
from tickserve.errors import InvalidArgument
from tickserve.evaluation.baselines import baseline_predictions, score_baselines
from tickserve.evaluation.evaluate import CumulativePnl, Evaluation, ScoredTicks
from tickserve.evaluation.labels import (
    BUY,
    HOLD,
    NO_LABEL,
    SELL,
    LabelConfig,
    format_duration_ns,
    future_index,
    make_labels,
    parse_duration_ns,
    past_index,
)
from tickserve.features import FEATURE_INDEX, FeatureConfig, batch_features
from tickserve.models.manifest import MANIFEST_FILE, ModelManifest
from tickserve.serving.converters import frame_to_protos, report_to_proto
from tickserve.simulate import simulate
from tickserve_proto.v1 import tickserve_pb2 as pb

from .conftest import MODEL, feed_in_messages

T0 = 1_704_205_800_000_000_000


def stub_model(labels: LabelConfig, tick_size: float = 0.5):
    manifest = SimpleNamespace(label_config=labels, feature_config=FeatureConfig(default_tick_size=tick_size))
    return SimpleNamespace(
        manifest=manifest, name="stub", version="1", importance=[], calibrator=SimpleNamespace(temperature=1.0)
    )


def signal(action: str, strength: str = "WEAK", risk: str = "HIGH") -> SignalValues:
    p = {"BUY": (0.1, 0.2, 0.7), "SELL": (0.7, 0.2, 0.1), "HOLD": (0.2, 0.6, 0.2)}[action]
    return SignalValues(action, p[2], p[1], p[0], max(p), p[2] - p[0], strength, "PASSIVE", risk)


def tick(
    i: int, bid: float, ask: float, bid_size: float = 1.0, ask_size: float = 1.0, ts: int | None = None, name: str = "X"
) -> Tick:
    return Tick(name, T0 + (i if ts is None else ts), 0.0, 0.0, (bid,), (bid_size,), (ask,), (ask_size,))


# (bid, ask, bid size, ask size, signal) on a 0.5 tick grid; horizon 2 ticks, threshold 1 tick
SEQUENCE = [
    (100.0, 100.5, 5, 1, signal("BUY", "STRONG", "LOW")),
    (100.0, 100.5, 1, 5, signal("SELL", "MEDIUM", "HIGH")),
    (101.0, 101.5, 3, 3, signal("HOLD")),
    (99.5, 100.0, 2, 1, signal("BUY", "WEAK", "HIGH")),
    (100.5, 101.5, 1, 1, signal("SELL", "STRONG", "LOW")),  # never labeled: counts as a signal, not a trade
    (99.5, 100.0, 1, 1, signal("HOLD")),
]


def run_sequence(cost_ticks: float = 0.0) -> Evaluation:
    evaluation = Evaluation(stub_model(LabelConfig(2, 1.0)), cost_ticks=cost_ticks, record_labels=True)
    for i, (bid, ask, bs, az, s) in enumerate(SEQUENCE):
        evaluation.add_tick(tick(i, bid, ask, bs, az), s, (s.p_sell, s.p_hold, s.p_buy))
    return evaluation


def test_trading_metrics_by_hand():
    # labels: t0 -> t2 mid +2 ticks BUY; t1 -> t3 -1 SELL; t2 -> t4 -0.5 HOLD; t3 -> t5 0 HOLD
    # round trips: t0 BUY: bid(t2) - ask(t0) = 101.0 - 100.5 = +1 tick, move +2, hit
    #              t1 SELL: bid(t1) - ask(t3) = 100.0 - 100.0 = 0, move +1 (signed), hit
    #              t3 BUY: bid(t5) - ask(t3) = 99.5 - 100.0 = -1 tick, move 0, miss
    r = run_sequence().report()
    assert r["ticks"] == 6 and r["labeled"] == 4
    t = r["trading"]
    assert (t["signals"], t["trades"]) == (4, 3)
    assert t["signals_per_1000_ticks"] == pytest.approx(1000 * 4 / 6)
    # bps of the entry mid: t0 +0.5 / 100.25, t1 0, t3 -0.5 / 99.75
    bps = [0.5 / 100.25 * 1e4, 0.0, -0.5 / 99.75 * 1e4]
    assert t["all"] == {
        "trades": 3,
        "hit_rate": pytest.approx(2 / 3),
        "win_rate": pytest.approx(1 / 3),
        "mean_move_ticks": 1.0,
        "mean_pnl_ticks": 0.0,
        "total_pnl_ticks": 0.0,
        "total_pnl_price": 0.0,
        "mean_pnl_bps": pytest.approx(sum(bps) / 3),
        "total_pnl_bps": pytest.approx(sum(bps)),
    }
    assert t["by_strength"]["STRONG"]["trades"] == 1 and t["by_strength"]["STRONG"]["total_pnl_ticks"] == 1.0
    assert t["by_strength"]["MEDIUM"]["total_pnl_ticks"] == 0.0 and t["by_strength"]["MEDIUM"]["hit_rate"] == 1.0
    assert t["by_strength"]["WEAK"]["total_pnl_ticks"] == -1.0 and t["by_strength"]["WEAK"]["hit_rate"] == 0.0
    assert t["by_risk"]["LOW"]["trades"] == 1 and t["by_risk"]["HIGH"]["trades"] == 2
    assert t["by_risk"]["HIGH"]["total_pnl_price"] == -0.5 and t["by_risk"]["MEDIUM"]["trades"] == 0
    assert t["by_action"]["BUY"]["trades"] == 2 and t["by_action"]["SELL"]["trades"] == 1
    assert t["by_action"]["BUY"]["mean_move_ticks"] == 1.0
    # closing ticks 2, 3, 5: cumulative +1, +1, 0
    assert t["cumulative_pnl"] == [(2, T0 + 2, 1.0, 0.5), (3, T0 + 3, 1.0, 0.5), (5, T0 + 5, 0.0, 0.0)]
    # the baselines' own round trips: last_move BUY at t2 (-2 ticks), SELL at t3 (-1); imbalance = the model here
    assert t["baselines"]["last_move"]["trades"] == 2 and t["baselines"]["last_move"]["total_pnl_ticks"] == -3.0
    assert t["baselines"]["last_move"]["hit_rate"] == 0.0
    assert t["baselines"]["imbalance"]["total_pnl_ticks"] == 0.0 and t["baselines"]["imbalance"]["trades"] == 3
    # one position at a time: t0 BUY opens (closes at t2, +1); t1 SELL is skipped (still long); t3 BUY opens
    # (closes at t5, -1); t4 SELL is skipped. STRONG only: t0 (+1); t4 opens but its label tick never comes
    one = t["one_position_all"]
    assert (one["trades"], one["total_pnl_ticks"], one["win_rate"]) == (2, 0.0, 0.5)
    assert one["total_pnl_bps"] == pytest.approx(bps[0] + bps[2])
    strong = t["one_position_strong"]
    assert (strong["trades"], strong["total_pnl_ticks"], strong["hit_rate"]) == (1, 1.0, 1.0)
    # last_move: BUY at t2 (-2 ticks, closes at t4); SELL at t3 is skipped; imbalance as the model
    assert t["one_position_baselines"]["last_move"]["trades"] == 1
    assert t["one_position_baselines"]["last_move"]["total_pnl_ticks"] == -2.0
    assert t["one_position_baselines"]["imbalance"]["trades"] == 2


def test_cost_per_round_trip():
    t = run_sequence(cost_ticks=0.5).report()["trading"]
    assert t["cost_ticks"] == 0.5
    assert t["all"]["total_pnl_ticks"] == -1.5 and t["all"]["total_pnl_price"] == pytest.approx(-0.75)
    assert t["all"]["mean_pnl_ticks"] == -0.5
    assert t["all"]["hit_rate"] == pytest.approx(2 / 3)  # cost does not change the direction of the mid
    assert t["cumulative_pnl"][-1][2:] == (-1.5, -0.75)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidArgument, match="cost_ticks"):
            Evaluation(stub_model(LabelConfig()), cost_ticks=bad)
        with pytest.raises(InvalidArgument, match="fee_bps"):
            Evaluation(stub_model(LabelConfig()), fee_bps=bad)


def test_fees_in_bps_and_warm_up_ticks():
    evaluation = Evaluation(stub_model(LabelConfig(2, 1.0)), fee_bps=10.0, score_from_ns=T0 + 1)
    for i, (bid, ask, bs, az, s) in enumerate(SEQUENCE):
        evaluation.add_tick(tick(i, bid, ask, bs, az), s, (s.p_sell, s.p_hold, s.p_buy))
    r = evaluation.report()
    # t0 is warm-up: not scored, but it is t2's past tick; t1 SELL (0 ticks) and t3 BUY (-1 tick) trade
    assert (r["ticks"], r["warmup_ticks"], r["labeled"]) == (5, 1, 3)
    t = r["trading"]
    assert t["fee_bps"] == 10.0 and t["all"]["trades"] == 2
    fee_ticks = [10.0 * 100.25 * 1e-4 / 0.5, 10.0 * 99.75 * 1e-4 / 0.5]
    assert t["all"]["total_pnl_ticks"] == pytest.approx(-1.0 - sum(fee_ticks))
    assert t["all"]["total_pnl_bps"] == pytest.approx(0.0 - 10.0 + (-0.5 / 99.75 * 1e4 - 10.0))
    b = {x["name"]: x for x in r["baselines"]}
    # last move at t2 (past tick t0, a warm-up tick): +2 ticks -> BUY, still seen
    assert b["last_move"]["accuracy"] == 0.0


def test_baselines_by_hand():
    r = run_sequence().report()
    # truth for t0..t3: BUY SELL HOLD HOLD; the model: BUY SELL HOLD BUY
    assert r["accuracy"] == 0.75
    b = {x["name"]: x for x in r["baselines"]}
    assert [x["name"] for x in r["baselines"]] == ["majority", "last_move", "imbalance"]
    # majority: always HOLD: accuracy 1/2, F1(HOLD) = 2 * 0.5 * 1 / 1.5 = 2/3, macro = 2/9
    assert b["majority"]["accuracy"] == 0.5 and b["majority"]["macro_f1"] == pytest.approx(2 / 9)
    assert "HOLD" in b["majority"]["description"]
    # last move (2 ticks back): t0, t1 none -> HOLD; t2: +2 -> BUY; t3: -1 -> SELL: all wrong
    assert b["last_move"]["accuracy"] == 0.0 and b["last_move"]["macro_f1"] == 0.0
    # imbalance: 5>1 BUY, 1<5 SELL, 3=3 HOLD, 2>1 BUY -> 3/4; F1: SELL 1, HOLD 2/3, BUY 2/3
    assert b["imbalance"]["accuracy"] == 0.75 and b["imbalance"]["macro_f1"] == pytest.approx(7 / 9)
    # the batch functions training uses agree
    frame = TickFrame.from_ticks([tick(i, bid, ask, bs, az) for i, (bid, ask, bs, az, _) in enumerate(SEQUENCE)])
    labels = LabelConfig(2, 1.0)
    preds = baseline_predictions(frame, labels, FeatureConfig(default_tick_size=0.5))
    assert preds["last_move"].tolist() == [HOLD, HOLD, BUY, SELL, HOLD, HOLD]
    assert preds["imbalance"].tolist() == [BUY, SELL, HOLD, BUY, HOLD, HOLD]
    y, _ = make_labels(frame, labels, FeatureConfig(default_tick_size=0.5))
    assert y.tolist() == [BUY, SELL, HOLD, HOLD, NO_LABEL, NO_LABEL]
    scored = score_baselines(y[:4], {k: v[:4] for k, v in preds.items()})
    for name in ("majority", "last_move", "imbalance"):
        assert scored[name]["accuracy"] == b[name]["accuracy"]
        assert scored[name]["macro_f1"] == pytest.approx(b[name]["macro_f1"])


# --- time horizons -----------------------------------------------------------------------------


def test_time_horizon_by_hand():
    # timestamps 0, 100, 100, 250, 300, 1000 (ns after T0); horizon 200 ns
    ts = [0, 100, 100, 250, 300, 1000]
    mids = [100.0, 100.5, 101.0, 101.0, 99.0, 100.0]
    frame = TickFrame.from_ticks([tick(0, m - 0.25, m + 0.25, ts=t) for t, m in zip(ts, mids)])
    labels = LabelConfig(horizon_ns=200, threshold_ticks=2.0)
    # the first tick at or after t + 200: 0 -> 250 (row 3); 100 -> 300 (row 4); 250, 300 -> 1000 (row 5)
    assert future_index(frame, labels).tolist() == [3, 4, 4, 5, 5, -1]
    # the last tick at or before t - 200 (ties: the later row): 250 -> row 0; 300 -> row 2; 1000 -> row 4
    assert past_index(frame, labels).tolist() == [-1, -1, -1, 0, 2, 4]
    y, future = make_labels(frame, labels, FeatureConfig(default_tick_size=0.5))
    # moves in 0.5 ticks: +2 BUY, -3 SELL, -4 SELL, -2 SELL, +2 BUY
    assert y.tolist() == [BUY, SELL, SELL, SELL, BUY, NO_LABEL]
    # Evaluate, fed one tick at a time, finds the same label ticks
    evaluation = Evaluation(stub_model(labels), record_labels=True)
    for t in frame.ticks():
        evaluation.add_tick(t, signal("HOLD"), (0.2, 0.6, 0.2))
    assert [evaluation.labels_seen.get(i, (NO_LABEL, -1))[1] for i in range(6)] == future.tolist()
    assert [evaluation.labels_seen.get(i, (NO_LABEL, -1))[0] for i in range(6)] == y.tolist()


@pytest.mark.parametrize(
    "labels",
    [
        LabelConfig(horizon_ticks=1, threshold_ticks=1.0),
        LabelConfig(horizon_ticks=37, threshold_ticks=2.0),
        LabelConfig(horizon_ns=1, threshold_ticks=1.0),
        LabelConfig(horizon_ns=250_000_000, threshold_ticks=2.0),
        LabelConfig(horizon_ns=3_000_000_000, threshold_ticks=3.0),
        LabelConfig(horizon_ticks=20, mode="taker"),
        LabelConfig(horizon_ns=2_000_000_000, mode="taker", cost_ticks=1.0),
    ],
)
def test_streaming_labels_equal_batch_labels_on_simulated_ticks(labels):
    """Three interleaved instruments, timestamps coarsened so that many ticks share one."""
    frame = simulate(6_000, seed=21)
    frame.timestamp_ns = frame.timestamp_ns // 200_000_000 * 200_000_000  # stays in time order per instrument
    config = FeatureConfig()
    y, future = make_labels(frame, labels, config)
    evaluation = Evaluation(stub_model(labels, tick_size=0.01), record_labels=True)
    feed_in_messages(evaluation, frame, [signal("HOLD")] * len(frame), (0.2, 0.6, 0.2))
    streamed_y = np.full(len(frame), NO_LABEL)
    streamed_future = np.full(len(frame), -1)
    for i, (label, j) in evaluation.labels_seen.items():
        streamed_y[i], streamed_future[i] = label, j
    assert np.array_equal(streamed_y, y) and np.array_equal(streamed_future, future)
    assert evaluation.labeled == int((y >= 0).sum())
    # the streaming last-move baseline equals the batch one on every labeled tick
    preds = baseline_predictions(frame, labels, config)
    scored = score_baselines(y[y >= 0], {k: v[y >= 0] for k, v in preds.items()})
    got = {b["name"]: b for b in evaluation.report()["baselines"]}
    for name in scored:
        assert got[name]["accuracy"] == pytest.approx(scored[name]["accuracy"], abs=1e-15)


def test_streaming_one_position_round_trips_equal_the_batch_ones():
    """Evaluate's one-position books (streaming) equal `trading.round_trips` (training, the scoreboard)."""
    from tickserve.evaluation.labels import tick_sizes
    from tickserve.evaluation.trading import round_trips

    frame = simulate(5_000, seed=23)
    labels = LabelConfig(horizon_ticks=15, mode="taker")
    config = FeatureConfig()
    rng = np.random.default_rng(4)
    actions = rng.choice(["BUY", "SELL", "HOLD", "HOLD"], len(frame))
    strengths = rng.choice(["STRONG", "WEAK"], len(frame))
    evaluation = Evaluation(stub_model(labels, tick_size=0.01), cost_ticks=0.5, fee_bps=1.0)
    signals = [signal(a, st if a != "HOLD" else "WEAK") for a, st in zip(actions, strengths)]
    feed_in_messages(evaluation, frame, signals, (0.2, 0.6, 0.2), seed=5)
    _, future = make_labels(frame, labels, config)
    direction = np.where(actions == "BUY", 1, np.where(actions == "SELL", -1, 0))
    rows = np.arange(len(frame))
    sizes = tick_sizes(frame, config)
    t = evaluation.report()["trading"]
    for book, d in (
        ("one_position_all", direction),
        ("one_position_strong", np.where(strengths == "STRONG", direction, 0)),
    ):
        expected = round_trips(frame, rows, d, future, sizes, cost_ticks=0.5, fee_bps=1.0).to_dict()
        assert t[book] == pytest.approx(expected, rel=1e-12), book
        assert expected["trades"] > 50
    overlapping = round_trips(frame, rows, direction, future, sizes, cost_ticks=0.5, fee_bps=1.0, one_position=False)
    assert t["all"] == pytest.approx(overlapping.to_dict(), rel=1e-12)


def test_label_config_round_trip_and_old_manifests(tmp_path):
    assert LabelConfig() == LabelConfig(50, 2.0) and LabelConfig().horizon_ns is None
    assert LabelConfig().to_dict() == {"horizon_ticks": 50, "threshold_ticks": 2.0}  # unchanged on disk
    timed = LabelConfig(horizon_ns=1_000_000_000)
    assert timed.horizon_ticks is None and timed.in_time
    assert timed.to_dict() == {"horizon_ns": 1_000_000_000, "threshold_ticks": 2.0}
    assert LabelConfig.from_dict(timed.to_dict()) == timed
    assert LabelConfig.from_dict({"horizon_ticks": 7, "threshold_ticks": 1.5}) == LabelConfig(7, 1.5)
    for bad in (dict(horizon_ticks=5, horizon_ns=10), dict(horizon_ns=0), dict(horizon_ticks=0)):
        with pytest.raises(ValueError):
            LabelConfig(**bad)
    with pytest.raises(ValueError):
        LabelConfig.from_dict({"horizon_ticks": 5, "horizon_ns": 10, "threshold_ticks": 2.0})
    assert timed.describe() == "mid, horizon 1s, threshold 2 ticks"
    assert (
        LabelConfig(5, mode="taker", cost_ticks=0.5).describe()
        == "taker, horizon 5 ticks, cost 0.5 ticks beyond the spread"
    )
    # a manifest from before time horizons loads with its tick horizon; a timed one round-trips
    old = {
        "format": 1,
        "name": "m",
        "version": "1",
        "adapter": "lightgbm",
        "model_file": "model.txt",
        "feature_names": ["spread"],
        "feature_stage_version": "1",
        "label_config": {"horizon_ticks": 20, "threshold_ticks": 1.5},
    }
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(old))
    assert ModelManifest.load(tmp_path).label_config == LabelConfig(20, 1.5)
    manifest = ModelManifest.load(tmp_path)
    manifest.label_config = timed
    manifest.save(tmp_path)
    assert ModelManifest.load(tmp_path).label_config == timed


@pytest.mark.parametrize(
    "text, ns",
    [
        ("1s", 10**9),
        ("500ms", 5 * 10**8),
        ("5s", 5 * 10**9),
        ("250us", 250_000),
        ("2.5s", 2_500_000_000),
        ("1m", 60 * 10**9),
        ("100ns", 100),
    ],
)
def test_durations(text, ns):
    assert parse_duration_ns(text) == ns
    assert parse_duration_ns(format_duration_ns(ns)) == ns


@pytest.mark.parametrize("text", ["1", "s", "-1s", "0s", "1.5ns", "1 sec", ""])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration_ns(text)


# --- downsampling, walk-forward ------------------------------------------------------------------


def test_cumulative_pnl_is_downsampled_and_ends_with_the_total():
    pnl = CumulativePnl(max_points=1_000)
    total = 0.0
    for k in range(1, 12_346):
        total += 1.0
        pnl.add((k, k, total, total))
    series = pnl.series()
    assert len(series) <= 1_000
    assert series[-1] == (12_345, 12_345, 12_345.0, 12_345.0)
    indices = [p[0] for p in series]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    gaps = set(np.diff(indices[:-1]).tolist())
    assert len(gaps) == 1  # evenly thinned: every stride-th trade
    small = CumulativePnl()
    for k in range(5):
        small.add((k, k, float(k), float(k)))
    assert [p[0] for p in small.series()] == [0, 1, 2, 3, 4]


# --- served Evaluate == the same Evaluation offline ----------------------------------------------


def offline_evaluation(server, frame, cost_ticks):
    model = server.repository.get(MODEL, "")
    full = batch_features(frame, model.manifest.feature_config)
    raw, probs = model.predict(full[:, model.feature_index])
    spread = full[:, FEATURE_INDEX["spread_ticks"]]
    evaluation = Evaluation(model, cost_ticks=cost_ticks)
    for i, t in enumerate(frame.ticks()):
        s = decide(*map(float, probs[i]), float(spread[i]), model.manifest.signal_rules)
        evaluation.add_tick(t, s, tuple(raw[i].tolist()))
    return evaluation


def test_served_evaluate_report_equals_the_offline_evaluation(server, client):
    frame = simulate(1_800, seed=77)
    expected = report_to_proto(offline_evaluation(server, frame, 0.25).report())

    def requests():
        yield pb.EvaluateRequest(config=pb.EvaluateConfig(model=MODEL, cost_ticks=0.25))
        ticks = frame_to_protos(frame)
        for start in range(0, len(ticks), 250):
            yield pb.EvaluateRequest(batch=pb.TickBatch(ticks=ticks[start : start + 250]))

    reports = [r.report for r in client.stub.Evaluate(requests()) if r.WhichOneof("payload") == "report"]
    assert len(reports) == 1
    served = reports[0]
    assert served == expected
    assert [b.name for b in served.baselines] == ["majority", "last_move", "imbalance"]
    labels = server.repository.get(MODEL, "").manifest.label_config
    assert (served.label_config.horizon_ticks, served.label_config.mode) == (labels.horizon_ticks, "taker")
    assert served.trading.cost_ticks == 0.25
    assert served.trading.trades > 0 and 0 < len(served.trading.cumulative_pnl) <= 1_000
    assert served.trading.cumulative_pnl[-1].cumulative_pnl_ticks == pytest.approx(served.trading.all.total_pnl_ticks)


def test_evaluate_over_columns_single_ticks_and_batches_gives_one_report(server, client):
    """Evaluate gathers small messages and runs them together; the encoding and the message sizes
    never change the report, progress comes every progress_every scored ticks, and a bad tick in
    a TickColumns message fails the call naming its position in the whole stream."""
    import grpc

    from tickserve_client import frame_columns

    frame = simulate(1_200, seed=78)
    ticks = frame_to_protos(frame)
    by_batch = list(client.evaluate(ticks, model=MODEL, batch_size=250, cost_ticks=0.25, progress_every=500))
    by_tick = list(client.evaluate(ticks, model=MODEL, batch_size=1, cost_ticks=0.25, progress_every=500))
    by_columns = list(
        client.evaluate(columns=frame_columns(frame, 97), model=MODEL, cost_ticks=0.25, progress_every=500)
    )
    for responses in (by_batch, by_tick, by_columns):
        kinds = [r.WhichOneof("payload") for r in responses]
        assert kinds == ["progress", "progress", "report"], kinds
        assert [r.progress.ticks for r in responses[:2]][0] >= 500
    assert by_batch[-1].report == by_tick[-1].report == by_columns[-1].report
    assert by_batch[-1].report.ticks == len(frame) and by_batch[-1].report.trading.cost_ticks == 0.25
    bad = frame.take(slice(0, len(frame)))
    bad.ask_price[700, 0] = -1.0
    with pytest.raises(grpc.RpcError) as info:
        list(client.evaluate(columns=frame_columns(bad, 97), model=MODEL))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("ticks[700].ask_price[0]: "), info.value.details()


def test_negative_cost_is_refused_by_the_server(client):
    import grpc

    def requests():
        yield pb.EvaluateRequest(config=pb.EvaluateConfig(model=MODEL, cost_ticks=-1.0))
        yield pb.EvaluateRequest(batch=pb.TickBatch(ticks=frame_to_protos(simulate(30, seed=1))))

    with pytest.raises(grpc.RpcError) as info:
        list(client.stub.Evaluate(requests()))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "cost_ticks" in info.value.details()


def test_training_records_baselines_and_walk_forward_folds(tmp_path, plugins):
    from tickserve.models.manifest import ModelManifest as Manifest
    from tickserve.models.repository import ModelEntry, ModelState
    from tickserve.serving.converters import model_info
    from tickserve.training import train_model
    from tickserve.training.report import TrainingReport

    labels = LabelConfig(horizon_ns=2_000_000_000, threshold_ticks=2.0)
    path, manifest = train_model(
        simulate(8_000, seed=4),
        adapter=plugins.adapters["lightgbm"],
        models_dir=tmp_path,
        name="wf",
        label_config=labels,
        folds=2,
        params={"num_boost_round": 5, "early_stopping_rounds": 5},
    )
    m = manifest.metrics
    for name in ("majority", "last_move", "imbalance"):
        assert 0 <= m[f"test_baseline_{name}_accuracy"] <= 1 and 0 <= m[f"test_baseline_{name}_macro_f1"] <= 1
    assert m["wf_folds"] == 2
    for k in (1, 2):
        assert m[f"wf{k}_test_rows"] > 0 and 0 <= m[f"wf{k}_macro_f1"] <= 1
        assert m[f"wf{k}_margin"] == pytest.approx(
            m[f"wf{k}_macro_f1"]
            - max(m[f"wf{k}_baseline_{b}_macro_f1"] for b in ("majority", "last_move", "imbalance"))
        )
    assert m["wf_mean_macro_f1"] == pytest.approx((m["wf1_macro_f1"] + m["wf2_macro_f1"]) / 2)
    assert m["wf2_test_start_ns"] > m["wf1_test_start_ns"]
    assert m["test_macro_f1"] == m["wf2_macro_f1"]  # the model written is the last fold's
    assert sorted(p.name for p in tmp_path.joinpath("wf").iterdir()) == ["1"]  # fold models are thrown away
    assert Manifest.load(path).label_config == labels
    report = TrainingReport.from_dict(Manifest.load(path).training)
    assert len(report.folds) == 2 and report.label_rule == f"label: {labels.describe()}, as given"
    assert report.spans()["test_start_ns"] == report.folds[-1].spans.test_start_ns
    info = model_info(ModelEntry("wf", "1", path, ModelState.READY, manifest=manifest))
    assert (info.label_config.horizon_ticks, info.label_config.horizon_ns) == (0, 2_000_000_000)
    assert info.training_spans.test_start_ns == report.spans()["test_start_ns"]
    assert info.training_spans.instruments == ["SIMA", "SIMB", "SIMC"]
    assert any("calibration" in note for note in info.training_notes)


def test_a_time_horizon_over_a_clock_that_stands_still_is_bounded(monkeypatch):
    """Ticks wait for the tick at t + horizon; when timestamps never advance, memory would grow
    without end: past max_waiting_ticks the evaluation stops with RESOURCE_EXHAUSTED naming it."""
    from tickserve.errors import ResourceExhausted
    from tickserve.evaluation import evaluate as evaluation_module

    monkeypatch.setattr(evaluation_module, "MAX_WAITING_TICKS", 100)
    evaluation = Evaluation(stub_model(LabelConfig(horizon_ns=1_000_000_000, threshold_ticks=1.0)))
    for i in range(100):
        evaluation.add_tick(tick(i, 100.0, 100.5, ts=0), signal("HOLD"), (0.2, 0.6, 0.2))
    with pytest.raises(ResourceExhausted) as err:
        evaluation.add_tick(tick(100, 100.0, 100.5, ts=0), signal("HOLD"), (0.2, 0.6, 0.2))
    assert err.value.field == "ticks[100].timestamp_ns"
    assert "100 ticks of 'X' are waiting" in err.value.message and "max_waiting_ticks" in err.value.message
    # a clock that moves settles them: the same count of ticks one second apart never trips it
    moving = Evaluation(stub_model(LabelConfig(horizon_ns=1_000_000_000, threshold_ticks=1.0)))
    for i in range(300):
        moving.add_tick(tick(i, 100.0, 100.5, ts=i * 1_000_000_000), signal("HOLD"), (0.2, 0.6, 0.2))
    assert moving.labeled == 299


@pytest.mark.parametrize(
    "labels",
    [
        LabelConfig(horizon_ticks=15, mode="taker"),
        LabelConfig(horizon_ns=700_000_000, threshold_ticks=2.0),
        LabelConfig(horizon_ticks=3, threshold_ticks=1.0),
    ],
    ids=["15-ticks-taker", "700ms-mid", "3-ticks-mid"],
)
def test_a_report_does_not_depend_on_how_the_ticks_are_split_into_messages(labels):
    """Evaluate settles each message's ticks on arrays: one tick per message and messages of
    random sizes give the same report, to the last bit (warm-up, three instruments, equal timestamps)."""
    frame = simulate(3_000, seed=11)
    frame.timestamp_ns = frame.timestamp_ns // 100_000_000 * 100_000_000
    rng = np.random.default_rng(1)
    p = rng.dirichlet([1, 1, 1], len(frame))
    actions = rng.choice(["BUY", "SELL", "HOLD"], len(frame), p=[0.3, 0.3, 0.4])
    strengths = rng.choice(["WEAK", "MEDIUM", "STRONG"], len(frame))
    risks = rng.choice(["LOW", "MEDIUM", "HIGH"], len(frame))
    signals = [
        SignalValues(a, q[2], q[1], q[0], q.max(), q[2] - q[0], s, "PASSIVE", r)
        for a, q, s, r in zip(actions, p, strengths, risks)
    ]
    reports = []
    for split in ("one tick", "random", "one message"):
        evaluation = Evaluation(
            stub_model(labels, tick_size=0.01), cost_ticks=0.3, fee_bps=0.5, score_from_ns=int(frame.timestamp_ns[200])
        )
        if split == "one tick":
            for i, t in enumerate(frame.ticks()):
                evaluation.add_tick(t, signals[i], tuple(p[i].tolist()))
        elif split == "random":
            feed_in_messages(evaluation, frame, signals, p, seed=9)
        else:
            evaluation.add(
                ScoredTicks.of_frame(
                    frame,
                    p,
                    p,
                    SimpleNamespace(
                        action=np.array([ACTIONS.index(a) for a in actions]),
                        strength=np.array([STRENGTHS.index(s) for s in strengths]),
                        risk=np.array([RISKS.index(r) for r in risks]),
                    ),
                )
            )
        reports.append(evaluation.report())
    assert reports[0]["trading"]["one_position_all"]["trades"] > 20 and reports[0]["warmup_ticks"] == 200
    assert reports[0] == reports[1] == reports[2]
