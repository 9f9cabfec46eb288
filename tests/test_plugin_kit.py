"""The plugin-author kit: the adapter contract passes on the pip-installed examples through
`tickserve check-plugin`, and each way of breaking it is caught by the check named for it."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tickserve.features import FEATURE_NAMES, FEATURE_STAGE_VERSION
from tickserve.models.manifest import ModelManifest
from tickserve.plugin import ModelAdapter, TrainingResult, check_adapter
from tickserve.plugins.contract import Outcome, assert_contract

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TICKSERVE = [sys.executable, "-m", "tickserve.cli"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """`pip install` both examples into a directory of their own (the test environment stays as it was)."""
    target = tmp_path_factory.mktemp("site")
    for example in ("numpy-adapter", "sklearn-adapter"):
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
            + ["--target", str(target), str(EXAMPLES / example)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
    return target


def _check_plugin(site: Path, *args: str) -> subprocess.CompletedProcess:
    # the installed examples first, then whatever tickserve this run imports (a worktree's, say)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run([*TICKSERVE, "check-plugin", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("adapter", ["numpy-logistic", "sklearn-logistic"])
def test_check_plugin_passes_on_the_installed_examples(site, adapter):
    done = _check_plugin(site, adapter)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"adapter {adapter!r} meets the contract"
    names = [ln.split()[1] for ln in lines[1:]]
    assert names == ["class", "model", "storage", "load", "serves", "roundtrip", "threads", "probabilities"] + [
        "batch",
        "deterministic",
        "concurrent",
        "latency",
    ]
    assert all(ln.startswith("pass") for ln in lines[1:])


def _sklearn_model_dir(path: Path, **extra) -> Path:
    """A model version directory for the sklearn example written by hand, as an operator gets one."""
    n = 4
    path.mkdir(parents=True)
    rng = np.random.default_rng(3)
    np.savez(
        path / "model.npz",
        mean=np.zeros(n),
        scale=np.ones(n),
        coef=rng.normal(size=(3, n)) * 1e-3,
        intercept=np.zeros(3),
        sklearn_version=np.array("1.9.1"),
        **extra,
    )
    ModelManifest("m", "1", "sklearn-logistic", "model.npz", list(FEATURE_NAMES[:n]), FEATURE_STAGE_VERSION).save(path)
    return path


def test_check_plugin_with_a_model_dir_and_a_pickle_hidden_in_it(site, tmp_path):
    good = _check_plugin(site, "sklearn-logistic", "--model-dir", str(_sklearn_model_dir(tmp_path / "good")))
    assert good.returncode == 0, good.stdout + good.stderr
    # np.savez pickles an object array into the .npz; np.load(allow_pickle=True) would run it
    hidden = _sklearn_model_dir(tmp_path / "bad", notes=np.array([{"by": "someone"}], dtype=object))
    bad = _check_plugin(site, "sklearn-logistic", "--model-dir", str(hidden))
    assert bad.returncode == 1
    storage = next(ln for ln in bad.stdout.splitlines() if ln.split()[1] == "storage")
    assert storage.startswith("FAIL") and "model.npz:notes.npy (an object array" in storage


def test_check_plugin_exits_1_for_an_adapter_not_installed(site):
    done = _check_plugin(site, "no-such-adapter")
    assert done.returncode == 1 and "numpy-logistic" in done.stdout


# --- broken adapters, each caught by its check -------------------------------------------------


class Tiny(ModelAdapter):
    """A correct small adapter (softmax of a per-row linear map, weights in JSON); the broken ones
    below change one thing each."""

    name = "tiny"

    def __init__(self, w: np.ndarray) -> None:
        self.w = w

    @classmethod
    def train(cls, data, params, out_dir, progress):
        w = np.random.default_rng(0).normal(size=(3, data.x_train.shape[1])) * 1e-3
        (out_dir / "w.json").write_text(json.dumps(w.tolist()))
        return TrainingResult("w.json", {})

    @classmethod
    def load(cls, model_dir, manifest):
        return cls(np.array(json.loads((model_dir / manifest.model_file).read_text())))

    def scores(self, x: np.ndarray) -> np.ndarray:
        return (x[:, None, :] * self.w[None, :, :]).sum(axis=2)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        z = self.scores(features)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


class Unnormalised(Tiny):
    def predict_proba(self, features):
        return super().predict_proba(features) * 0.99


class BatchStandardised(Tiny):
    """Standardises by the batch's own mean: a row's answer depends on its neighbours."""

    def scores(self, x):
        return super().scores(x - x.mean(axis=0))


class Pickled(Tiny):
    @classmethod
    def train(cls, data, params, out_dir, progress):
        result = super().train(data, params, out_dir, progress)
        w = np.array(json.loads((out_dir / "w.json").read_text()))
        (out_dir / "w.json").unlink()
        (out_dir / "w.pkl").write_bytes(pickle.dumps(w))
        return TrainingResult("w.pkl", result.parameters)

    @classmethod
    def load(cls, model_dir, manifest):
        return cls(pickle.loads((model_dir / manifest.model_file).read_bytes()))


class OwnThreads(Tiny):
    """Starts a pool per calling thread, as an OpenMP runtime left at its default does."""

    _local = threading.local()

    def predict_proba(self, features):
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = ThreadPoolExecutor(2)
        return pool.submit(super().predict_proba, features).result()


class Racy(Tiny):
    """Shares one scratch buffer across calls: not safe when streams call at once."""

    def predict_proba(self, features):
        self.scratch = super().predict_proba(features)
        time.sleep(0.0005)  # another thread's call lands here
        return self.scratch.copy()


class NoTrain(ModelAdapter):
    name = "no-train"
    load = Tiny.load
    predict_proba = Tiny.predict_proba
    scores = Tiny.scores

    def __init__(self, w):
        self.w = w


@pytest.mark.parametrize(
    ("adapter", "check", "says"),
    [
        (Unnormalised, "probabilities", "sums to 0.98999"),
        (BatchStandardised, "batch", "alone"),
        (Pickled, "storage", "w.pkl (a pickle-based format)"),
        (Pickled, "load", "load unpickled numpy"),
        (OwnThreads, "threads", "started 1 thread(s)"),
        (Racy, "concurrent", "the same call alone"),
        (NoTrain, "model", "has no `train`: pass a model directory"),
    ],
)
def test_a_broken_adapter_is_caught_by_the_named_check(adapter, check, says):
    report = check_adapter(adapter)
    assert not report.ok
    found = report.check(check)
    assert found.outcome is Outcome.FAIL and says in found.message, report.summary()
    with pytest.raises(AssertionError, match=check):
        assert_contract(adapter)


def test_the_correct_adapter_passes_and_one_without_train_is_checked_on_a_model_dir(tmp_path):
    report = assert_contract(Tiny)
    assert [c.outcome for c in report.checks] == [Outcome.PASS] * 12
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "w.json").write_text(json.dumps(np.full((3, 5), 1e-3).tolist()))
    ModelManifest("m", "1", "no-train", "w.json", list(FEATURE_NAMES[:5]), FEATURE_STAGE_VERSION).save(model_dir)
    assert check_adapter(NoTrain, model_dir).ok
