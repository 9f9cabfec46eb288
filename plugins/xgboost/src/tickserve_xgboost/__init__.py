"""XGBoost adapter for tickserve: native JSON/UBJ boosters, multi:softprob.

Prediction path, measured on the 60k-tick model (50 rounds x 3 trees, 43 features) on this
2-core machine while other jobs shared it: wall best / median per call, CPU at the median.

    rows  booster nthread   inplace_predict              predict(DMatrix)
       1  0 (both cores)    280 /  294 us, CPU  580 us    373 /  403 us, CPU  792 us
       1  1                 284 /  322 us, CPU  351 us    378 /  407 us, CPU  406 us
    1000  0 (both cores)   2.25 / 3.03 ms, CPU 6.0 ms    3.07 / 3.28 ms, CPU 6.5 ms
    1000  1                3.93 / 4.30 ms, CPU 4.6 ms    4.57 / 5.32 ms, CPU 5.3 ms

inplace_predict wins at both sizes (same numbers, bit for bit), so it is the only path.
A single row costs ~300 us whatever the tree count (1 round: 350 us): XGBoost's per-call
overhead, ~180 us in C++ and the rest in its Python wrapper. A second OpenMP thread buys
nothing there and doubles the CPU (it spins); on a busy box its barrier can wait for a
descheduled thread (7 ms per single-row call was seen once here). So small batches run on
a one-thread copy of the booster and big ones on both cores. nthread is fixed at load:
inplace_predict is thread-safe and lock-free, set_param during predictions is not.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from tickserve.plugin import (
    ModelAdapter,
    ModelManifest,
    Progress,
    TrainingData,
    TrainingResult,
    check_feature_order,
    hookimpl,
)

MODEL_FILE = "model.ubj"
FORMATS = (".json", ".ubj")

# The LightGBM seed's parameters, translated. grow_policy/max_leaves mirror LightGBM's
# leaf-wise num_leaves 127. XGBoost limits leaves by hessian, not rows: the multiclass
# hessian is 2p(1-p) per row and class, about 0.41 averaged over the classes at this
# data's priors (SELL .43, HOLD .14, BUY .43), so 160 ~ 400 rows x 0.4. Leaves whose
# predictions sharpen need more rows than that, which errs towards regularising.
SEED_PARAMS: dict[str, Any] = {
    "objective": "multi:softprob",
    "num_class": 3,
    "eval_metric": "mlogloss",
    "tree_method": "hist",
    "grow_policy": "lossguide",
    "max_leaves": 127,
    "max_depth": 10,
    "min_child_weight": 160,
    "eta": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "reg_lambda": 10,
    "verbosity": 0,
    "seed": 42,
}
NUM_BOOST_ROUND = 600
EARLY_STOPPING_ROUNDS = 50
# Below this many rows one thread is about as fast at half the CPU (see the module doc).
SINGLE_THREAD_ROWS = 256
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class XGBoostAdapter(ModelAdapter):
    name = "xgboost"
    native_threads = None  # the thread rule leaves it alone: a one-thread booster for few rows, all cores else

    def __init__(self, booster: xgb.Booster, feature_names: list[str]) -> None:
        self.booster = booster
        self.feature_names = feature_names
        self.single_thread = booster.copy()
        self.single_thread.set_param({"nthread": 1})
        # every core, named: 0 would follow the calling thread's OpenMP setting, which another
        # adapter's thread rule may have set to 1 on this worker thread
        self.booster.set_param({"nthread": CORES})

    @classmethod
    def load(cls, model_dir: Path, manifest: ModelManifest) -> XGBoostAdapter:
        if Path(manifest.model_file).suffix not in FORMATS:
            raise ValueError(f"{manifest.model_file!r}: an XGBoost model must be a native .json or .ubj file")
        try:
            booster = xgb.Booster(model_file=str(model_dir / manifest.model_file))
        except xgb.core.XGBoostError as exc:  # keep "Check failed: ...", not the log prefix and C++ stack
            raise ValueError(re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", str(exc).splitlines()[0])) from None
        if booster.num_features() != len(manifest.feature_names):
            raise ValueError(
                f"booster has {booster.num_features()} features, manifest lists {len(manifest.feature_names)}"
            )
        learner = json.loads(booster.save_config())["learner"]
        objective, classes = learner["objective"]["name"], int(learner["learner_model_param"]["num_class"])
        if (objective, classes) != ("multi:softprob", 3):
            raise ValueError(f"booster objective is {objective} with {classes} classes, need multi:softprob with 3")
        if booster.feature_names is None:
            booster.feature_names = list(manifest.feature_names)
        else:
            check_feature_order(list(booster.feature_names), manifest)
        return cls(booster, list(manifest.feature_names))

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        booster = self.single_thread if len(features) < SINGLE_THREAD_ROWS else self.booster
        probs = booster.inplace_predict(features, validate_features=False)
        probs = probs.reshape(len(features), 3).astype(np.float64)  # 0 rows come back 1-D
        # XGBoost's softmax is float32, so rows sum to 1 only to ~1e-7; the rules downstream
        # expect SELL + HOLD + BUY == 1 in float64. Changes each value by < 1e-7.
        return probs / probs.sum(axis=1, keepdims=True)

    def feature_importance(self) -> dict[str, float]:
        gains = self.booster.get_score(importance_type="total_gain")
        return {name: float(gains.get(name, 0.0)) for name in self.feature_names}

    def metadata(self) -> dict[str, str]:
        return {"xgboost_version": xgb.__version__, "boosted_rounds": str(self.booster.num_boosted_rounds())}

    @classmethod
    def train(cls, data: TrainingData, params: dict[str, Any], out_dir: Path, progress: Progress) -> TrainingResult:
        params = {**SEED_PARAMS, **params}
        rounds = int(params.pop("num_boost_round", NUM_BOOST_ROUND))
        stopping = int(params.pop("early_stopping_rounds", EARLY_STOPPING_ROUNDS))
        names = list(data.feature_names)
        train_set = xgb.QuantileDMatrix(data.x_train, data.y_train, feature_names=names)
        valid_set = xgb.QuantileDMatrix(data.x_valid, data.y_valid, feature_names=names, ref=train_set)

        class Report(xgb.callback.TrainingCallback):
            def after_iteration(self, model, epoch: int, evals_log) -> bool:
                metric, values = list(evals_log["valid"].items())[-1]  # the one early stopping watches
                progress(epoch + 1, rounds, f"valid {metric} {values[-1]:.4f}")
                return False

        booster = xgb.train(
            params,
            train_set,
            num_boost_round=rounds,
            evals=[(valid_set, "valid")],
            early_stopping_rounds=stopping or None,
            verbose_eval=False,
            callbacks=[Report()],
        )
        # Like LightGBM's best_iteration: the number of rounds kept (XGBoost's is 0-based).
        best = booster.best_iteration + 1 if stopping else booster.num_boosted_rounds()
        trained = booster.num_boosted_rounds()  # early stopping ends before `rounds`: say where
        stopped = f"stopped early at round {trained} of {rounds}, " if trained < rounds else ""
        progress(trained, trained, f"{stopped}best iteration {best}")
        booster[:best].save_model(str(out_dir / MODEL_FILE))
        recorded = {**params, "num_boost_round": rounds, "early_stopping_rounds": stopping}
        return TrainingResult(MODEL_FILE, recorded, {"best_iteration": float(best)})


@hookimpl
def tickserve_adapters() -> list[type[ModelAdapter]]:
    return [XGBoostAdapter]
