"""Model repository lifecycle and ensembles against a real server whose repository we change."""

from __future__ import annotations

import shutil
import threading
import time

import grpc
import numpy as np
import pytest

from tickserve.core.session import SignalSession
from tickserve.features import batch_features
from tickserve.models.ensemble import ensemble_manifest
from tickserve.models.manifest import ModelManifest
from tickserve.models.repository import ModelRepository
from tickserve.serving.app import create_server
from tickserve.serving.converters import frame_to_protos
from tickserve.simulate import simulate
from tickserve_client import TickserveClient
from tickserve_proto.v1 import tickserve_pb2 as pb

from .conftest import MODEL, _LoopThread

STATE = {v: pb.ModelState.Name(v).removeprefix("MODEL_STATE_") for v in pb.ModelState.values()}


@pytest.fixture(scope="module")
def live(model_repo, plugins, tmp_path_factory):
    """A server over a repository of our own: signal-lgbm/1 and /2 on disk, only version 1 present at start."""
    root = tmp_path_factory.mktemp("live-models")
    shutil.copytree(model_repo / MODEL / "1", root / MODEL / "1")
    repository = ModelRepository(root, plugins.adapters)
    repository.load_all()
    runner = _LoopThread()
    server = runner.run(create_server("127.0.0.1:0", repository))
    with TickserveClient(f"127.0.0.1:{server.port}", timeout=60) as client:
        yield root, repository, client, model_repo
    runner.run(server.stop(1.0))
    runner.close()


