"""LightGBM adapter for tickserve: native text boosters, multiclass softmax.

With an artifact built by `tickserve compile` (compiled.py, lleaves), batches are predicted
by the compiled forest, checked bit for bit against LightGBM at load; without one, or if the
check fails, by LightGBM itself. Single rows always take LightGBM's C fast path.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from tickserve.plugin import (
    ModelAdapter,
    ModelManifest,
    Progress,
    TrainingData,
    TrainingResult,
    check_feature_order,
    hookimpl,
)

from . import compiled as compiled_path

log = logging.getLogger(__name__)

MODEL_FILE = "model.txt"

# The seed's parameters, exactly.
SEED_PARAMS: dict[str, Any] = {
    "objective": "multiclass",
    "num_class": 3,
    "metric": "multi_logloss",
    "num_leaves": 127,
    "max_depth": 10,
    "min_data_in_leaf": 400,
    "learning_rate": 0.05,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 10,
    "verbose": -1,
    "seed": 42,
}
NUM_BOOST_ROUND = 600
EARLY_STOPPING_ROUNDS = 50
# Below this many rows one thread is faster: thread start-up dominates.
SINGLE_THREAD_ROWS = 256
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class LightGBMAdapter(ModelAdapter):
    name = "lightgbm"
    native_threads = None  # the thread rule leaves it alone: it passes num_threads per call (1 or every core)

    def __init__(
        self,
        booster: lgb.Booster,
        feature_names: list[str],
        compiled: compiled_path.CompiledForest | None = None,
        predictor: str = "lightgbm",
    ) -> None:
        self.booster = booster
        self.feature_names = feature_names
        self._single_row = _SingleRowPredictor(booster, len(feature_names))
        self.compiled = compiled
        self.predictor = predictor  # what serves predictions, and why (GetModel shows it)

    @classmethod
    def load(cls, model_dir: Path, manifest: ModelManifest) -> LightGBMAdapter:
        path = model_dir / manifest.model_file
        _check_complete(path.read_text(errors="replace"))
        booster = lgb.Booster(model_file=str(path))
        if booster.num_feature() != len(manifest.feature_names):
            raise ValueError(
                f"booster has {booster.num_feature()} features, manifest lists {len(manifest.feature_names)}"
            )
        if booster.num_model_per_iteration() != len(manifest.classes):
            raise ValueError(
                f"booster predicts {booster.num_model_per_iteration()} classes, manifest lists {len(manifest.classes)}"
            )
        names = booster.feature_name()
        if names != [f"Column_{i}" for i in range(len(names))]:  # LightGBM's names when none were given
            check_feature_order(names, manifest)
        adapter = cls(booster, list(manifest.feature_names))
        adapter._use_compiled(model_dir, path)
        return adapter

    def _use_compiled(self, model_dir: Path, path: Path) -> None:
        """Serve from a compiled artifact if there is one for this model, this CPU and this
        compiler, and it agrees with LightGBM to the last bit on the probe rows; otherwise
        stay native and say why."""
        why_not = compiled_path.unsupported(path)
        if why_not is not None:
            self.predictor = f"lightgbm ({why_not})"
            return
        artifacts = compiled_path.find_artifacts(model_dir, path)
        if not artifacts:
            self.predictor = "lightgbm (not compiled for this model file, CPU and compiler: run `tickserve compile`)"
            return
        rejected = []
        for artifact in artifacts:  # best first; a damaged full build leaves the quick one
            if artifact.suffix == ".o" and compiled_path.available() is not None:
                rejected.append(f"{artifact.name}: {compiled_path.available()}")
                continue
            try:
                forest = _verified(self.booster, path, artifact)
            except Exception as exc:  # a stale, corrupt or foreign artifact: never worse than native
                log.warning("not using compiled artifact %s: %s", artifact, exc)
                rejected.append(f"{artifact.name}: {exc}")
                continue
            self.compiled = forest
            self.predictor = (
                f"lleaves (compiled {artifact.name}, bit-exact with lightgbm on {forest.probed} probe rows)"
            )
            return
        self.predictor = f"lightgbm (compiled artifact rejected: {'; '.join(rejected)})"

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        if len(features) == 1:
            # one row: LightGBM's C fast path costs what the compiled forest costs once the
            # softmax and the input checks are paid in Python (~8-9 us each, measured)
            return self._single_row(features[0])[None, :]
        if self.compiled is not None:
            return self.compiled.predict_proba(features)
        # every core, named: 0 would mean "this thread's OpenMP setting", which another adapter's
        # thread rule may have set to 1 on this worker thread
        threads = 1 if len(features) < SINGLE_THREAD_ROWS else CORES
        return self.booster.predict(features, num_threads=threads)

    @classmethod
    def compile(cls, model_dir: Path, manifest, *, quick: bool = False) -> str | None:
        why_not = compiled_path.available()
        if why_not is not None:
            raise RuntimeError(why_not)
        path = model_dir / manifest.model_file
        unsupported = compiled_path.unsupported(path)
        if unsupported is not None:
            raise ValueError(f"{unsupported}; it serves through LightGBM")
        level = "quick" if quick else "full"
        stem = compiled_path.artifact_stem(model_dir, path, level)
        for suffix in compiled_path.FORMS:
            artifact = stem.with_name(stem.name + suffix)
            if artifact.is_file():
                try:
                    compiled_path.check_artifact(artifact)
                    return f"already compiled ({level}): {artifact.relative_to(model_dir)}"
                except ValueError:
                    artifact.unlink()  # damaged or half-written: build it again
        artifact = compiled_path.compile_model(path, stem, level)
        try:  # the check load makes, now: never report success for an artifact load would refuse
            _verified(lgb.Booster(model_file=str(path)), path, artifact)
        except Exception:
            artifact.unlink(missing_ok=True)
            compiled_path.checksum_path(artifact).unlink(missing_ok=True)
            raise
        form = (
            "linked shared library"
            if artifact.suffix == ".so"
            else "object file, loaded through llvmlite: no linker here"
        )
        return f"compiled with lleaves ({level}, {form}): {artifact.relative_to(model_dir)}"

    def feature_importance(self) -> dict[str, float]:
        gains = self.booster.feature_importance(importance_type="gain")
        return {name: float(g) for name, g in zip(self.feature_names, gains)}

    def metadata(self) -> dict[str, str]:
        return {
            "lightgbm_version": lgb.__version__,
            "trees": str(self.booster.num_trees()),
            "predictor": self.predictor,
        }

    @classmethod
    def train(cls, data: TrainingData, params: dict[str, Any], out_dir: Path, progress: Progress) -> TrainingResult:
        params = {**SEED_PARAMS, **params}
        rounds = int(params.pop("num_boost_round", NUM_BOOST_ROUND))
        stopping = int(params.pop("early_stopping_rounds", EARLY_STOPPING_ROUNDS))
        train_set = lgb.Dataset(data.x_train, data.y_train, feature_name=data.feature_names, free_raw_data=True)
        valid_set = lgb.Dataset(data.x_valid, data.y_valid, reference=train_set)

        def report(env: lgb.callback.CallbackEnv) -> None:
            loss = env.evaluation_result_list[0][2] if env.evaluation_result_list else float("nan")
            progress(env.iteration + 1, rounds, f"valid multi_logloss {loss:.4f}")

        booster = lgb.train(
            params,
            train_set,
            num_boost_round=rounds,
            valid_sets=[valid_set],
            valid_names=["valid"],
            callbacks=[lgb.early_stopping(stopping, verbose=False), report],
        )
        best = booster.best_iteration or booster.current_iteration()
        trained = booster.current_iteration()  # early stopping ends before `rounds`: say where
        stopped = f"stopped early at round {trained} of {rounds}, " if trained < rounds else ""
        progress(trained, trained, f"{stopped}best iteration {best}")
        booster.save_model(str(out_dir / MODEL_FILE), num_iteration=best)
        recorded = {**params, "num_boost_round": rounds, "early_stopping_rounds": stopping}
        return TrainingResult(MODEL_FILE, recorded, {"best_iteration": float(best)})

    @classmethod
    def train_dask(
        cls, client, data: TrainingData, params: dict[str, Any], out_dir: Path, progress: Progress
    ) -> TrainingResult:
        """`train` by lightgbm.dask on `client`'s workers (`tickserve train --dask`); dask_train.py."""
        from .dask_train import train_dask

        return train_dask(
            client,
            data,
            params,
            out_dir,
            progress,
            seed_params=SEED_PARAMS,
            rounds=NUM_BOOST_ROUND,
            stopping=EARLY_STOPPING_ROUNDS,
            model_file=MODEL_FILE,
        )


