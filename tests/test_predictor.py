"""A model's Predictor: coalesces concurrent streams' rows, routes results back, never delays a lone stream."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tickserve.features import batch_features
from tickserve.models.predictor import BatchOptions, Predictors
from tickserve.models.repository import ModelRepository
from tickserve.serving.app import create_server
from tickserve.serving.converters import frame_to_protos
from tickserve.serving.limits import ServerLimits
from tickserve.simulate import simulate
from tickserve_client import TickserveClient

from .conftest import MODEL, _LoopThread


class CountingModel:
    """Stands in for a LoadedModel: probabilities derived from the rows, calls counted."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def predict(self, x: np.ndarray):
        self.calls.append(len(x))
        if self.fail:
            raise RuntimeError("adapter failed")
        return x * 2.0, x * 3.0


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_one_adapter_call_and_get_their_own_rows():
    async def scenario():
        model = CountingModel()
        predictor = Predictors(ThreadPoolExecutor(1), BatchOptions(window_s=1.0)).of(model)
        tokens = [predictor.stream_opened() for _ in range(3)]
        for token in tokens:  # each stream has sent recently: all three are active
            await predictor.predict(np.ones((1, 2)), token)
        model.calls.clear()
        xs = [np.full((n, 2), float(i)) for i, n in enumerate((1, 3, 2))]
        outs = await asyncio.gather(*(predictor.predict(x, t) for x, t in zip(xs, tokens)))
        return model, outs, xs

    model, outs, xs = run(scenario())
    assert model.calls == [6]  # one call, flushed as soon as every active stream had a request pending
    for x, (raw, probs) in zip(xs, outs):
        assert np.array_equal(raw, x * 2.0) and np.array_equal(probs, x * 3.0)


def test_a_lone_stream_never_waits_for_the_window():
    async def scenario():
        model = CountingModel()
        predictor = Predictors(ThreadPoolExecutor(1), BatchOptions(window_s=30.0)).of(model)
        token = predictor.stream_opened()
        predictor.stream_opened()  # open but idle: must not make the active one wait
        started = time.monotonic()
        await asyncio.wait_for(predictor.predict(np.ones((1, 2)), token), timeout=2.0)
        return time.monotonic() - started, model

    elapsed, model = run(scenario())
    assert elapsed < 0.5 and model.calls == [1]


def test_the_window_flushes_when_not_every_stream_has_sent():
    async def scenario():
        model = CountingModel()
        predictor = Predictors(ThreadPoolExecutor(1), BatchOptions(window_s=0.05)).of(model)
        a, b, c = (predictor.stream_opened() for _ in range(3))
        for token in (a, b, c):  # all three recently active
            await predictor.predict(np.ones((1, 2)), token)
        model.calls.clear()
        started = time.monotonic()
        await asyncio.gather(predictor.predict(np.ones((1, 2)), a), predictor.predict(np.ones((1, 2)), b))
        return time.monotonic() - started, model

    elapsed, model = run(scenario())
    assert model.calls == [2] and 0.04 <= elapsed < 1.0


class PoisonModel(CountingModel):
    """Fails any call that contains a row of NaN, like an adapter choking on one stream's input."""

    def predict(self, x: np.ndarray):
        self.calls.append(len(x))
        if np.isnan(x).any():
            raise RuntimeError("adapter failed")
        return x * 2.0, x * 3.0


def test_a_failing_batch_fails_only_the_caller_whose_rows_fail():
    async def scenario():
        model = PoisonModel()
        predictor = Predictors(ThreadPoolExecutor(1), BatchOptions(window_s=1.0)).of(model)
        a, b, c = (predictor.stream_opened() for _ in range(3))
        return model, await asyncio.gather(
            predictor.predict(np.ones((1, 2)), a),
            predictor.predict(np.full((2, 2), np.nan), b),
            predictor.predict(np.full((1, 2), 5.0), c),
            return_exceptions=True,
        )

    model, (ra, rb, rc) = run(scenario())
    assert isinstance(rb, RuntimeError) and str(rb) == "adapter failed"
    assert np.array_equal(ra[1], np.full((1, 2), 3.0)) and np.array_equal(rc[1], np.full((1, 2), 15.0))
    # a shared call holding the poison rows and another caller's rows failed, then each ran on its own
    shared = [i for i, n in enumerate(model.calls) if n >= 3]
    assert shared and model.calls[shared[0] + 1 :][-2:] == [2, 1]


