"""SignalService against a real server on a loopback port, through a real channel."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tickserve.core.signals import decide, decide_many
from tickserve.evaluation.labels import CLASSES, make_labels
from tickserve.evaluation.metrics import ClassificationMetrics
from tickserve.features import FEATURE_INDEX, batch_features
from tickserve.serving.converters import frame_to_protos
from tickserve.simulate import simulate
from tickserve_client import make_tick
from tickserve_proto.v1 import tickserve_pb2 as pb
from tickserve_proto.v1 import tickserve_pb2_grpc as pb_grpc

from .conftest import MODEL

ACTION_NAME = {pb.ACTION_BUY: "BUY", pb.ACTION_HOLD: "HOLD", pb.ACTION_SELL: "SELL"}


def offline(server, frame, version=""):
    """What the served model must answer: batch features -> the adapter -> calibration -> the signal rules."""
    model = server.repository.get(MODEL, version)
    full = batch_features(frame, model.manifest.feature_config)
    x = full[:, model.feature_index]
    _, probs = model.predict(x)
    rules = model.manifest.signal_rules
    spread = full[:, FEATURE_INDEX["spread_ticks"]]
    signals = [decide(*map(float, probs[i]), float(spread[i]), rules) for i in range(len(frame))]
    return model, x, probs, signals


def signals_of(results):
    out = []
    for r in results:
        assert r.WhichOneof("result") == "signal", r
        out.append(r.signal)
    return out


@pytest.fixture(scope="module")
def frame():
    return simulate(1_500, seed=99)  # three instruments, interleaved


def test_stream_answers_every_tick_once_in_order(client, frame):
    ticks = frame_to_protos(frame)
    signals = signals_of(client.stream_signals(ticks, model=MODEL))
    assert len(signals) == len(ticks)
    assert len({t.instrument for t in ticks}) == 3
    for tick, s in zip(ticks, signals):
        assert (s.instrument, s.timestamp_ns, s.sequence) == (tick.instrument, tick.timestamp_ns, tick.sequence)
        assert s.p_buy + s.p_hold + s.p_sell == pytest.approx(1.0, abs=1e-12)
        assert s.edge_score == s.p_buy - s.p_sell
        assert s.confidence == max(s.p_buy, s.p_hold, s.p_sell)
        assert s.model == MODEL and s.model_version == "2"  # newest version by default
    assert {ACTION_NAME[s.action] for s in signals} >= {"BUY", "SELL"}


@pytest.mark.parametrize("batch_size", [1, 100])
def test_streamed_signals_equal_offline_predictions(server, client, frame, batch_size):
    model, x, probs, expected = offline(server, frame)
    results = client.stream_signals(frame_to_protos(frame), model=MODEL, batch_size=batch_size, return_features=True)
    signals = signals_of(results)
    assert len(signals) == len(expected)
    for i, (s, e) in enumerate(zip(signals, expected)):
        assert list(s.features) == x[i].tolist(), f"features differ at tick {i}"
        assert (s.p_sell, s.p_hold, s.p_buy) == tuple(probs[i]), f"probabilities differ at tick {i}"
        assert ACTION_NAME[s.action] == e.action
        assert pb.Strength.Name(s.strength) == f"STRENGTH_{e.strength}"
        assert pb.Urgency.Name(s.urgency) == f"URGENCY_{e.urgency}"
        assert pb.Risk.Name(s.risk) == f"RISK_{e.risk}"


def test_feature_state_lives_as_long_as_the_stream(client, frame):
    """Splitting the ticks over two streams restarts the warm-up; one stream keeps it."""
    ticks = frame_to_protos(frame)[:300]
    whole = signals_of(client.stream_signals(ticks, model=MODEL))
    second_half = signals_of(client.stream_signals(ticks[150:], model=MODEL))
    assert [s.warmed_up for s in whole[:3]] == [False] * 3
    assert whole[-1].warmed_up
    assert any(a.p_buy != b.p_buy for a, b in zip(whole[150:], second_half))


def test_predict_is_a_self_contained_batch(server, client, frame):
    sub = frame.take(slice(0, 400))
    _, _, probs, expected = offline(server, sub, version="1")
    signals = client.predict(frame_to_protos(sub), model=MODEL, version="1")
    assert len(signals) == 400
    assert all(s.model_version == "1" for s in signals)
    assert [(s.p_sell, s.p_hold, s.p_buy) for s in signals] == [tuple(p) for p in probs]
    assert [ACTION_NAME[s.action] for s in signals] == [e.action for e in expected]


def test_evaluate_streams_progress_then_a_report_matching_offline(server, client):
    frame = simulate(3_000, seed=5)
    responses = list(client.evaluate(frame_to_protos(frame), model=MODEL, progress_every=1_000, batch_size=250))
    kinds = [r.WhichOneof("payload") for r in responses]
    assert kinds == ["progress"] * 3 + ["report"]
    assert [r.progress.ticks for r in responses[:3]] == [1_000, 2_000, 3_000]
    report = responses[-1].report

    model, _, probs, _ = offline(server, frame)
    y, _ = make_labels(frame, model.manifest.label_config, model.manifest.feature_config)
    labeled = y >= 0
    expected = ClassificationMetrics()
    full = batch_features(frame, model.manifest.feature_config)
    actions = decide_many(probs, full[:, FEATURE_INDEX["spread_ticks"]], model.manifest.signal_rules).action
    expected.add_batch(y[labeled], actions[labeled], probs[labeled])

    assert report.ticks == 3_000
    horizon = model.manifest.label_config.horizon_ticks
    assert report.labeled == 3_000 - 3 * horizon == expected.count
    assert list(report.classes) == list(CLASSES)
    assert list(report.confusion_matrix) == expected.confusion.ravel().tolist()
    assert report.accuracy == pytest.approx(expected.accuracy, abs=1e-12)
    assert report.log_loss == pytest.approx(expected.log_loss, rel=1e-9)
    assert report.macro_f1 == pytest.approx(expected.macro_f1, abs=1e-12)
    assert [c.support for c in report.per_class] == expected.confusion.sum(axis=1).tolist()
    assert sum(report.action_counts.values()) == 3_000
    assert sum(report.strength_counts.values()) == sum(report.risk_counts.values()) == 3_000
    majority = expected.confusion.sum(axis=1).max() / expected.count
    assert report.majority_baseline_accuracy == pytest.approx(majority)
    from tickserve.core.calibration import brier_score, expected_calibration_error

    raw = model.adapter.predict_proba(
        x_model := batch_features(frame, model.manifest.feature_config)[:, model.feature_index]
    )
    assert x_model.shape[0] == 3_000
    assert report.calibration_temperature == model.calibrator.temperature
    assert report.brier_score == pytest.approx(brier_score(probs[labeled], y[labeled]), rel=1e-9)
    assert report.brier_score_uncalibrated == pytest.approx(brier_score(raw[labeled], y[labeled]), rel=1e-9)
    assert report.expected_calibration_error == pytest.approx(
        expected_calibration_error(probs[labeled], y[labeled]), rel=1e-9
    )
    assert report.expected_calibration_error_uncalibrated == pytest.approx(
        expected_calibration_error(raw[labeled], y[labeled]), rel=1e-9
    )
    importance = [f.importance for f in report.feature_importance]
    assert len(importance) == len(model.manifest.feature_names) and importance == sorted(importance, reverse=True)
    # shares of the model's importance, so models of different adapters compare
    assert sum(importance) == pytest.approx(1.0) and min(importance) >= 0


def test_list_and_get_model(client):
    listing = client.list_models()
    states = {(m.name, m.version): pb.ModelState.Name(m.state) for m in listing.models}
    assert states == {
        (MODEL, "1"): "MODEL_STATE_READY",
        (MODEL, "2"): "MODEL_STATE_READY",
        ("broken", "1"): "MODEL_STATE_FAILED",
    }
    assert listing.default_model == MODEL
    info = client.get_model(MODEL)
    assert info.version == "2" and info.adapter == "lightgbm"
    assert "imbalance_l1" in info.feature_names and "microprice" not in info.feature_names
    assert list(info.classes) == ["SELL", "HOLD", "BUY"]
    # taker labels with the horizon chosen from the training ticks (server/tickserve/training/label_choice.py)
    assert info.label_config.mode == "taker" and info.label_config.horizon_ticks in (5, 10, 20, 50, 100)
    assert info.training_spans.test_start_ns > info.training_spans.valid_start_ns > info.training_spans.train_start_ns
    assert len(info.training_spans.sample_timestamps_ns) == 32 and info.training_notes
    assert info.parameters["num_leaves"] == "127" and info.parameters["objective"] == '"multiclass"'
    assert 0 < info.metrics["valid_accuracy"] <= 1
    assert info.signal_rules["strong_edge"] == 0.30
    assert len(info.data_fingerprint) == 64
    assert client.get_model(MODEL, "1").version == "1"


def test_corrupt_model_is_failed_with_a_reason_and_others_serve(client, frame):
    broken = client.get_model("broken")
    assert broken.state == pb.MODEL_STATE_FAILED
    assert "model.txt" in broken.state_reason
    with pytest.raises(grpc.RpcError) as err:
        list(client.stream_signals(frame_to_protos(frame)[:5], model="broken"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "broken" in err.value.details() and "FAILED" in err.value.details()
    assert len(client.predict(frame_to_protos(frame)[:5], model=MODEL)) == 5


@pytest.mark.parametrize(
    "call",
    [
        lambda c, t: list(c.stream_signals(t, model="no-such-model")),
        lambda c, t: c.predict(t, model="no-such-model"),
        lambda c, t: list(c.evaluate(t, model="no-such-model")),
        lambda c, t: c.get_model("no-such-model"),
    ],
    ids=["StreamSignals", "Predict", "Evaluate", "GetModel"],
)
def test_unknown_model_is_not_found(client, frame, call):
    with pytest.raises(grpc.RpcError) as err:
        call(client, frame_to_protos(frame)[:3])
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-model" in err.value.details()


def test_unknown_version_is_not_found_and_lists_versions(client):
    with pytest.raises(grpc.RpcError) as err:
        client.get_model(MODEL, "7")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'7'" in err.value.details() and "1, 2" in err.value.details()


def test_path_like_model_name_is_invalid(client):
    with pytest.raises(grpc.RpcError) as err:
        client.get_model("../etc")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'../etc'" in err.value.details()


def _bad_tick(frame):
    good = frame_to_protos(frame)[1]
    bad = pb.Tick()
    bad.CopyFrom(good)
    bad.bid_price[0] = float("nan")
    return bad


def test_malformed_tick_in_predict_is_invalid_argument_naming_the_field(client, frame):
    ticks = frame_to_protos(frame)[:3]
    ticks[1] = _bad_tick(frame)
    with pytest.raises(grpc.RpcError) as err:
        client.predict(ticks, model=MODEL)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ticks[1].bid_price[0]" in err.value.details() and "nan" in err.value.details()


def test_malformed_tick_in_a_stream_gets_its_own_error_and_the_stream_goes_on(client, frame):
    ticks = frame_to_protos(frame)[:200]
    clean = signals_of(client.stream_signals(ticks, model=MODEL))
    with_bad = ticks[:100] + [_bad_tick(frame)] + ticks[100:]
    results = list(client.stream_signals(with_bad, model=MODEL))
    assert len(results) == 201
    error = results[100].error
    assert results[100].WhichOneof("result") == "error"
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert error.field == "bid_price[0]" and "nan" in error.message
    # the bad tick did not touch the feature state: every later signal is as without it
    assert signals_of(results[:100] + results[101:]) == clean


def test_config_after_the_first_message_is_invalid(client, channel, frame):
    tick = frame_to_protos(frame)[0]
    requests = [
        pb.StreamSignalsRequest(tick=tick),
        pb.StreamSignalsRequest(config=pb.StreamConfig(model=MODEL)),
    ]
    with pytest.raises(grpc.RpcError) as err:
        list(pb_grpc.SignalServiceStub(channel).StreamSignals(iter(requests)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config" in err.value.details()


def test_oversized_batch_is_resource_exhausted(client, frame):
    one = frame_to_protos(frame)[0]
    with pytest.raises(grpc.RpcError) as err:
        client.predict([one] * 10_001, model=MODEL)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "10001" in err.value.details()


def test_timestamp_going_back_is_rejected_per_tick(client):
    bids, asks = [(99.99, 10.0)], [(100.01, 12.0)]
    ticks = [
        make_tick("X", 2_000, bids, asks, sequence=0),
        make_tick("X", 1_000, bids, asks, sequence=1),
        make_tick("X", 3_000, bids, asks, sequence=2),
    ]
    results = list(client.stream_signals(ticks, model=MODEL))
    assert [r.WhichOneof("result") for r in results] == ["signal", "error", "signal"]
    assert results[1].error.field == "timestamp_ns" and "1000" in results[1].error.message
    assert results[1].error.sequence == 1


def test_health_checking(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "tickserve.v1.SignalService"):
        response = stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as err:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # List, which reflection advertises, answers every service's status (it was UNIMPLEMENTED)
    listed = stub.List(health_pb2.HealthListRequest(), timeout=10).statuses
    served = {"", "tickserve.v1.SignalService", "tickserve.v1.ModelRepositoryService", "inference.GRPCInferenceService"}
    assert served <= set(listed)
    assert all(listed[name].status == health_pb2.HealthCheckResponse.SERVING for name in served)


def test_reflection_lists_and_describes_the_service(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="tickserve.v1.SignalService"),
    ]
    listed, described = list(stub.ServerReflectionInfo(iter(requests)))
    names = {s.name for s in listed.list_services_response.service}
    assert {"tickserve.v1.SignalService", "grpc.health.v1.Health"} <= names
    from google.protobuf import descriptor_pb2

    files = [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in described.file_descriptor_response.file_descriptor_proto
    ]
    methods = {m.name for f in files for s in f.service for m in s.method}
    assert {"StreamSignals", "Predict", "Evaluate", "ListModels", "GetModel"} <= methods


def test_streams_run_concurrently(server, frame):
    """Several streams at once each get their own ordered answers."""
    import concurrent.futures

    from tickserve_client import TickserveClient

    ticks = frame_to_protos(frame)[:300]

    def run(_):
        with TickserveClient(server.address, timeout=60) as c:
            return [s.p_buy for s in signals_of(c.stream_signals(ticks, model=MODEL, batch_size=7))]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(run, range(4)))
    assert all(r == runs[0] for r in runs) and len(runs[0]) == 300