class _SingleRowPredictor:
    """LightGBM's C fast path for one row (LGBM_BoosterPredictForMatSingleRowFast).

    Booster.predict builds a predictor and converts arrays on every call: ~86 us for
    one row here; this path is ~24 us and gives bit-identical probabilities (same
    tree walk; tests compare it with batch predictions). The prepared config is
    shared state inside LightGBM, hence the lock (ctypes releases the GIL meanwhile).
    """

    def __init__(self, booster: lgb.Booster, n_features: int) -> None:
        from lightgbm.basic import _LIB, _c_str, _safe_call

        self._lib, self._safe_call = _LIB, _safe_call
        self._n_features = n_features
        self._config = ctypes.c_void_p()
        self._booster = booster  # the config points into it: keep it alive
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(0),  # C_API_PREDICT_NORMAL: probabilities
                ctypes.c_int(0),  # start iteration
                ctypes.c_int(-1),  # all iterations
                ctypes.c_int(1),  # C_API_DTYPE_FLOAT64
                ctypes.c_int32(n_features),
                _c_str("num_threads=1"),
                ctypes.byref(self._config),
            )
        )
        self._out_len = ctypes.c_int64()
        self._out_len_ref = ctypes.byref(self._out_len)
        self._n_classes = booster.num_model_per_iteration()
        self._lock = threading.Lock()
        # our own function object (CDLL item lookup returns a fresh one), so typed
        # argtypes take raw addresses without ctypes casts and LightGBM's is untouched
        self._predict = _LIB["LGBM_BoosterPredictForMatSingleRowFast"]
        self._predict.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p]
        self._predict.restype = ctypes.c_int

    def __call__(self, row: np.ndarray) -> np.ndarray:
        row = np.ascontiguousarray(row, dtype=np.float64)
        out = np.empty(self._n_classes)
        with self._lock:
            status = self._predict(self._config, row.ctypes.data, self._out_len_ref, out.ctypes.data)
        if status != 0:
            self._safe_call(status)  # raises LightGBM's error message
        return out

    def __del__(self) -> None:
        if getattr(self, "_config", None) and self._config.value:
            self._lib.LGBM_FastConfigFree(self._config)


