"""Regression tests for defects found in review: each names the behaviour a user relies on."""

from __future__ import annotations

import numpy as np
import pytest

from tickserve.core.session import Rejection, Scored, SessionLimits, SignalSession
from tickserve.core.ticks import Tick, TickFrame
from tickserve.core.validation import validate_tick
from tickserve.errors import InvalidArgument
from tickserve.features import FeatureConfig, StreamingFeatures, batch_features
from tickserve.models.manifest import check_name
from tickserve.models.repository import ModelRepository, ModelState, version_key
from tickserve.simulate import simulate

from .conftest import MODEL


def _tick(instrument="X", ts=1_704_205_800_000_000_000, bid=99.99, ask=100.01, **kw) -> Tick:
    return Tick(instrument, ts, kw.get("last", 0.0), kw.get("size", 0.0), (bid,), (10.0,), (ask,), (12.0,))


def test_warmed_up_is_per_tick_inside_a_batch(server):
    model = server.repository.get(MODEL)
    frame = simulate(300, seed=4)
    one = frame.take(np.flatnonzero(frame.instrument == "SIMA")[:60])
    results = SignalSession(model).process(list(one.ticks()))
    warmed = [r.warmed_up for r in results]
    assert warmed == [False] * 49 + [True] * 11


@pytest.mark.parametrize(
    "tick, field",
    [
        (_tick(ask=1e306), "ask_price[0]"),
        (_tick(instrument="AAPL\x00"), "instrument"),
        (_tick(ts=2**63 - 1), "timestamp_ns"),
        (_tick(size=1e300, last=100.0), "last_size"),
    ],
    ids=["huge-price", "control-char", "far-future", "huge-size"],
)
def test_ticks_that_would_overflow_features_are_rejected(tick, field):
    with pytest.raises(InvalidArgument) as err:
        validate_tick(tick)
    assert err.value.field == field


def test_batch_groups_instruments_without_truncating_names():
    frame = TickFrame.from_ticks([_tick(instrument="A B", ts=1_704_205_800_000_000_000 + i) for i in range(5)])
    frame.instrument[2] = "A B "  # a different instrument that differs only by a trailing space
    stream = StreamingFeatures(FeatureConfig())
    rows = np.array([stream.update(t) for t in frame.ticks()])
    assert np.array_equal(rows, batch_features(frame, FeatureConfig()))


def test_instrument_limit_is_a_per_tick_rejection_and_the_rest_is_answered(server):
    model = server.repository.get(MODEL)
    session = SignalSession(model, limits=SessionLimits(max_instruments=2))
    results = session.process([_tick("A"), _tick("B"), _tick("C"), _tick("A", ts=1_704_205_800_000_000_001)])
    assert [type(r) for r in results] == [Scored, Scored, Rejection, Scored]
    assert results[2].status.name == "RESOURCE_EXHAUSTED" and "'C'" in results[2].message


def test_odd_version_directories_do_not_stop_the_repository(model_repo, plugins, tmp_path):
    import shutil

    root = tmp_path / "models"
    shutil.copytree(model_repo / MODEL / "1", root / MODEL / "1")
    (root / MODEL / "²").mkdir()
    (root / MODEL / "1\n").mkdir()
    repo = ModelRepository(root, plugins.adapters)
    repo.load_all()
    states = {e.version: e.state for e in repo.entries()}
    assert states["1"] is ModelState.READY
    assert states["²"] is ModelState.FAILED and states["1\n"] is ModelState.FAILED
    assert version_key("²")[0] == 1
    with pytest.raises(InvalidArgument):
        check_name("version", "1\n")


def test_a_model_that_predicts_the_wrong_shape_is_failed_not_ready(model_repo, plugins, tmp_path):
    import json
    import shutil

    import lightgbm as lgb

    root = tmp_path / "models"
    target = root / "binary" / "1"
    shutil.copytree(model_repo / MODEL / "1", target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["name"] = "binary"
    manifest.pop("model_sha256")  # the file is replaced below on purpose
    (target / "manifest.json").write_text(json.dumps(manifest))
    n = len(manifest["feature_names"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, n))
    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(x, (x[:, 0] > 0).astype(int)), 3)
    booster.save_model(str(target / "model.txt"))
    repo = ModelRepository(root, plugins.adapters)
    repo.load_all()
    entry = repo.entry("binary")
    assert entry.state is ModelState.FAILED and "classes" in entry.reason
    assert str(root) not in entry.reason  # no server paths in what clients see


def test_evaluate_names_the_tick_by_its_index_in_the_whole_stream(client):
    import grpc

    from tickserve.serving.converters import frame_to_protos

    ticks = frame_to_protos(simulate(10, seed=1))
    ticks[4].ask_size[0] = -1.0
    with pytest.raises(grpc.RpcError) as err:
        list(client.evaluate(ticks, model=MODEL, batch_size=3))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("ticks[4].ask_size[0]")


def test_evaluate_with_only_a_config_is_invalid(client):
    import grpc

    with pytest.raises(grpc.RpcError) as err:
        list(client.evaluate([], model=MODEL))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "before any tick" in err.value.details()


def test_a_failing_calendar_plugin_is_reported_and_passed_over():
    from tickserve.plugin import hookimpl
    from tickserve.plugins.manager import PluginInfo, load_plugins

    class Raises:
        @hookimpl
        def tickserve_session_calendar(self, name):
            raise RuntimeError("calendar service down")

    class Junk:
        @hookimpl
        def tickserve_session_calendar(self, name):
            return "not a calendar"

    plugins = load_plugins()
    for name, plugin in (("raises", Raises()), ("junk", Junk())):
        plugins.manager.register(plugin, name=name)
        plugins.infos.append(PluginInfo(name, "test", "0", "loaded"))
    assert plugins.calendar("us-equities").timezone == "America/New_York"
    status = {i.name: (i.status, i.reason) for i in plugins.infos}
    assert status["raises"][0] == "failed" and "calendar service down" in status["raises"][1]
    assert status["junk"][0] == "failed" and "not a SessionCalendar" in status["junk"][1]


@pytest.mark.parametrize("checksum", [True, False], ids=["with-sha256", "legacy-manifest"])
def test_a_truncated_model_file_is_failed_and_does_not_crash_the_server(model_repo, plugins, tmp_path, checksum):
    """LightGBM's own parser segfaults on a truncated file: it must never see one."""
    import json
    import shutil

    root = tmp_path / "models"
    target = root / MODEL / "1"
    shutil.copytree(model_repo / MODEL / "1", target)
    if not checksum:
        manifest = json.loads((target / "manifest.json").read_text())
        manifest.pop("model_sha256")
        (target / "manifest.json").write_text(json.dumps(manifest))
    text = (target / "model.txt").read_bytes()
    (target / "model.txt").write_bytes(text[: len(text) // 3])
    repo = ModelRepository(root, plugins.adapters)
    repo.load_all()
    entry = repo.entry(MODEL, "1")
    assert entry.state is ModelState.FAILED
    assert ("sha256" in entry.reason) if checksum else ("LightGBM" in entry.reason)
