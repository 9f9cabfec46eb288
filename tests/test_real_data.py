"""Real market data end to end: import the shared Binance BTCUSD_PERP sample, check time-horizon labels
batch == streaming on it, train a small LightGBM model, serve it on a real server and check that the
streamed signals of the held-out span equal offline predictions, and that Evaluate equals the offline
evaluation. Skipped when the data set is not next to the repository (../shared/data/binance-btcusd-perp)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tickserve.core.signals import decide
from tickserve.core.ticks import read_metadata, read_parquet
from tickserve.evaluation.evaluate import Evaluation
from tickserve.evaluation.labels import NO_LABEL, LabelConfig, make_labels
from tickserve.features import ALWAYS_OPEN, FEATURE_INDEX, FeatureConfig, batch_features
from tickserve.importer import ImportSettings, import_ticks, instrument_settings, run_import
from tickserve.models.repository import ModelRepository
from tickserve.serving.app import create_server
from tickserve.serving.converters import frame_to_protos, report_to_proto
from tickserve.training import train_model
from tickserve.training.report import TrainingReport
from tickserve_client import TickserveClient
from tickserve_proto.v1 import tickserve_pb2 as pb

from .conftest import _LoopThread, feed_in_messages

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance-btcusd-perp"
pytestmark = pytest.mark.skipif(
    not (DATA / "book10.csv.gz").is_file() or not (DATA / "trades.csv.gz").is_file(),
    reason=f"real data not found: expected book10.csv.gz and trades.csv.gz in {DATA} "
    "(the shared Binance BTCUSD_PERP sample next to the repository)",
)
INSTRUMENT = "BTCUSD_PERP"
ACTION_NAME = {pb.ACTION_BUY: "BUY", pb.ACTION_HOLD: "HOLD", pb.ACTION_SELL: "SELL"}
PARAMS = {"num_boost_round": 15, "early_stopping_rounds": 10}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "btcusd_perp.parquet"
    settings = ImportSettings(INSTRUMENT, 0.1, ALWAYS_OPEN, mapping={"timestamp_ns": "local_ts_ns"})
    report = run_import(DATA / "book10.csv.gz", DATA / "trades.csv.gz", out, settings)
    return out, report, read_parquet(out)


def test_import_of_the_shared_files(imported):
    import pyarrow.csv as pacsv

    path, report, frame = imported
    # the data set's README: 44,772 book rows (no gap, none crossed) and 5,235 trades
    assert (report.book.rows, report.book.kept, report.dropped) == (44_772, 44_772, 0)
    assert (report.trades.rows, report.trades.kept) == (5_235, 5_235)
    assert report.trades_before_first_book == 1  # the first trade precedes the first book row
    assert report.ticks == len(frame) == 44_772 + 5_234 and report.off_grid_book_rows == 0
    assert not report.failed_validation
    assert (np.diff(frame.timestamp_ns) >= 0).all() and frame.sequence.tolist() == list(range(1, len(frame) + 1))
    # every trade after the first book row is one tick with its own size: VWAP counts each exactly once
    trades = pacsv.read_csv(str(DATA / "trades.csv.gz"))
    qty, price = trades.column("qty").to_numpy(), trades.column("price").to_numpy()
    assert frame.last_size.sum() == qty[1:].sum()
    traded = frame.last_size > 0
    assert np.array_equal(frame.last_price[traded], price[1:]) and np.array_equal(frame.last_size[traded], qty[1:])
    sizes, calendar = instrument_settings(read_metadata(path))
    assert sizes == {INSTRUMENT: 0.1} and calendar == ALWAYS_OPEN
    # each trade tick carries its trade's recorded side (the `aggressor` column), book ticks none
    side = np.where(trades.column("aggressor").to_numpy(zero_copy_only=False) == "buy", 1, -1)
    assert np.array_equal(frame.aggressor[traded], side[1:]) and not frame.aggressor[~traded].any()
    assert report.aggressor_column == "aggressor" and report.trade_sides == {"buy": 2_564, "sell": 2_670, "unknown": 0}


# data set -> (instrument, tick size, least share of trades whose recorded side the quote rule gives)
SHARED = {
    "binance-btcusd-perp": ("BTCUSD_PERP", 0.1, 0.99),
    "binance-btcusdt-spot": ("BTCUSDT", 0.01, 0.93),  # 100 ms book diffs: the quotes lag the trades more
    "binance-btcusdt-usdm": ("BTCUSDT_PERP", 0.1, 0.97),
    "binance-ethusdt-usdm": ("ETHUSDT_PERP", 0.01, 0.98),
}


@pytest.mark.parametrize("name", sorted(SHARED))
def test_recorded_aggressor_agrees_with_the_quote_rule_on_the_shared_data(name):
    """The side the feature stage will infer when none is given (quote rule: price >= best ask a
    buy, <= best bid a sell, else against the mid) against the side each exchange recorded, on the
    quotes the imported trade tick carries. The aggressor and buyer_is_maker columns agree."""
    data = DATA.parent / name
    if not (data / "trades.csv.gz").is_file():
        pytest.skip(f"{data} not found")
    instrument, tick_size, least = SHARED[name]
    settings = ImportSettings(instrument, tick_size, ALWAYS_OPEN, mapping={"timestamp_ns": "local_ts_ns"})
    frame, report = import_ticks(data / "book10.csv.gz", data / "trades.csv.gz", settings)
    assert report.aggressor_column == "aggressor" and report.trade_sides["unknown"] == 0 and report.dropped == 0
    traded = frame.last_size > 0
    price, bid, ask = frame.last_price[traded], frame.bid_price[traded, 0], frame.ask_price[traded, 0]
    rule = np.where(price >= ask, 1, np.where(price <= bid, -1, np.sign(price - (bid + ask) / 2)))
    agree = float((rule == frame.aggressor[traded]).mean())
    assert agree >= least, f"{name}: the quote rule agrees with the recorded side on only {agree:.2%} of trades"
    settings.trades_mapping = {"buyer_is_maker": "buyer_is_maker"}
    from_maker, _ = import_ticks(data / "book10.csv.gz", data / "trades.csv.gz", settings)
    assert np.array_equal(from_maker.aggressor, frame.aggressor)


@pytest.mark.parametrize(
    "labels",
    [LabelConfig(horizon_ns=1_000_000_000), LabelConfig(horizon_ns=250_000_000), LabelConfig(horizon_ticks=50)],
    ids=["1s", "250ms", "50ticks"],
)
def test_time_horizon_labels_batch_equal_streaming_on_real_data(imported, labels):
    from types import SimpleNamespace

    _, _, frame = imported
    config = FeatureConfig(tick_sizes=((INSTRUMENT, 0.1),), calendar=ALWAYS_OPEN)
    y, future = make_labels(frame, labels, config)
    model = SimpleNamespace(
        manifest=SimpleNamespace(label_config=labels, feature_config=config),
        name="x",
        version="1",
        importance=[],
        calibrator=SimpleNamespace(temperature=1.0),
    )
    evaluation = Evaluation(model, record_labels=True)
    from tickserve.core.signals import SignalValues

    hold = SignalValues("HOLD", 0.2, 0.6, 0.2, 0.6, 0.0, "WEAK", "PASSIVE", "HIGH")
    feed_in_messages(evaluation, frame, [hold] * len(frame), (0.2, 0.6, 0.2))
    streamed_y = np.full(len(frame), NO_LABEL)
    streamed_future = np.full(len(frame), -1)
    for i, (label, j) in evaluation.labels_seen.items():
        streamed_y[i], streamed_future[i] = label, j
    mismatch = np.flatnonzero((streamed_y != y) | (streamed_future != future))
    assert len(mismatch) == 0, f"first mismatch at tick {mismatch[:1]}"
    assert (y >= 0).sum() > 0.99 * len(frame)


@pytest.fixture(scope="module")
def served(imported, plugins, tmp_path_factory):
    path, _, frame = imported
    sizes, calendar = instrument_settings(read_metadata(path))
    config = FeatureConfig(tick_sizes=tuple(sizes.items()), calendar=calendar)
    models = tmp_path_factory.mktemp("real-models")
    train_model(
        frame, adapter=plugins.adapters["lightgbm"], models_dir=models, name="btc", feature_config=config, params=PARAMS
    )
    repository = ModelRepository(models, plugins.adapters, default_model="btc")
    repository.load_all()
    runner = _LoopThread()
    server = runner.run(create_server("127.0.0.1:0", repository))
    t_test = TrainingReport.from_dict(repository.get("btc", "").manifest.training).spans()["test_start_ns"]
    holdout = frame.take(frame.timestamp_ns >= t_test)  # the test span: the model chose nothing from it
    yield repository, f"127.0.0.1:{server.port}", holdout
    runner.run(server.stop(1.0))
    runner.close()


def offline(model, frame):
    full = batch_features(frame, model.manifest.feature_config)
    x = full[:, model.feature_index]
    raw, probs = model.predict(x)
    spread = full[:, FEATURE_INDEX["spread_ticks"]]
    rules = model.manifest.signal_rules
    return x, raw, probs, [decide(*map(float, probs[i]), float(spread[i]), rules) for i in range(len(frame))]


@pytest.mark.parametrize("batch_size, limit", [(64, None), (1, 1_500)])
def test_streamed_signals_equal_offline_predictions_on_the_held_out_span(served, batch_size, limit):
    repository, address, holdout = served
    if limit:
        holdout = holdout.take(slice(0, limit))
    model = repository.get("btc", "")
    x, _, probs, expected = offline(model, holdout)
    with TickserveClient(address, timeout=120) as client:
        results = list(
            client.stream_signals(frame_to_protos(holdout), model="btc", batch_size=batch_size, return_features=True)
        )
    assert len(results) == len(holdout) == len(expected)
    actions = set()
    for i, (r, e) in enumerate(zip(results, expected)):
        assert r.WhichOneof("result") == "signal", r
        s = r.signal
        assert list(s.features) == x[i].tolist(), f"features differ at tick {i}"
        assert (s.p_sell, s.p_hold, s.p_buy) == tuple(probs[i]), f"probabilities differ at tick {i}"
        assert ACTION_NAME[s.action] == e.action
        assert pb.Strength.Name(s.strength) == f"STRENGTH_{e.strength}"
        assert pb.Urgency.Name(s.urgency) == f"URGENCY_{e.urgency}"
        assert pb.Risk.Name(s.risk) == f"RISK_{e.risk}"
        assert s.sequence == holdout.sequence[i] and s.timestamp_ns == holdout.timestamp_ns[i]
        actions.add(e.action)
    assert len(actions) >= 2


def test_served_evaluate_on_real_data_equals_the_offline_evaluation(served):
    repository, address, holdout = served
    model = repository.get("btc", "")
    _, raw, _, expected = offline(model, holdout)
    evaluation = Evaluation(model, cost_ticks=0.5)
    feed_in_messages(evaluation, holdout, expected, raw)

    def requests():
        yield pb.EvaluateRequest(config=pb.EvaluateConfig(model="btc", cost_ticks=0.5))
        ticks = frame_to_protos(holdout)
        for start in range(0, len(ticks), 1_000):
            yield pb.EvaluateRequest(batch=pb.TickBatch(ticks=ticks[start : start + 1_000]))

    with TickserveClient(address, timeout=120) as client:
        served_report = [r.report for r in client.stub.Evaluate(requests()) if r.WhichOneof("payload") == "report"][0]
    assert served_report == report_to_proto(evaluation.report())
    y, _ = make_labels(holdout, model.manifest.label_config, model.manifest.feature_config)
    assert served_report.labeled == int((y >= 0).sum())
    assert served_report.trading.trades > 0 and served_report.trading.cost_ticks == 0.5


def test_evaluate_span_test_reproduces_the_training_reports_test_scores(served, imported):
    """`tickserve evaluate --span test` on the training file: Evaluate scores only the held-out span,
    with the ticks before it as warm-up, and gets the scores training recorded for that span."""
    from tickserve.evaluation.span import choose_span

    repository, address, _ = served
    _, _, frame = imported
    report = TrainingReport.from_dict(repository.get("btc", "").manifest.training).final.test
    with TickserveClient(address, timeout=120) as client:
        info = client.get_model("btc")
        span = choose_span(frame, [info], "test")
        assert span.score_from_ns == info.training_spans.test_start_ns and "held-out test span" in span.message
        assert len(span.frame) < len(frame)

        def requests():
            yield pb.EvaluateRequest(config=pb.EvaluateConfig(model="btc", score_from_ns=span.score_from_ns))
            ticks = frame_to_protos(span.frame)
            for start in range(0, len(ticks), 1_000):
                yield pb.EvaluateRequest(batch=pb.TickBatch(ticks=ticks[start : start + 1_000]))

        served_report = [r.report for r in client.stub.Evaluate(requests()) if r.WhichOneof("payload") == "report"][0]
    assert served_report.labeled == report.rows
    assert served_report.macro_f1 == pytest.approx(report.macro_f1, abs=1e-12)
    assert served_report.accuracy == pytest.approx(report.accuracy, abs=1e-12)
    baselines = {b.name: b.macro_f1 for b in served_report.baselines}
    for name, values in report.baselines.items():
        assert baselines[name] == pytest.approx(values["macro_f1"], abs=1e-12), name
    strong = served_report.trading.one_position_strong
    assert strong.trades == report.trading["strong"]["trades"]
    assert strong.total_pnl_ticks == pytest.approx(report.trading["strong"]["total_pnl_ticks"], abs=1e-6)
    assert served_report.trading.one_position_all.trades == report.trading["all"]["trades"]
    # --span all scores the training ticks too, and says so
    assert "flatter the model" in choose_span(frame, [info], "all").message