def _verified(booster: lgb.Booster, model_file: Path, artifact: Path) -> compiled_path.CompiledForest:
    """The artifact loaded, if its probabilities equal LightGBM's to the last bit on the probe
    rows, in batches and row by row; else ValueError."""
    forest = compiled_path.CompiledForest(
        model_file, artifact, booster.num_feature(), booster.num_model_per_iteration()
    )
    probe = compiled_path.probe_rows(booster.num_feature(), model_file)
    native = booster.predict(probe, num_threads=1)
    if not np.array_equal(forest.predict_proba(probe), native, equal_nan=True):
        raise ValueError("its probabilities differ from LightGBM's on the probe rows")
    forest.probed = len(probe)
    return forest


def _check_complete(text: str) -> None:
    """LightGBM's parser crashes the whole process (segfault) on a truncated model file,
    so check the structure first: as many trees as the header's tree_sizes, and the end marker."""
    sizes = next((line for line in text.splitlines() if line.startswith("tree_sizes=")), None)
    if not text.startswith("tree\n") or sizes is None or "\nend of trees" not in text:
        raise ValueError("not a complete LightGBM text model (header or 'end of trees' missing)")
    expected = len(sizes.split("=", 1)[1].split())
    found = text.count("\nTree=")
    if found != expected:
        raise ValueError(f"truncated LightGBM model: {found} trees, header says {expected}")


@hookimpl
def tickserve_adapters() -> list[type[ModelAdapter]]:
    return [LightGBMAdapter]
