"""One server serves LightGBM, XGBoost, ONNX and an ensemble of them; StreamSignals and Evaluate work with each."""

from __future__ import annotations

import numpy as np
import pytest

from tickserve.features import batch_features
from tickserve.models.ensemble import ensemble_manifest
from tickserve.models.repository import ModelRepository, ModelState
from tickserve.serving.app import create_server
from tickserve.serving.converters import frame_to_protos
from tickserve.simulate import simulate
from tickserve.training import train_model
from tickserve_client import TickserveClient

from .conftest import _LoopThread

FAST = {"num_boost_round": 30, "early_stopping_rounds": 10, "nthread": 1}
MODELS = {"m-lgbm": "lightgbm", "m-xgb": "xgboost", "m-onnx": "onnx"}


@pytest.fixture(scope="module")
def served(plugins, tmp_path_factory):
    missing = [a for a in MODELS.values() if a not in plugins.adapters]
    if missing:
        pytest.skip(f"adapters not installed: {missing} (make install installs them)")
    root = tmp_path_factory.mktemp("default-repo")
    frame = simulate(12_000, seed=31)
    manifests = []
    for name, adapter in MODELS.items():
        params = {k: v for k, v in FAST.items() if k != "nthread" or adapter == "xgboost"}
        _, manifest = train_model(frame, adapter=plugins.adapters[adapter], models_dir=root, name=name, params=params)
        manifests.append((manifest, 1.0))
    (root / "m-ensemble" / "1").mkdir(parents=True)
    ensemble_manifest("m-ensemble", "1", manifests).save(root / "m-ensemble" / "1")
    repository = ModelRepository(root, plugins.adapters)
    repository.load_all()
    runner = _LoopThread()
    server = runner.run(create_server("127.0.0.1:0", repository))
    with TickserveClient(f"127.0.0.1:{server.port}", timeout=120) as client:
        yield repository, client
    runner.run(server.stop(1.0))
    runner.close()


def test_every_adapter_and_the_ensemble_are_ready(served):
    repository, client = served
    assert {e.name: e.state for e in repository.entries()} == {n: ModelState.READY for n in [*MODELS, "m-ensemble"]}
    assert {m.name: m.adapter for m in client.list_models().models} == {**MODELS, "m-ensemble": "ensemble"}


@pytest.mark.parametrize("name", [*MODELS, "m-ensemble"])
def test_stream_and_evaluate_with_each_model(served, name):
    repository, client = served
    frame = simulate(400, seed=32)
    ticks = frame_to_protos(frame)
    signals = [r.signal for r in client.stream_signals(ticks, model=name, batch_size=20)]
    assert len(signals) == 400 and {s.model for s in signals} == {name}
    model = repository.get(name)
    full = batch_features(frame, model.manifest.feature_config)
    _, expected = model.predict(full[:, model.feature_index])
    got = np.array([[s.p_sell, s.p_hold, s.p_buy] for s in signals])
    assert np.array_equal(got, expected)
    report = list(client.evaluate(ticks, model=name))[-1].report
    horizon = report.label_config.horizon_ticks  # chosen from the training ticks, as train does by default
    assert (report.model, report.ticks, report.labeled) == (name, 400, 400 - 3 * horizon)
    assert 0 < report.accuracy <= 1 and len(report.feature_importance) > 0
