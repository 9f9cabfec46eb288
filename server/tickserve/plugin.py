"""The plugin author's API: everything a model adapter imports from tickserve.

    from tickserve.plugin import ModelAdapter, TrainingData, hookimpl

    class MyAdapter(ModelAdapter):
        name = "mymodel"
        ...

    @hookimpl
    def tickserve_adapters():
        return [MyAdapter]

Register the module under the entry-point group "tickserve.plugins" in your
distribution's pyproject.toml and `pip install` it; the server finds it.
This module is stable: names here keep their meaning across minor versions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pluggy

from .features.calendar import SessionCalendar
from .models.manifest import ModelManifest

if TYPE_CHECKING:
    from .models.repository import LoadedModel
    from .plugins.contract import ContractReport

PROJECT_NAME = "tickserve"
ENTRY_POINT_GROUP = "tickserve.plugins"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marks a plugin function as an implementation of a tickserve hook."""


@dataclass
class TrainingData:
    """A time-ordered split handed to `ModelAdapter.train`. Labels index `classes`."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    feature_names: list[str]
    classes: list[str]


@dataclass
class TrainingResult:
    """What `ModelAdapter.train` wrote: the artifact's file name (inside the
    model directory), the parameters used, and anything worth recording."""

    model_file: str
    parameters: dict[str, Any]
    info: dict[str, float] = field(default_factory=dict)
    #: adapter-specific settings to store in the manifest's "options" (read back at load time)
    options: dict[str, Any] = field(default_factory=dict)


Progress = Callable[[int, int, str], None]
"""progress(done, total, message): report training progress."""


class ModelAdapter(ABC):
    """Serves one kind of model file. One instance per loaded model version.

    The server calls `load` once, then `predict_proba` from worker threads
    (never concurrently for the same stream, but possibly concurrently across
    streams: keep it thread-safe, which native boosters are).

    The contract (`tickserve check-plugin NAME` or `check_adapter(cls)` runs it):
    - probabilities: float64 (n, 3) in the order SELL, HOLD, BUY, finite, in [0, 1], each row
      summing to 1;
    - a row's answer does not depend on the batch it is in, bit for bit (the server batches rows
      of different streams into one call), nor on the call (deterministic), nor on other threads
      calling at the same time;
    - threads: the server's parallelism is its worker threads, one model call each. Before a
      call it limits the calling thread's native pools (OpenMP, BLAS, MKL; via threadpoolctl)
      to `native_threads`, by default 1; an adapter starts no threads of its own. A native pool
      left at its default starts a thread per core inside every call, and on a busy machine a
      single row then costs 100 times more. An adapter that measured better (the built-ins: one
      thread for a few rows, every core for big batches) sets `native_threads = None` and
      passes its thread count explicitly on every call, never more than the cores;
    - storage: `load` never unpickles. Unpickling a file runs any code written into it, and a
      model directory is data an operator copies around. Store a model as numpy `.npz` (read
      with `np.load(path, allow_pickle=False)`), JSON, LightGBM text, XGBoost JSON/UBJ or ONNX;
      never pickle, joblib or `torch.save` files (a scikit-learn model: store its fitted
      arrays, as examples/sklearn-adapter does).
    """

    #: The adapter's name, as written in a model manifest's "adapter" field.
    name: ClassVar[str]

    #: Native threads (OpenMP, BLAS) one `predict_proba` call may use; the server limits the calling
    #: thread's pools to it. None: the adapter sets its own thread count on every call.
    native_threads: ClassVar[int | None] = 1

    @classmethod
    @abstractmethod
    def load(cls, model_dir: Path, manifest: ModelManifest) -> ModelAdapter:
        """Load the model stored in `model_dir` (its files, per `manifest.model_file`)."""

    @abstractmethod
    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (n, len(classes)) for a float64 batch (n, len(feature_names)).

        float64, each row summing to 1 within 1e-12 (renormalise a float32 runtime's output)."""

    def feature_importance(self) -> dict[str, float]:
        """Importance per feature name (larger = more important); empty if unknown."""
        return {}

    def metadata(self) -> dict[str, str]:
        """Extra facts about the loaded model (library version, trees...), shown by GetModel."""
        return {}

    @classmethod
    def compile(cls, model_dir: Path, manifest: ModelManifest, *, quick: bool = False) -> str | None:
        """Build a faster, exact form of the model in `model_dir` for `load` to use; say what was built. Optional.

        Called by `tickserve compile` and (with quick=True: seconds, not minutes) by
        `tickserve train`, never while serving. Keep the artifact in `model_dir`, keyed by
        what it depends on (the model file's hash, the compiler, the CPU), so `load` can
        tell a stale one. None: nothing to compile."""
        return None

    @classmethod
    def train(cls, data: TrainingData, params: dict[str, Any], out_dir: Path, progress: Progress) -> TrainingResult:
        """Fit a model on `data`, write its files into `out_dir`. Optional."""
        raise NotImplementedError(f"adapter {cls.name!r} does not support training")


