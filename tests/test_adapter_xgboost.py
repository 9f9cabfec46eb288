"""The XGBoost adapter plugin (plugins/xgboost): registration, training, exact predictions,
thread safety, load failures and the served path through a real server."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from tickserve.features import FEATURE_INDEX, FeatureConfig, batch_features
from tickserve.models.manifest import ModelManifest
from tickserve.models.repository import ModelRepository, ModelState
from tickserve.plugins.manager import load_plugins
from tickserve.serving.app import create_server
from tickserve.serving.converters import frame_to_protos
from tickserve.simulate import simulate
from tickserve.training import train_model
from tickserve_client import TickserveClient

from .conftest import _LoopThread

tickserve_xgboost = pytest.importorskip("tickserve_xgboost")
XGBoostAdapter = tickserve_xgboost.XGBoostAdapter

NAME = "xgb"
# One training thread: on a shared 2-core box OpenMP barriers waiting for a descheduled
# thread made the same fit take 0.2 s or 6 s; serving is unaffected (nthread is not saved).
PARAMS = {"num_boost_round": 30, "early_stopping_rounds": 10, "eta": 0.1, "nthread": 1}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, plugins) -> tuple[Path, ModelManifest]:
    root = tmp_path_factory.mktemp("xgbmodels")
    return train_model(
        simulate(12_000, seed=21), adapter=plugins.adapters["xgboost"], models_dir=root, name=NAME, params=PARAMS
    )


@pytest.fixture(scope="module")
def model(trained) -> XGBoostAdapter:
    path, manifest = trained
    return XGBoostAdapter.load(path, manifest)


@pytest.fixture(scope="module")
def x(trained) -> np.ndarray:
    _, manifest = trained
    full = batch_features(simulate(1_500, seed=77), FeatureConfig())
    return full[:, [FEATURE_INDEX[f] for f in manifest.feature_names]]


@pytest.fixture(scope="module")
def native(trained, x) -> np.ndarray:
    """The booster's own answer, through its classic DMatrix path."""
    path, manifest = trained
    booster = xgb.Booster(model_file=str(path / "model.ubj"))
    return booster.predict(xgb.DMatrix(x, feature_names=manifest.feature_names))


def test_registered_through_the_entry_point_group():
    plugins = load_plugins()
    assert plugins.adapters["xgboost"] is XGBoostAdapter
    info = next(i for i in plugins.infos if i.name == "xgboost")
    assert (info.distribution, info.status, info.adapters) == ("tickserve-xgboost", "loaded", ["xgboost"])


def test_training_writes_a_native_booster_and_a_manifest(trained):
    path, manifest = trained
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "model.ubj"]  # no pickle
    assert ModelManifest.load(path).to_dict() == manifest.to_dict()
    assert (manifest.adapter, manifest.model_file) == ("xgboost", "model.ubj")
    params = manifest.parameters
    assert params["objective"] == "multi:softprob" and params["eta"] == 0.1  # user params override the seed's
    # serving is not held to training's one thread: big batches run on every core, named (not 0,
    # which would follow a worker thread's OpenMP limit set by another adapter's thread rule)
    assert json.loads(XGBoostAdapter.load(path, manifest).booster.save_config())["learner"]["generic_param"][
        "nthread"
    ] == str(tickserve_xgboost.CORES)
    assert (params["num_boost_round"], params["early_stopping_rounds"]) == (30, 10)
    best = manifest.metrics["best_iteration"]
    assert 1 <= best <= 30
    booster = xgb.Booster(model_file=str(path / "model.ubj"))
    assert booster.num_boosted_rounds() == best  # saved truncated to the best iteration
    # the action weight is tuned for macro-F1, so compare that: the model beats always-HOLD
    majority = manifest.metrics["valid_majority_baseline_accuracy"]
    assert manifest.metrics["valid_macro_f1"] > 2 * majority / (majority + 1) / 3


def test_predictions_equal_the_native_booster(model, x, native):
    batch = model.predict_proba(x)  # 1,500 rows: the multi-threaded booster
    assert batch.shape == (len(x), 3) and batch.dtype == np.float64
    # Renormalising the float32 softmax in float64 moves values by ~1e-8 (measured ~3e-8).
    assert np.abs(batch - native).max() < 1e-6
    np.testing.assert_allclose(batch.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    for i in range(0, len(x), 97):  # single rows: the one-thread booster, bit-identical to the batch
        row = model.predict_proba(x[i : i + 1])
        assert row.shape == (1, 3)
        assert np.array_equal(row[0], batch[i])
    assert np.array_equal(model.predict_proba(x[:100]), batch[:100])


def test_importance_and_metadata(model, trained):
    _, manifest = trained
    importance = model.feature_importance()
    assert list(importance) == manifest.feature_names
    assert all(v >= 0 for v in importance.values()) and max(importance.values()) > 0
    meta = model.metadata()
    assert meta["xgboost_version"] == xgb.__version__
    assert meta["boosted_rounds"] == str(int(manifest.metrics["best_iteration"]))


def test_concurrent_predictions_from_four_threads(model, x):
    expected = model.predict_proba(x)

    def work(seed: int) -> bool:
        rng = np.random.default_rng(seed)
        for _ in range(40):
            if rng.random() < 0.2:
                ok = np.array_equal(model.predict_proba(x), expected)
            else:
                i = int(rng.integers(len(x)))
                ok = np.array_equal(model.predict_proba(x[i : i + 1])[0], expected[i])
            if not ok:
                return False
        return True

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(4)))