def test_index_load_pin_and_unload(live):
    root, _, client, source = live
    shutil.copytree(source / MODEL / "2", root / MODEL / "2")
    index = {(m.name, m.version): STATE[m.state] for m in client.repository_index()}
    assert index == {(MODEL, "1"): "READY", (MODEL, "2"): "UNLOADED"}
    assert client.get_model(MODEL).version == "1"

    loaded = client.load_model(MODEL, "2")
    assert [(m.version, STATE[m.state]) for m in loaded] == [("2", "READY")]
    assert client.get_model(MODEL).version == "2"  # the newest READY version is the default
    ticks = frame_to_protos(simulate(60, seed=1))
    assert {s.model_version for s in client.predict(ticks, model=MODEL)} == {"2"}
    assert {s.model_version for s in client.predict(ticks, model=MODEL, version="1")} == {"1"}

    unloaded = client.unload_model(MODEL, "2")
    assert [(m.version, STATE[m.state]) for m in unloaded] == [("2", "UNLOADED")]
    assert {s.model_version for s in client.predict(ticks, model=MODEL)} == {"1"}
    with pytest.raises(grpc.RpcError) as err:
        client.predict(ticks, model=MODEL, version="2")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "UNLOADED" in err.value.details()

    for call in (
        lambda: client.load_model("nope"),
        lambda: client.unload_model("nope"),
        lambda: client.reload_model("nope"),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        client.load_model("../models")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_failed_reload_keeps_the_serving_version(live):
    root, _, client, _ = live
    model_file = root / MODEL / "1" / "model.txt"
    good = model_file.read_bytes()
    ticks = frame_to_protos(simulate(60, seed=2))
    before = [s.p_buy for s in client.predict(ticks, model=MODEL, version="1")]
    try:
        model_file.write_bytes(good[: len(good) // 3])  # truncated on disk
        with pytest.raises(grpc.RpcError) as err:
            client.reload_model(MODEL, "1")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "keeps serving" in err.value.details()
        assert [s.p_buy for s in client.predict(ticks, model=MODEL, version="1")] == before
        info = client.get_model(MODEL, "1")
        assert STATE[info.state] == "READY" and "reload failed" in info.state_reason
    finally:
        model_file.write_bytes(good)
    assert STATE[client.reload_model(MODEL, "1")[0].state] == "READY"
    assert client.get_model(MODEL, "1").state_reason == ""


def test_no_request_fails_while_reloading_under_load(live):
    """Predict and StreamSignals from several threads while the model is reloaded again and again."""
    _, _, client, _ = live
    client.load_model(MODEL)  # both versions
    ticks = frame_to_protos(simulate(400, seed=3))
    stop = threading.Event()
    errors: list[BaseException] = []
    answered = [0, 0]

    def predict_loop():
        while not stop.is_set():
            try:
                signals = client.predict(ticks[:50], model=MODEL)
                assert len(signals) == 50
                answered[0] += 50
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    def stream_loop():
        while not stop.is_set():
            try:
                results = list(client.stream_signals(ticks, model=MODEL, batch_size=5))
                versions = {r.signal.model_version for r in results}
                assert len(results) == len(ticks) and len(versions) == 1, versions  # one version per stream
                answered[1] += len(results)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=f) for f in (predict_loop, predict_loop, stream_loop, stream_loop)]
    for t in threads:
        t.start()
    reloads = 0
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        assert all(STATE[m.state] == "READY" for m in client.reload_model(MODEL))
        reloads += 1
    stop.set()
    for t in threads:
        t.join(60)
    assert errors == []
    assert reloads >= 3 and answered[0] > 0 and answered[1] > 0


def test_ensemble_soft_votes_its_members_over_one_feature_pass(live, plugins):
    root, repository, client, source = live
    client.load_model(MODEL)
    members = [(ModelManifest.load(root / MODEL / v), w) for v, w in (("1", 1.0), ("2", 3.0))]
    target = root / "combo" / "1"
    target.mkdir(parents=True)
    ensemble_manifest("combo", "1", members).save(target)
    info = client.load_model("combo")[0]
    assert STATE[info.state] == "READY", info.state_reason
    assert info.adapter == "ensemble"

    frame = simulate(500, seed=8)
    signals = [r.signal for r in client.stream_signals(frame_to_protos(frame), model="combo", batch_size=50)]
    full = batch_features(frame, members[0][0].feature_config)
    expected = 0
    for version, weight in (("1", 1.0), ("2", 3.0)):
        member = repository.get(MODEL, version)
        expected = expected + weight * member.predict(full[:, member.feature_index])[1]
    expected = expected / 4.0
    got = np.array([[s.p_sell, s.p_hold, s.p_buy] for s in signals])
    assert np.allclose(got, expected, rtol=0, atol=1e-12)

    # the feature stage runs once per tick for the whole ensemble
    session = SignalSession(repository.get("combo"))
    computed = 0
    update, update_many = session.features.update, session.features.update_many

    def counting(tick):
        nonlocal computed
        computed += 1
        return update(tick)

    def counting_many(ticks):
        nonlocal computed
        computed += len(ticks)
        return update_many(ticks)

    session.features.update, session.features.update_many = counting, counting_many
    for size in (100, 3):  # the vectorised path and the tick-by-tick one
        session.process(
            list(frame.take(slice(0, size)).ticks()) if size == 100 else list(frame.take(slice(100, 103)).ticks())
        )
    assert computed == 103


def test_an_ensemble_with_a_missing_member_is_failed(live):
    root, _, client, _ = live
    member = ModelManifest.load(root / MODEL / "1")
    member.version = "9"  # not in the repository
    target = root / "orphan" / "1"
    target.mkdir(parents=True)
    ensemble_manifest("orphan", "1", [(member, 1.0)]).save(target)
    info = client.load_model("orphan")[0]
    assert STATE[info.state] == "FAILED" and f"{MODEL}/9" in info.state_reason


def test_unloading_a_member_of_a_ready_ensemble_is_refused(live):
    _, _, client, _ = live
    assert STATE[client.get_model("combo").state] == "READY"
    with pytest.raises(grpc.RpcError) as err:
        client.unload_model(MODEL, "1")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "combo/1" in err.value.details()
    assert STATE[client.get_model(MODEL, "1").state] == "READY"


def test_load_of_a_serving_version_with_broken_files_keeps_it_serving(live):
    root, _, client, _ = live
    model_file = root / MODEL / "2" / "model.txt"
    good = model_file.read_bytes()
    try:
        model_file.write_bytes(good[:100])
        info = client.load_model(MODEL, "2")[0]
        assert STATE[info.state] == "READY" and "keeps serving" in info.state_reason
        assert client.predict(frame_to_protos(simulate(5, seed=1)), model=MODEL, version="2")
    finally:
        model_file.write_bytes(good)


def test_reload_that_fails_for_a_failed_version_is_an_error(live):
    root, _, client, _ = live
    bad = root / "bad" / "1"
    shutil.copytree(root / MODEL / "1", bad)
    (bad / "manifest.json").write_text(
        (bad / "manifest.json").read_text().replace(f'"name": "{MODEL}"', '"name": "bad"')
    )
    (bad / "model.txt").write_text("garbage")
    assert STATE[client.load_model("bad")[0].state] == "FAILED"
    with pytest.raises(grpc.RpcError) as err:
        client.reload_model("bad")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "bad/1" in err.value.details()


def test_out_of_range_temperature_leaves_the_model_failed(live):
    import json

    root, _, client, _ = live
    target = root / "hot" / "1"
    shutil.copytree(root / MODEL / "1", target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["name"] = "hot"
    manifest["calibration"] = {"method": "temperature", "temperature": 1e-320}
    (target / "manifest.json").write_text(json.dumps(manifest))
    info = client.load_model("hot")[0]
    assert STATE[info.state] == "FAILED" and "temperature" in info.state_reason