def check_feature_order(stored: list[str] | None, manifest: ModelManifest) -> None:
    """ValueError when a model file's own feature names (`stored`; None or empty: the format
    stores none) are the manifest's in another order or other names: the model would be served
    its columns shuffled and answer different probabilities without any error."""
    expected = list(manifest.feature_names)
    if not stored or list(stored) == expected:
        return
    at = next((i for i, (a, b) in enumerate(zip(stored, expected)) if a != b), min(len(stored), len(expected)))
    got = stored[at] if at < len(stored) else "(none)"
    want = expected[at] if at < len(expected) else "(none)"
    raise ValueError(
        f"the model file's features differ from the manifest's feature_names: position {at} is {got!r} "
        f"in the model file and {want!r} in the manifest"
    )


def check_adapter(adapter: type[ModelAdapter], model_dir: Path | None = None) -> ContractReport:
    """Run the adapter contract on `adapter` (see `ModelAdapter`): train it on synthetic data (or
    load the model in `model_dir`, for an adapter without `train`), then check storage, load,
    probabilities, batch == single rows, determinism, concurrent calls and threads. A report of
    named checks; `report.ok`, `report.lines()`; in a test: `assert report.ok, report.summary()`."""
    from .plugins.contract import check_adapter as run

    return run(adapter, model_dir)


def installed_adapter(name: str) -> type[ModelAdapter]:
    """The adapter class that the installed plugins (built-ins included) register under `name`,
    found as the server finds it: for an adapter that builds on another's models (the ONNX
    exporter trains with the LightGBM or XGBoost adapter) without importing that plugin.
    KeyError naming the installed adapters when none has that name."""
    from .plugins.manager import load_plugins

    adapters = load_plugins().adapters
    if name not in adapters:
        raise KeyError(f"no installed plugin provides the adapter {name!r} (installed: {', '.join(sorted(adapters))})")
    return adapters[name]


class ComposedAdapter(ModelAdapter):
    """An adapter built from other loaded models (an ensemble), not from a model file.

    The repository loads the members named by the manifest's "members" list first and
    calls `from_members` instead of `load`; an adapter that is not a ComposedAdapter
    cannot serve a manifest with members."""

    #: Its calls are its members' calls, each under its member's own thread rule.
    native_threads: ClassVar[int | None] = None

    @classmethod
    def load(cls, model_dir: Path, manifest: ModelManifest) -> ModelAdapter:
        raise NotImplementedError(f"adapter {cls.name!r} is built from its members: the manifest needs 'members'")

    @classmethod
    @abstractmethod
    def from_members(cls, manifest: ModelManifest, members: list[tuple[LoadedModel, float]]) -> ModelAdapter:
        """Build from (loaded member, weight) pairs, in the manifest's order. Each member's
        `predict(x)` gives (raw, calibrated) probabilities for its own feature columns."""


__all__ = [
    "ENTRY_POINT_GROUP",
    "ComposedAdapter",
    "ModelAdapter",
    "ModelManifest",
    "Progress",
    "SessionCalendar",
    "TrainingData",
    "TrainingResult",
    "check_adapter",
    "check_feature_order",
    "hookimpl",
    "installed_adapter",
]
