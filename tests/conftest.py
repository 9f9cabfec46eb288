"""Shared fixtures: a small trained model repository and a real gRPC server on a free loopback port."""

from __future__ import annotations

import asyncio
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np
import pytest

from tickserve.core.signals import ACTIONS, RISKS, STRENGTHS
from tickserve.core.ticks import TickFrame
from tickserve.evaluation.evaluate import Evaluation, ScoredTicks
from tickserve.models.repository import ModelRepository
from tickserve.plugins.manager import Plugins, load_plugins
from tickserve.serving.app import TickServer, create_server
from tickserve.simulate import simulate
from tickserve.training import train_model
from tickserve_client import TickserveClient

MODEL = "signal-lgbm"
# Few rounds keep the suite fast; the model still has real trees and real probabilities.
FAST_PARAMS = {"num_boost_round": 40, "early_stopping_rounds": 10}


@pytest.fixture(scope="session")
def plugins() -> Plugins:
    return load_plugins()


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory, plugins) -> Path:
    """models/signal-lgbm/{1,2} trained on simulated ticks, plus a corrupt models/broken/1."""
    root = tmp_path_factory.mktemp("models")
    adapter = plugins.adapters["lightgbm"]
    train_model(simulate(20_000, seed=11), adapter=adapter, models_dir=root, name=MODEL, params=FAST_PARAMS)
    train_model(simulate(20_000, seed=12), adapter=adapter, models_dir=root, name=MODEL, params=FAST_PARAMS)
    broken = root / "broken" / "1"
    shutil.copytree(root / MODEL / "1", broken)
    manifest = (broken / "manifest.json").read_text().replace(f'"name": "{MODEL}"', '"name": "broken"')
    (broken / "manifest.json").write_text(manifest)
    (broken / "model.txt").write_text("this is not a LightGBM model\n")
    return root


@dataclass
class RunningServer:
    address: str
    port: int
    repository: ModelRepository


class _LoopThread:
    """An asyncio loop in a background thread, so sync tests can use real blocking channels."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="session")
def server(model_repo, plugins):
    repository = ModelRepository(model_repo, plugins.adapters, default_model=MODEL)
    repository.load_all()
    runner = _LoopThread()
    tick_server: TickServer = runner.run(create_server("127.0.0.1:0", repository))
    yield RunningServer(f"127.0.0.1:{tick_server.port}", tick_server.port, repository)
    runner.run(tick_server.stop(1.0))
    runner.close()


@pytest.fixture
def client(server):
    with TickserveClient(server.address, timeout=60) as c:
        yield c


@pytest.fixture
def channel(server):
    with grpc.insecure_channel(server.address) as ch:
        yield ch


@pytest.fixture(scope="session", autouse=True)
def _signal_log_outside_the_repo(tmp_path_factory):
    """`tickserve serve` logs signals to .tickserve/signals.db by default: keep the suite's out of the tree."""
    import os

    os.environ["TICKSERVE_SIGNAL_LOG_PATH"] = str(tmp_path_factory.mktemp("signal-log-default") / "signals.db")
    yield


def feed_in_messages(evaluation: Evaluation, frame: TickFrame, signals: list, raw, seed: int = 0) -> None:
    """The ticks of `frame` with their signals, in messages of random sizes (1 to 300 ticks), as Evaluate gets them."""
    raw = np.broadcast_to(np.asarray(raw, dtype=np.float64), (len(frame), 3))
    probs = np.array([(s.p_sell, s.p_hold, s.p_buy) for s in signals])
    codes = {
        "action": np.array([ACTIONS.index(s.action) for s in signals]),
        "strength": np.array([STRENGTHS.index(s.strength) for s in signals]),
        "risk": np.array([RISKS.index(s.risk) for s in signals]),
    }
    start = 0
    rng = np.random.default_rng(seed)
    while start < len(frame):
        end = min(len(frame), start + int(rng.integers(1, 301)))
        part = frame.take(slice(start, end))
        evaluation.add(
            ScoredTicks.of_frame(
                part,
                probs[start:end],
                raw[start:end],
                SimpleNamespace(**{name: values[start:end] for name, values in codes.items()}),
            )
        )
        start = end
