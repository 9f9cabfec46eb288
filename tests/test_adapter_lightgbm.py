"""The LightGBM adapter against the native library: the single-row fast path is exact."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tickserve.features import batch_features
from tickserve.simulate import simulate

from .conftest import MODEL


def test_single_row_fast_path_equals_native_batch_predictions(server):
    model = server.repository.get(MODEL)
    frame = simulate(2_000, seed=77)
    x = batch_features(frame, model.manifest.feature_config)[:, model.feature_index]
    native = model.adapter.booster.predict(x)  # LightGBM's own batch path
    single = np.vstack([model.adapter.predict_proba(x[i : i + 1]) for i in range(len(x))])
    assert np.array_equal(single, native)
    assert np.array_equal(model.adapter.predict_proba(x), native)


def test_single_row_fast_path_is_safe_from_many_threads(server):
    model = server.repository.get(MODEL)
    x = batch_features(simulate(800, seed=78), model.manifest.feature_config)[:, model.feature_index]
    expected = model.adapter.booster.predict(x)

    def rows(offset: int) -> np.ndarray:
        return np.vstack([model.adapter.predict_proba(x[i : i + 1]) for i in range(offset, len(x), 4)])

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(rows, range(4)))
    for offset, got in enumerate(results):
        assert np.array_equal(got, expected[offset::4])
