"""The dashboard (clients/dashboard) without a browser: Streamlit's AppTest runs the real app script
against a real server on a loopback port, and the data layer and report parsing are tested on their own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from streamlit.testing.v1 import AppTest

import tickserve_dashboard
from tickserve.core.tick_csv import write_csv
from tickserve.core.ticks import write_parquet
from tickserve.models.repository import ModelRepository
from tickserve.serving.app import create_server
from tickserve.simulate import simulate
from tickserve_dashboard import datalayer as dl
from tickserve_dashboard import report_fields as rf
from tickserve_dashboard.server_config import ConfigError, ServerSettings, load_settings
from tickserve_proto.v1 import tickserve_pb2 as pb

from .conftest import MODEL, _LoopThread

APP = Path(tickserve_dashboard.__file__).with_name("app.py")
TIMEOUT = 90


# --- helpers -------------------------------------------------------------------------------------


def make_app(address: str, monkeypatch) -> AppTest:
    for var in (
        "TICKSERVE_TLS_CA",
        "TICKSERVE_TLS_CERT",
        "TICKSERVE_TLS_KEY",
        "TICKSERVE_TLS",
        "TICKSERVE_TOKEN",
        "TICKSERVE_TOKEN_FILE",
        "TICKSERVE_DASHBOARD_CONFIG",
        "TICKSERVE_METRICS_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TICKSERVE_SERVER", address)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at_or_tab) -> dict[str, dict]:
    """Plotly charts by their key (the suffix of the element id) -> the figure spec."""
    out = {}
    for element in at_or_tab.get("plotly_chart"):
        key = element.proto.id.rsplit("-", 1)[-1]
        out[key] = json.loads(element.proto.spec)
    return out


def tab(at: AppTest, label: str):
    return next(t for t in at.tabs if t.label == label)


def successes(at_or_tab) -> list[str]:
    return [s.value for s in at_or_tab.success]


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


# --- the app against the shared test server ------------------------------------------------------


@pytest.fixture
def app(server, monkeypatch) -> AppTest:
    return make_app(server.address, monkeypatch)


def test_the_app_renders_four_tabs_and_lists_the_ready_models(app):
    assert [t.label for t in app.tabs] == ["Live Inference", "Model Performance", "Feature Analysis", "Configuration"]
    assert not app.error, [e.value for e in app.error]
    # signal-lgbm (versions 1 and 2) is READY; "broken" is FAILED and so not offered for inference
    assert app.selectbox(key="live_model").options == [MODEL]
    assert app.selectbox(key="live_version").options == ["newest READY", "1", "2"]
    assert any("2 of 3 model versions READY" in c.value for c in app.sidebar.caption)


def test_a_short_live_stream_fills_the_signals_table_chart_and_counts(app):
    app.number_input(key="live_n").set_value(300)
    app.number_input(key="live_refresh").set_value(100)
    click(app, "live_start")
    live = tab(app, "Live Inference")
    assert any("300 ticks from simulator" in s and f"{MODEL} v2" in s for s in successes(live))
    result: dl.LiveResult = app.session_state["live_result"]
    assert len(result.signals) == 300 and len(result.errors) == 0
    assert result.features is not None and list(result.features.columns) == result.feature_names
    table = live.dataframe[0].value  # the rolling table of the newest signals
    assert len(table) == 25 and table["tick"].iloc[0] == 299
    assert set(table["action"]) <= {"BUY", "HOLD", "SELL"}
    figs = charts(live)
    price = figs["live_final_price"]
    names = [trace["name"] for trace in price["data"]]
    # the markers are drawn first (beneath the lines), small and semi-transparent: the price lines stay visible
    assert names == ["BUY", "SELL", "mid", "microprice"]
    markers = [trace for trace in price["data"] if trace["mode"] == "markers"]
    assert all(m["opacity"] < 1 and max(m["marker"]["size"], default=0) <= 10 for m in markers)
    assert sum(len(m["x"]) for m in markers) > 0
    assert {"live_final_counts_action", "live_final_counts_strength", "live_final_counts_risk"} <= set(figs)
    assert all(series.sum() == 300 for series in dl.signal_counts(result.signals).values())
    metrics = {m.label: m.value for m in live.metric}
    assert metrics["Signals"] == "300" and metrics["Tick errors"] == "0"


def test_evaluate_shows_progress_confusion_matrix_per_class_and_calibration(app):
    app.number_input(key="perf_n").set_value(2_000)
    click(app, "perf_run")
    perf = tab(app, "Model Performance")
    run: dl.EvaluationRun = app.session_state["evaluation"]
    assert run.report is not None and run.report.ticks == 2_000
    assert len(run.progress) >= 2 and run.progress["ticks"].is_monotonic_increasing  # progress messages arrived
    assert any("2,000 ticks" in s for s in successes(perf))
    figs = charts(perf)
    heatmap = figs["perf_confusion"]["data"][0]
    assert heatmap["type"] == "heatmap"
    assert heatmap["x"] == ["SELL", "HOLD", "BUY"] and heatmap["y"] == ["SELL", "HOLD", "BUY"]
    assert {"perf_per_class", "perf_counts_action", "perf_progress"} <= set(figs)
    assert "perf_reliability" in figs or "perf_calibration" in figs
    per_class = next(d.value for d in perf.dataframe if "precision" in d.value.columns)
    assert list(per_class["label"]) == ["SELL", "HOLD", "BUY"]
    assert {m.label for m in perf.metric} >= {"Accuracy", "Macro F1", "Log loss"}
    # the importance of this model is now known to the Feature Analysis tab
    assert (MODEL, "") in app.session_state["importance"]


def test_feature_analysis_importance_values_and_distributions(app):
    click(app, "feat_fetch_importance")
    features = tab(app, "Feature Analysis")
    figs = charts(features)
    bars = figs["feat_importance"]["data"][0]
    assert bars["type"] == "bar" and bars["orientation"] == "h" and len(bars["y"]) > 5
    app.number_input(key="feat_n").set_value(300)
    click(app, "feat_collect")
    features = tab(app, "Feature Analysis")
    figs = charts(features)
    assert {"feat_importance", "feat_time", "feat_dist"} <= set(figs)
    top = app.session_state["importance"][(MODEL, "")]["feature"].tolist()[:3]
    chosen = next(m for m in features.multiselect if m.label == "Features").value
    assert chosen == top  # the most important features by default
    stats = features.dataframe[-1].value
    assert set(stats["action"]) <= {"BUY", "HOLD", "SELL"} and stats["count"].sum() == 300


# --- configuration against a server of its own (it unloads and loads models) ----------------------


@pytest.fixture(scope="module")
def own_server(model_repo, plugins, tmp_path_factory):
    root = tmp_path_factory.mktemp("dashboard-models")
    for name in (MODEL, "broken"):
        shutil.copytree(model_repo / name, root / name)
    repository = ModelRepository(root, plugins.adapters, default_model=MODEL)
    repository.load_all()
    runner = _LoopThread()
    server = runner.run(create_server("127.0.0.1:0", repository))
    yield f"127.0.0.1:{server.port}"
    runner.run(server.stop(1.0))
    runner.close()


def test_configuration_health_repository_rules_and_unload_load(own_server, monkeypatch):
    at = make_app(own_server, monkeypatch)
    config = tab(at, "Configuration")
    assert any("SERVING" in s for s in successes(config))
    index = config.dataframe[1].value
    states = {(r.model, r.version): r.state for r in index.itertuples()}
    assert states == {("broken", "1"): "FAILED", (MODEL, "1"): "READY", (MODEL, "2"): "READY"}
    assert index.set_index("model").loc["broken", "reason"]  # why it FAILED

    at.selectbox(key="config_detail").set_value(f"{MODEL} v2").run()
    rules = next(d.value for d in tab(at, "Configuration").dataframe if "rule" in d.value.columns)
    thresholds = dict(zip(rules["rule"], rules["threshold"]))
    assert thresholds["strong_edge"] == 0.3 and thresholds["medium_edge"] == 0.15

    at.selectbox(key="config_model").set_value(MODEL).run()
    at.selectbox(key="config_version").set_value("2").run()
    at.button(key="config_unload").click().run()
    assert not at.exception
    config = tab(at, "Configuration")
    assert any(f"Unload {MODEL} v2: v2 UNLOADED" in s for s in successes(config)), successes(config)
    assert at.selectbox(key="live_version").options == ["newest READY", "1"]  # the other tabs see it at once

    at.selectbox(key="config_model").set_value(MODEL).run()
    at.selectbox(key="config_version").set_value("2").run()
    at.button(key="config_load").click().run()
    config = tab(at, "Configuration")
    assert any(f"Load {MODEL} v2: v2 READY" in s for s in successes(config)), successes(config)
    assert at.selectbox(key="live_version").options == ["newest READY", "1", "2"]

    at.selectbox(key="config_model").set_value("broken").run()
    at.selectbox(key="config_version").set_value("1").run()
    at.button(key="config_reload").click().run()
    assert any("Reload broken v1 failed: " in e.value for e in tab(at, "Configuration").error)


# --- the signal log: a server of its own that logs every signal it serves ------------------------


@pytest.fixture(scope="module")
def logged_server(model_repo, plugins, tmp_path_factory):
    repository = ModelRepository(model_repo, plugins.adapters, default_model=MODEL)
    repository.load_all()
    log = tmp_path_factory.mktemp("dashboard-log") / "signals.db"
    runner = _LoopThread()
    # durable: a signal's row is committed before its answer is sent, so the log is complete when the stream ends
    server = runner.run(create_server("127.0.0.1:0", repository, signal_log=log, signal_log_durable=True))
    yield f"127.0.0.1:{server.port}", log
    runner.run(server.stop(1.0))
    runner.close()


def read_log(at: AppTest, path, *, limit: int = 1_000, instrument: str = "") -> AppTest:
    at.text_input(key="log_path").set_value(str(path))
    at.text_input(key="log_instrument").set_value(instrument)
    at.number_input(key="log_limit").set_value(limit)
    at.button(key="log_read").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def log_table(at: AppTest) -> pd.DataFrame:
    return next(d.value for d in tab(at, "Live Inference").dataframe if "served_at" in d.value.columns)


def test_the_live_tab_shows_the_signals_the_server_logged(logged_server, monkeypatch, tmp_path):
    from tickserve.serving.signal_log import query_signals

    address, log = logged_server
    at = make_app(address, monkeypatch)
    at.number_input(key="live_n").set_value(200)
    click(at, "live_start")
    streamed: dl.LiveResult = at.session_state["live_result"]
    assert len(streamed.signals) == 200

    read_log(at, log, limit=150)
    live = tab(at, "Live Inference")
    assert not live.error, [e.value for e in live.error]
    assert any(f"150 newest logged signals from {log}" in s for s in successes(live)), successes(live)
    table = log_table(at)  # newest first
    expected = query_signals(log, limit=150, newest=True)[::-1]  # the server's own reader
    ticks = [(r["instrument"], r["timestamp_ns"]) for r in expected]
    assert list(zip(table["instrument"], table["time"].astype("int64"))) == ticks
    assert table["action"].tolist() == [r["action"] for r in expected]
    # what the server logged is what this dashboard was sent: the last 150 signals of the stream
    sent = streamed.signals.tail(150).iloc[::-1]
    assert table["p_buy"].tolist() == sent["p_buy"].tolist()
    assert table["action"].tolist() == sent["action"].tolist()
    assert (table["time"] == sent["time"].to_numpy()).all() and set(table["model"]) == {MODEL}
    assert "log_served" in charts(live)
    metrics = {m.label: m.value for m in live.metric}
    assert sum(int(metrics[f"Served {a}"].replace(",", "")) for a in ("BUY", "HOLD", "SELL")) == 150

    instrument = streamed.signals["instrument"].iloc[0]
    table = log_table(read_log(at, log, instrument=instrument))
    assert set(table["instrument"]) == {instrument}
    assert len(table) == len(query_signals(log, instrument=instrument, limit=1_000)) > 0

    # a path with no log: an error, and nothing created there (the file is only ever opened read-only)
    read_log(at, tmp_path / "none.db")
    assert any("no signal log at" in e.value for e in tab(at, "Live Inference").error)
    assert not (tmp_path / "none.db").exists()
    (tmp_path / "not-sqlite.db").write_text("just text\n")
    read_log(at, tmp_path / "not-sqlite.db")
    assert any("DatabaseError" in e.value for e in tab(at, "Live Inference").error)


def test_an_unreachable_server_is_reported_not_raised(monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again at once: nothing listens there
    at = make_app(f"127.0.0.1:{port}", monkeypatch)
    assert any("not reachable" in e.value and "UNAVAILABLE" in e.value for e in at.error)
    assert at.button(key="live_start").disabled


# --- the data layer and the report parsing on their own --------------------------------------------


def test_settings_from_env_and_config_file_reach_the_client(tmp_path, monkeypatch):
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.write_text("CA PEM")
    cert.write_text("CERT PEM")
    key.write_text("KEY PEM")
    token_file = tmp_path / "token"
    token_file.write_text("# comment\nsecret-token\n")
    config = tmp_path / "dashboard.toml"
    config.write_text(
        textwrap.dedent(f"""
        [dashboard]
        server = "127.0.0.2:1"
        tls_ca = "{ca}"
        token_file = "{token_file}"
        metrics_url = "http://127.0.0.1:9/metrics"
    """)
    )
    settings = load_settings(
        {
            "TICKSERVE_DASHBOARD_CONFIG": str(config),
            "TICKSERVE_SERVER": "127.0.0.1:5",
            "TICKSERVE_TLS_CERT": str(cert),
            "TICKSERVE_TLS_KEY": str(key),
        }
    )
    assert settings.server == "127.0.0.1:5"  # the environment wins over the file
    assert settings.token == "secret-token" and settings.secure
    assert "secret-token" not in settings.describe() and "TLS (mutual)" in settings.describe()

    seen = {}

    class FakeClient:
        def __init__(self, target, **kwargs):
            seen.update(kwargs, target=target)

    monkeypatch.setattr(dl, "TickserveClient", FakeClient)
    dl.make_client(settings)
    assert seen["target"] == "127.0.0.1:5"
    assert seen["root_certificates"] == b"CA PEM"
    assert seen["certificate_chain"] == b"CERT PEM" and seen["private_key"] == b"KEY PEM"
    assert seen["token"] == "secret-token" and seen["tls"] is True

    assert load_settings({"TICKSERVE_TOKEN": "t"}).client_kwargs()["tls"] is None  # plaintext with a token
    with pytest.raises(ConfigError, match="go together"):
        load_settings({"TICKSERVE_TLS_CERT": str(cert)})
    with pytest.raises(ConfigError, match="nope.pem"):
        load_settings({"TICKSERVE_TLS_CA": str(tmp_path / "nope.pem")})
    assert ServerSettings().with_server("  ").server == "127.0.0.1:50051"


def test_tick_sources_simulator_parquet_and_csv(tmp_path):
    frame = simulate(300, seed=5)
    write_parquet(frame, tmp_path / "ticks.parquet")
    from_parquet = dl.load_frame(dl.TickSource("file", path=str(tmp_path / "ticks.parquet"), limit=100))
    assert len(from_parquet) == 100 and list(from_parquet.instrument) == list(frame.instrument[:100])
    # the same columns as CSV
    import pyarrow.parquet as pq

    pq.read_table(tmp_path / "ticks.parquet").to_pandas().to_csv(tmp_path / "ticks.csv", index=False)
    from_csv = dl.load_frame(dl.TickSource("file", path=str(tmp_path / "ticks.csv")))
    assert [t for t in dl.frame_to_ticks(from_csv)] == [t for t in dl.frame_to_ticks(frame)]
    assert {t.aggressor for t in dl.frame_to_ticks(from_csv)} == {pb.SIDE_UNSPECIFIED, pb.SIDE_BUY, pb.SIDE_SELL}
    # the aggressor column as words (buy / sell / empty, any case), or no such column at all
    table = pd.read_csv(tmp_path / "ticks.csv")
    table["aggressor"] = table["aggressor"].map({1: "BUY", -1: "sell", 0: None})
    table.to_csv(tmp_path / "words.csv", index=False)
    from_words = dl.load_frame(dl.TickSource("file", path=str(tmp_path / "words.csv")))
    assert from_words.aggressor.tolist() == frame.aggressor.tolist()
    table.drop(columns=["aggressor"]).to_csv(tmp_path / "no-side.csv", index=False)
    assert not dl.load_frame(dl.TickSource("file", path=str(tmp_path / "no-side.csv"))).aggressor.any()
    table.loc[7, "aggressor"] = "up"
    table.to_csv(tmp_path / "bad-side.csv", index=False)
    with pytest.raises(ValueError, match="aggressor must be buy, sell or empty, got 'up' \\(data row 8\\)"):
        dl.load_frame(dl.TickSource("file", path=str(tmp_path / "bad-side.csv")))
    assert len(dl.load_frame(dl.TickSource("simulator", n=50, seed=1))) == 50
    with pytest.raises(FileNotFoundError):
        dl.load_frame(dl.TickSource("file", path=str(tmp_path / "missing.parquet")))
    top = dl.book_top(frame)
    assert (top["microprice"] >= frame.bid_price[:, 0]).all() and (top["microprice"] <= frame.ask_price[:, 0]).all()


def test_the_dashboard_reads_the_wide_csv_that_tickserve_simulate_and_the_node_client_use(tmp_path):
    """One CSV layout on every side (issue 15): `bid_px_N`/`bid_qty_N`, as `tickserve import` and
    the Node client name the book columns, written by `tickserve simulate --out x.csv`."""
    frame = simulate(200, seed=4)
    frame.sequence[3], frame.sequence[4] = -1, 2**63 - 1  # no sequence; one a double would round
    frame.bid_price[5, 2:], frame.bid_size[5, 2:] = np.nan, np.nan  # a shallow book: 2 bid levels
    path = write_csv(frame, tmp_path / "ticks.csv")
    header = path.read_text().splitlines()[0].split(",")
    assert header[4:8] == ["bid_px_1", "bid_qty_1", "bid_px_2", "bid_qty_2"] and "bid_price_1" not in header
    read = dl.read_csv(path)
    assert dl.frame_to_ticks(read) == dl.frame_to_ticks(frame)
    assert read.sequence[4] == 2**63 - 1 and read.tick(3).sequence is None and len(read.tick(5).bid_price) == 2
    # the command writes the same file
    command = ["simulate", "--ticks", "200", "--seed", "4", "--out", tmp_path / "c.csv"]
    done = subprocess.run(
        [sys.executable, "-m", "tickserve.cli", *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "wrote 200 ticks" in done.stdout
    assert dl.frame_to_ticks(dl.read_csv(tmp_path / "c.csv")) == dl.frame_to_ticks(simulate(200, seed=4))
    # one column in both spellings is ambiguous: refused, not one of them picked
    table = pd.read_csv(path)
    table["bid_price_1"] = table["bid_px_1"]
    table.to_csv(tmp_path / "both.csv", index=False)
    with pytest.raises(ValueError, match="both.csv: columns bid_price_1 and bid_px_1 are the same book column"):
        dl.read_csv(tmp_path / "both.csv")


def test_a_report_without_the_newer_fields_still_renders():
    report = pb.EvaluationReport(
        model="m",
        model_version="1",
        ticks=10,
        labeled=8,
        accuracy=0.5,
        majority_baseline_accuracy=0.4,
        majority_class="HOLD",
        classes=["SELL", "HOLD", "BUY"],
        confusion_matrix=[1, 0, 0, 0, 4, 1, 0, 1, 1],
        brier_score=0.5,
        brier_score_uncalibrated=0.6,
    )
    assert rf.confusion(report).to_numpy().tolist() == [[1, 0, 0], [0, 4, 1], [0, 1, 1]]
    assert rf.confusion(report, normalize=True).loc["HOLD", "HOLD"] == pytest.approx(0.8)
    assert not rf.trading(report).present
    base = rf.baselines(report)
    assert list(base["name"]) == ["model", "majority class (HOLD)"]
    cal = rf.calibration(report)
    assert cal.reliability is None and list(cal.scores["metric"]) == ["Brier score", "Expected calibration error"]
    assert rf.importance(report).empty and rf.other_fields(report) == []


def _future_report_type():
    """A report type with fields this dashboard was not written for: found and shown all the same."""
    f = descriptor_pb2.FileDescriptorProto(name="future_report.proto", package="future", syntax="proto3")
    D = L = descriptor_pb2.FieldDescriptorProto
    bin_ = f.message_type.add(name="Bin")
    for i, name in enumerate(("mean_confidence", "accuracy", "count"), 1):
        bin_.field.add(name=name, number=i, type=D.TYPE_DOUBLE if i < 3 else D.TYPE_UINT64, label=L.LABEL_OPTIONAL)
    msg = f.message_type.add(name="Report")
    msg.field.add(name="accuracy", number=1, type=D.TYPE_DOUBLE, label=L.LABEL_OPTIONAL)
    msg.field.add(
        name="reliability_bins", number=2, type=D.TYPE_MESSAGE, type_name=".future.Bin", label=L.LABEL_REPEATED
    )
    msg.field.add(name="hit_rate", number=3, type=D.TYPE_DOUBLE, label=L.LABEL_OPTIONAL)
    msg.field.add(name="pnl", number=4, type=D.TYPE_DOUBLE, label=L.LABEL_REPEATED)
    msg.field.add(name="random_baseline_accuracy", number=5, type=D.TYPE_DOUBLE, label=L.LABEL_OPTIONAL)
    msg.field.add(name="something_new", number=6, type=D.TYPE_STRING, label=L.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("future.Report"))


def test_unknown_report_fields_are_found_by_walking_the_descriptor():
    Report = _future_report_type()
    report = Report(
        accuracy=0.6, hit_rate=0.55, pnl=[1.0, -0.5, 2.0], random_baseline_accuracy=0.33, something_new="hello"
    )
    for conf, acc, n in ((0.35, 0.3, 10), (0.55, 0.6, 20), (0.85, 0.8, 5)):
        report.reliability_bins.add(mean_confidence=conf, accuracy=acc, count=n)
    cal = rf.calibration(report)
    assert cal.reliability["confidence"].tolist() == [0.35, 0.55, 0.85]
    assert cal.reliability["count"].tolist() == [10, 20, 5]
    trading = rf.trading(report)
    assert trading.value("hit_rate") == 0.55
    assert trading.pnl["cumulative_pnl"].tolist() == [1.0, 0.5, 2.5]  # a per-trade series is summed up
    base = rf.baselines(report)
    assert base.set_index("name").loc["random", "accuracy"] == pytest.approx(0.33)
    assert [e.path for e in rf.other_fields(report)] == ["something_new"]


def test_the_current_report_fields_from_a_real_evaluate(client):
    run = dl.run_evaluate(client, simulate(1_500, seed=8), model=MODEL, progress_every=500)
    report = run.report
    assert len(run.progress) and run.progress["ticks"].is_monotonic_increasing
    assert run.progress["ticks"].iloc[-1] <= 1_500 and run.progress["fraction"].iloc[-1] <= 1.0
    assert rf.summary(report)["model"] == MODEL
    assert rf.per_class(report)["label"].tolist() == ["SELL", "HOLD", "BUY"]
    assert set(rf.counts(report)) == {"action", "strength", "risk"}
    if rf.has(report, "trading") and report.HasField("trading"):  # the contract has trading metrics
        trading = rf.trading(report)
        assert trading.present and trading.value("hit_rate") is not None
        if len(report.trading.cumulative_pnl):
            assert trading.pnl is not None and "cumulative_pnl_ticks" in trading.pnl_columns
    if rf.has(report, "baselines") and len(report.baselines):
        names = rf.baselines(report)["name"].tolist()
        assert names[0] == "model" and "majority" in names


def test_signal_counts_and_the_prometheus_parser():
    signals = pd.DataFrame(
        {"action": ["BUY", "BUY", "SELL"], "strength": ["WEAK", "STRONG", "WEAK"], "risk": ["HIGH", "HIGH", "LOW"]}
    )
    counts = dl.signal_counts(signals)
    assert counts["action"].to_dict() == {"BUY": 2, "HOLD": 0, "SELL": 1}
    assert counts["strength"].to_dict() == {"WEAK": 2, "MEDIUM": 0, "STRONG": 1}
    samples = dl.parse_prometheus(
        '# HELP x\ntickserve_ticks_total{rpc="StreamSignals",model="m"} 12\ntickserve_ticks_total{rpc="Predict"} 3\n'
        "tickserve_open_streams 1\nother 5\n"
    )
    assert samples.groupby("metric")["value"].sum().to_dict() == {
        "other": 5.0,
        "tickserve_open_streams": 1.0,
        "tickserve_ticks_total": 15.0,
    }


def test_the_dashboard_never_imports_adapters_models_or_the_server():
    """A client of the server: of the core it may import only the simulator and the tick file formats."""
    modules = [
        "server_config",
        "datalayer",
        "report_fields",
        "figures",
        "widgets",
        "tab_live",
        "signal_log",
        "signal_log_view",
        "tab_performance",
        "tab_features",
        "tab_config",
    ]
    code = (
        "import sys, json\n"
        + "".join(f"import tickserve_dashboard.{m}\n" for m in modules)
        + "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tickserve', 'lightgbm', 'xgboost', 'onnxruntime', 'tickserve_lightgbm', 'tickserve_xgboost', "
        "'tickserve_onnx', 'pluggy'))))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKSERVE_")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, check=True
    )
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    allowed = {"tickserve", "tickserve.simulate", "tickserve.core", "tickserve.core.ticks", "tickserve.core.tick_csv"}
    assert set(imported) <= allowed, imported


def test_a_trading_cost_is_sent_only_through_a_client_that_takes_it():
    class OldClient:
        def evaluate(self, ticks, *, model="", version="", progress_every=0, batch_size=1000):
            return iter(())

    assert not dl.supports_cost_ticks(OldClient())
    with pytest.raises(ValueError, match="cost_ticks"):
        dl.run_evaluate(OldClient(), simulate(10, seed=1), cost_ticks=1.0)
    assert dl.run_evaluate(OldClient(), simulate(10, seed=1)).report is None  # no cost: fine

    seen = {}

    class NewClient:
        def evaluate(self, ticks, *, cost_ticks=0.0, **kwargs):
            seen["cost_ticks"] = cost_ticks
            return iter(())

    if "cost_ticks" in pb.EvaluateConfig.DESCRIPTOR.fields_by_name:
        assert dl.supports_cost_ticks(NewClient())
        dl.run_evaluate(NewClient(), simulate(10, seed=1), cost_ticks=1.5)
        assert seen["cost_ticks"] == 1.5
