"""`LightGBMAdapter.train_dask`: one fold fitted by `lightgbm.dask` across a Dask cluster's workers.

The model written is the booster's ordinary text model, so `load` and serving do not
know how it was trained. Two differences from `train`, both from lightgbm.dask:

- no early stopping (lightgbm.dask does not support it): every round is trained with
  the validation loss recorded per round, and the model is saved at the round with the
  lowest loss, which is the round early stopping would have kept whenever the minimum
  comes before the last `early_stopping_rounds` rounds;
- data-parallel trees: each worker bins its part of the rows, so the trees are not the
  single-process ones bit for bit; the model is of the same quality (tested).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from tickserve.plugin import Progress, TrainingData, TrainingResult


def train_dask(
    client,
    data: TrainingData,
    params: dict[str, Any],
    out_dir: Path,
    progress: Progress,
    *,
    seed_params: dict[str, Any],
    rounds: int,
    stopping: int,
    model_file: str,
) -> TrainingResult:
    import dask.array as da
    import lightgbm as lgb

    params = {**seed_params, **params}
    rounds = int(params.pop("num_boost_round", rounds))
    stopping = int(params.pop("early_stopping_rounds", stopping))
    # the sklearn wrapper sets num_class from the labels it sees: with a class missing from a fold's
    # training ticks it would write a binary model the manifest's three classes refuse at load
    num_class = int(params.pop("num_class", len(data.classes)))
    seen = np.unique(data.y_train)
    if len(seen) != num_class:
        raise ValueError(
            f"lightgbm.dask needs every class among a fold's training labels, got {len(seen)} of {num_class}: "
            "use a longer --horizon, more data, or train without --dask"
        )
    workers = max(1, len(client.scheduler_info()["workers"]))

    def parts(x: np.ndarray, y: np.ndarray):
        rows = max(1, -(-len(x) // workers))  # one block of rows per worker
        return da.from_array(x, chunks=(rows, x.shape[1])), da.from_array(y, chunks=rows)

    x_train, y_train = parts(data.x_train, data.y_train)
    x_valid, y_valid = parts(data.x_valid, data.y_valid)
    progress(0, rounds, f"lightgbm.dask on {workers} worker(s)")
    model = lgb.DaskLGBMClassifier(client=client, n_estimators=rounds, **params)
    # eval_X/eval_y since LightGBM 4.7 (eval_set deprecated there); the plugin allows 4.3
    evals = (
        {"eval_X": (x_valid,), "eval_y": (y_valid,)}
        if "eval_X" in inspect.signature(model.fit).parameters
        else {"eval_set": [(x_valid, y_valid)]}
    )
    model.fit(x_train, y_train, eval_names=["valid"], feature_name=data.feature_names, **evals)
    losses = np.asarray(model.evals_result_["valid"][params.get("metric", "multi_logloss")])
    best = int(np.argmin(losses)) + 1  # the first round with the lowest loss, as early stopping keeps
    progress(rounds, rounds, f"best iteration {best} (valid multi_logloss {losses[best - 1]:.4f})")
    model.booster_.save_model(str(out_dir / model_file), num_iteration=best)
    recorded = {**params, "num_boost_round": rounds, "early_stopping_rounds": stopping, "trained_with": "lightgbm.dask"}
    return TrainingResult(model_file, recorded, {"best_iteration": float(best), "workers": float(workers)})