def test_every_caller_fails_when_the_adapter_always_fails():
    async def scenario():
        model = CountingModel(fail=True)
        predictor = Predictors(ThreadPoolExecutor(1), BatchOptions(window_s=1.0)).of(model)
        a, b = predictor.stream_opened(), predictor.stream_opened()
        return await asyncio.gather(
            predictor.predict(np.ones((1, 2)), a),
            predictor.predict(np.ones((1, 2)), b),
            return_exceptions=True,
        )

    results = run(scenario())
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]


@pytest.fixture(scope="module")
def batching_server(model_repo, plugins):
    repository = ModelRepository(model_repo, plugins.adapters, default_model=MODEL)
    repository.load_all()
    runner = _LoopThread()
    server = runner.run(create_server("127.0.0.1:0", repository, limits=ServerLimits(batch_window_s=0.002)))
    yield server, repository
    runner.run(server.stop(1.0))
    runner.close()


def test_concurrent_streams_are_batched_and_signals_equal_offline(batching_server):
    server, repository = batching_server
    model = repository.get(MODEL)
    frame = simulate(300, seed=41)
    ticks = frame_to_protos(frame)
    full = batch_features(frame, model.manifest.feature_config)
    _, expected = model.predict(full[:, model.feature_index])

    def stream(_):
        with TickserveClient(f"127.0.0.1:{server.port}", timeout=120) as client:
            return np.array([[r.signal.p_sell, r.signal.p_hold, r.signal.p_buy] for r in client.stream_signals(ticks)])

    with ThreadPoolExecutor(12) as pool:
        runs = list(pool.map(stream, range(12)))
    for got in runs:
        assert np.array_equal(got, expected)
    stats = server.signals.predictors.stats
    assert stats.rows >= 12 * 300 and stats.largest > 1 and stats.calls < stats.rows


def test_small_predict_calls_go_through_the_predictor_with_the_same_signals(batching_server):
    """A Predict of a few ticks predicts through the model's Predictor, as streams do (so it can share
    an adapter call with them), and answers the offline signals."""
    server, repository = batching_server
    model = repository.get(MODEL)
    frame = simulate(30, seed=43)
    full = batch_features(frame, model.manifest.feature_config)
    _, expected = model.predict(full[:, model.feature_index])
    ticks = frame_to_protos(frame)
    stats = server.signals.predictors.stats
    with TickserveClient(f"127.0.0.1:{server.port}", timeout=60) as client:
        for n in (1, 3, 4):  # each call is a fresh session: its ticks are the frame's first n
            rows_before = stats.rows
            signals = client.predict(ticks[:n])
            assert stats.rows == rows_before + n
            got = np.array([[s.p_sell, s.p_hold, s.p_buy] for s in signals])
            assert np.array_equal(got, expected[:n])
    # a Predict holds no Predictor once answered: nothing (no old model version) is kept for it
    deadline = time.monotonic() + 5
    while server.signals.predictors.serving and time.monotonic() < deadline:
        time.sleep(0.01)  # streams of the test before close on the server a moment after the client
    assert not server.signals.predictors.serving


def test_a_reloaded_model_gets_a_predictor_of_its_own():
    """Rows of two versions are never batched together: a new LoadedModel is a new Predictor."""
    predictors = Predictors(ThreadPoolExecutor(1))
    old, new = CountingModel(), CountingModel()
    first = predictors.of(old)
    token = first.stream_opened()
    assert predictors.of(old) is first and predictors.of(new) is not first
    predictors.stream_closed(first, token)
    assert list(predictors.serving.values()) == [predictors.of(new)]