def test_json_models_load_too(trained, model, x, tmp_path):
    path, manifest = trained
    xgb.Booster(model_file=str(path / "model.ubj")).save_model(str(tmp_path / "model.json"))
    loaded = XGBoostAdapter.load(tmp_path, dataclasses.replace(manifest, model_file="model.json"))
    assert np.array_equal(loaded.predict_proba(x), model.predict_proba(x))


def _tiny_booster(params: dict, n_features: int, classes: int = 3) -> xgb.Booster:
    rng = np.random.default_rng(0)
    data = xgb.DMatrix(rng.normal(size=(300, n_features)), rng.integers(0, classes, 300))
    return xgb.train({"num_class": classes, "nthread": 1, **params}, data, num_boost_round=2)


@pytest.mark.parametrize(
    ("params", "n_features", "classes", "message"),
    [
        ({"objective": "multi:softmax"}, None, 3, "objective is multi:softmax"),
        ({"objective": "multi:softprob"}, None, 4, "with 4 classes"),
        ({"objective": "multi:softprob"}, 5, 3, "booster has 5 features"),
    ],
)
def test_load_rejects_boosters_that_do_not_fit(trained, tmp_path, params, n_features, classes, message):
    _, manifest = trained
    _tiny_booster(params, n_features or len(manifest.feature_names), classes).save_model(str(tmp_path / "model.ubj"))
    with pytest.raises(ValueError, match=message):
        XGBoostAdapter.load(tmp_path, manifest)


def test_load_rejects_features_in_another_order(trained, tmp_path):
    path, manifest = trained
    booster = xgb.Booster(model_file=str(path / "model.ubj"))
    booster.feature_names = list(reversed(manifest.feature_names))
    booster.save_model(str(tmp_path / "model.ubj"))
    with pytest.raises(ValueError, match="features differ from the manifest's feature_names: position"):
        XGBoostAdapter.load(tmp_path, manifest)


def test_load_rejects_non_native_formats(trained, tmp_path):
    _, manifest = trained
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(ValueError, match="native .json or .ubj"):
        XGBoostAdapter.load(tmp_path, dataclasses.replace(manifest, model_file="model.pkl"))


@pytest.fixture(scope="module")
def repository(trained, plugins) -> ModelRepository:
    """models/xgb/1 (good) and models/broken/1 (a corrupt model.ubj)."""
    path, _ = trained
    root = path.parent.parent
    broken = root / "broken" / "1"
    shutil.copytree(path, broken)
    corrupt = b"this is not an XGBoost model\n"
    (broken / "model.ubj").write_bytes(corrupt)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["name"] = "broken"
    if "model_sha256" in manifest:  # let the file reach the adapter rather than fail the checksum
        manifest["model_sha256"] = hashlib.sha256(corrupt).hexdigest()
    (broken / "manifest.json").write_text(json.dumps(manifest))
    repo = ModelRepository(root, plugins.adapters, default_model=NAME)
    repo.load_all()
    return repo


def test_corrupt_model_is_failed_and_the_good_one_ready(repository):
    states = {(e.name, e.version): e for e in repository.entries()}
    assert states[(NAME, "1")].state is ModelState.READY
    broken = states[("broken", "1")]
    assert broken.state is ModelState.FAILED
    assert "xgboost adapter could not load model.ubj" in broken.reason
    assert "Invalid model format" in broken.reason and "c_api.cc" not in broken.reason, broken.reason
    assert isinstance(repository.get(NAME).adapter, XGBoostAdapter)


def test_served_stream_equals_offline_predictions(repository):
    frame = simulate(600, seed=99)
    model = repository.get(NAME)  # offline: batch features -> the adapter -> calibration, as in test_server
    raw, probs = model.predict(batch_features(frame, model.manifest.feature_config)[:, model.feature_index])
    assert isinstance(model.adapter, XGBoostAdapter)
    runner = _LoopThread()
    server = runner.run(create_server("127.0.0.1:0", repository))
    try:
        with TickserveClient(f"127.0.0.1:{server.port}", timeout=60) as client:
            for batch_size in (1, 50):
                results = list(client.stream_signals(frame_to_protos(frame), model=NAME, batch_size=batch_size))
                assert len(results) == len(frame)
                for i, r in enumerate(results):
                    assert r.WhichOneof("result") == "signal", r
                    s = r.signal
                    assert (s.model, s.model_version) == (NAME, "1")
                    assert (s.p_sell, s.p_hold, s.p_buy) == tuple(probs[i]), f"tick {i}, batch size {batch_size}"
    finally:
        runner.run(server.stop(1.0))
        runner.close()
