"""`tickserve train --dask`: features and labels computed in chunks on a two-worker LocalCluster equal the
single-process ones bit for bit; a model trained through it is served and scores like a single-process one."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from tickserve.evaluation.labels import LabelConfig, make_labels
from tickserve.features import MAX_LOOKBACK, FeatureConfig, batch_features
from tickserve.simulate import simulate
from tickserve.training.distributed import features_and_labels, plan_chunks

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    # processes=True: chunks are pickled to other interpreters, as on a real cluster
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def frame():
    """Three instruments interleaved; timestamps coarsened to 100 ms so that many ticks share one,
    the case where a time horizon's "first tick at or after t + H" depends on arrival order."""
    f = simulate(3000, seed=5)
    f.timestamp_ns = f.timestamp_ns // 100_000_000 * 100_000_000
    return f


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def test_workers_run_this_checkout(client):
    """The workers import the tickserve under test, not an installed copy elsewhere."""
    import tickserve

    here = os.path.dirname(tickserve.__file__)
    there = client.run(lambda: __import__("tickserve").__file__)
    assert len(there) == 2
    assert {os.path.dirname(p) for p in there.values()} == {here}
    assert set(client.run(lambda: sys.executable).values()) == {sys.executable}


LABELS = [
    LabelConfig(horizon_ticks=20, mode="taker", cost_ticks=0.5),
    LabelConfig(horizon_ticks=120, threshold_ticks=1.0),  # longer than some chunks: look-ahead spans chunks
    LabelConfig(horizon_ns=2_000_000_000, mode="taker"),
    LabelConfig(horizon_ns=30_000_000_000, threshold_ticks=1.0),
]


@pytest.mark.parametrize("chunk_rows", [7, MAX_LOOKBACK - 1, MAX_LOOKBACK, MAX_LOOKBACK + 1, 333, 1000, 10_000])
@pytest.mark.parametrize("labels", LABELS, ids=lambda c: c.describe().split(",")[1].strip())
def test_features_and_labels_equal_single_process(client, frame, labels, chunk_rows):
    config = FeatureConfig()
    x, y, future = features_and_labels(client, frame, config, labels, chunk_rows)
    expected_y, expected_future = make_labels(frame, labels, config)
    assert _same(x, batch_features(frame, config))
    assert _same(y, expected_y)
    assert _same(future, expected_future)
    assert (y >= 0).sum() > len(frame) // 2  # the comparison covers labeled ticks, not only NO_LABEL


def test_one_row_chunks(client, frame):
    """Every chunk is all warm-up and look-ahead but one row."""
    part = frame.take(slice(0, 300))
    config, labels = FeatureConfig(), LabelConfig(horizon_ns=1_000_000_000)
    x, y, future = features_and_labels(client, part, config, labels, chunk_rows=1)
    assert _same(x, batch_features(part, config))
    expected_y, expected_future = make_labels(part, labels, config)
    assert _same(y, expected_y) and _same(future, expected_future)


def test_chunks_carry_only_their_context(frame):
    """Each chunk owns chunk_rows rows and carries at most MAX_LOOKBACK rows before and the
    horizon after: a chunk is a bounded piece of work, not the frame."""
    labels = LabelConfig(horizon_ticks=20)
    chunks = plan_chunks(frame, labels, 100)
    owned = np.concatenate([c.rows[c.own_start : c.own_stop] for c in chunks])
    assert np.array_equal(np.sort(owned), np.arange(len(frame)))
    assert all(c.own_start <= MAX_LOOKBACK and len(c.rows) - c.own_stop <= 20 for c in chunks)
    assert all(c.own_stop - c.own_start <= 100 for c in chunks)


def test_out_of_order_ticks_are_refused(frame):
    bad = frame.take(slice(0, 200))
    first = np.flatnonzero(bad.instrument == bad.instrument[0])
    bad.timestamp_ns[first[5]] = bad.timestamp_ns[first[4]] - 1
    with pytest.raises(ValueError, match="not in time order"):
        plan_chunks(bad, LabelConfig(), 50)
