"""The adapter contract, run on one adapter class: what `tickserve check-plugin NAME` prints and
`tickserve.plugin.check_adapter` returns.

The contract is the one `ModelAdapter`'s docstring states and the server relies on. Each check
is named, and a failure names the value that broke it:

    class          a ModelAdapter subclass with a name and a valid `native_threads`
    model          `train` on synthetic data from the real feature stage (or the --model-dir given)
    storage        no pickle in the model directory (by name, pickle header, object arrays in .npy/.npz)
    load           `load` works and unpickles nothing (the `pickle.find_class` audit event)
    serves         a copy of the directory, loaded by the server's own repository, is READY
    roundtrip      that second load predicts the same bits as the first
    threads        single-row calls under the thread rule start no thread
    probabilities  float64 (n, 3), finite, in [0, 1], rows summing to 1 within 1e-6
    batch          a row predicts the same bits alone, in chunks and in the whole batch
    deterministic  the same batch twice gives the same bits, and the input is left unchanged
    concurrent     threads calling at once get what one thread gets
    latency        single-row p50 under the thread rule (information, never fails)

A check that cannot run because an earlier one failed is skipped, and the report is not ok.
"""

from __future__ import annotations

import enum
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..evaluation.labels import CLASSES
from ..features import FEATURE_INDEX, FEATURE_NAMES, FEATURE_STAGE_VERSION, batch_features
from ..features.config import FeatureConfig
from ..models.manifest import ModelManifest, file_sha256
from ..models.repository import ModelRepository, ModelState
from ..models.threads import libraries_loaded, limit_this_thread
from ..plugin import ComposedAdapter, ModelAdapter, TrainingData
from ..simulate import simulate
from .storage import pickled_files, watching_unpickling

SUM_TOLERANCE = 1e-6  # what the repository's load check allows a row's sum to be off by
CHECK_NAME, CHECK_VERSION = "contract-check", "1"
_TRAIN_ROWS, _VALID_ROWS, _CHECK_ROWS = 1500, 500, 400
_THREADS = 4  # concurrent callers: more than the cores of a small box, as a busy server has
_LATENCY_CALLS, _LATENCY_BUDGET_S = 200, 1.0
# after these fail the model still loads and answers: the later checks still say something
_NOT_BLOCKING = frozenset({"storage", "serves", "roundtrip", "threads", "batch", "deterministic", "concurrent"})


class Outcome(enum.Enum):
    PASS = "pass"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    message: str

    @property
    def line(self) -> str:
        return f"{self.outcome.value:4s}  {self.name:13s} {self.message}"


@dataclass
class ContractReport:
    adapter: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.outcome is Outcome.PASS for c in self.checks)

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.outcome is Outcome.FAIL]

    def lines(self) -> list[str]:
        return [c.line for c in self.checks]

    def summary(self) -> str:
        verdict = "meets the contract" if self.ok else f"breaks the contract ({len(self.failed())} failed)"
        return "\n".join([f"adapter {self.adapter!r} {verdict}", *self.lines()])


class _Failed(Exception):
    """One check failed; its message names the value."""


def check_adapter(adapter: type[ModelAdapter], model_dir: Path | None = None) -> ContractReport:
    """Run every check on `adapter`: trained here on synthetic data, or the model in `model_dir`."""
    report = ContractReport(getattr(adapter, "name", repr(adapter)))
    with tempfile.TemporaryDirectory(prefix="tickserve-check-") as tmp:
        _Run(adapter, report, Path(tmp)).all(model_dir)
    return report


def assert_contract(adapter: type[ModelAdapter], model_dir: Path | None = None) -> ContractReport:
    """For a plugin's own test suite: AssertionError listing every check when one fails."""
    report = check_adapter(adapter, model_dir)
    assert report.ok, report.summary()
    return report


class _Run:
    """One run of the checks; each step records its Check and hands the next what it needs."""

    def __init__(self, adapter: type[ModelAdapter], report: ContractReport, tmp: Path) -> None:
        self.adapter, self.report, self.tmp = adapter, report, tmp

    def step(self, name: str, fn: Callable[[], str]) -> bool:
        try:
            message = fn()
        except _Failed as exc:
            self.report.checks.append(Check(name, Outcome.FAIL, str(exc)))
            return False
        except Exception as exc:  # noqa: BLE001 - an adapter's own error is that check's failure
            self.report.checks.append(Check(name, Outcome.FAIL, f"raised {type(exc).__name__}: {exc}"))
            return False
        self.report.checks.append(Check(name, Outcome.PASS, message))
        return True

    def skip(self, names: list[str], why: str) -> None:
        self.report.checks.extend(Check(n, Outcome.SKIP, why) for n in names)

    def all(self, model_dir: Path | None) -> None:
        steps: list[tuple[str, Callable[[], str]]] = [
            ("class", self._class),
            ("model", lambda: self._model(model_dir)),
            ("storage", self._storage),
            ("load", self._load),
            ("serves", self._serves),
            ("roundtrip", self._roundtrip),
            ("threads", self._threads),
            ("probabilities", self._probabilities),
            ("batch", self._batch),
            ("deterministic", self._deterministic),
            ("concurrent", self._concurrent),
            ("latency", self._latency),
        ]
        for at, (name, fn) in enumerate(steps):
            loaded_anyway = name == "load" and hasattr(self, "model")  # it loaded, by unpickling
            if not self.step(name, fn) and name not in _NOT_BLOCKING and not loaded_anyway:
                self.skip([later for later, _ in steps[at + 1 :]], f"not run: {name} failed")
                return

    # --- the checks, in order ---------------------------------------------------------

    def _class(self) -> str:
        cls = self.adapter
        if not (isinstance(cls, type) and issubclass(cls, ModelAdapter)):
            raise _Failed(f"{cls!r} is not a ModelAdapter subclass")
        if issubclass(cls, ComposedAdapter):
            raise _Failed(f"{cls.__name__} is built from other models (ComposedAdapter): check its members' adapters")
        if not isinstance(getattr(cls, "name", None), str) or not cls.name:
            raise _Failed(f"{cls.__name__} has no name (class attribute `name`, as manifests write it)")
        threads = cls.native_threads
        if threads is not None and not (isinstance(threads, int) and threads >= 1):
            raise _Failed(f"native_threads is {threads!r}: a positive int, or None")
        return f"{cls.__module__}.{cls.__qualname__}, native_threads={threads}"

    def _model(self, model_dir: Path | None) -> str:
        if model_dir is not None:
            return self._given_model(Path(model_dir))
        if self.adapter.train.__func__ is ModelAdapter.train.__func__:  # not overridden
            raise _Failed(f"{self.adapter.name!r} has no `train`: pass a model directory it can load (--model-dir)")
        data, self.x = synthetic_data()
        self.dir = self.tmp / "trained"
        self.dir.mkdir()
        started = time.perf_counter()
        result = self.adapter.train(data, {}, self.dir, lambda done, total, message: None)
        seconds = time.perf_counter() - started
        if not (self.dir / result.model_file).is_file():
            raise _Failed(f"train returned model_file {result.model_file!r}, which it did not write")
        self.manifest = ModelManifest(
            name=CHECK_NAME,
            version=CHECK_VERSION,
            adapter=self.adapter.name,
            model_file=result.model_file,
            feature_names=list(data.feature_names),
            feature_stage_version=FEATURE_STAGE_VERSION,
            parameters=dict(result.parameters),
            options=dict(result.options),
            model_sha256=file_sha256(self.dir / result.model_file),
        )
        self.manifest.save(self.dir)
        return (
            f"trained on {len(data.x_train)} synthetic rows x {len(data.feature_names)} features in "
            f"{seconds:.2f} s: {result.model_file}"
        )

    def _given_model(self, model_dir: Path) -> str:
        self.manifest = ModelManifest.load(model_dir)
        if self.manifest.adapter != self.adapter.name:
            raise _Failed(f"{model_dir}'s manifest names adapter {self.manifest.adapter!r}, not {self.adapter.name!r}")
        unknown = [n for n in self.manifest.feature_names if n not in FEATURE_INDEX]
        if unknown:
            raise _Failed(f"the feature stage cannot produce feature(s) {', '.join(unknown)}")
        self.dir = model_dir
        frame = simulate(_TRAIN_ROWS + _CHECK_ROWS, seed=1)
        rows = batch_features(frame, FeatureConfig())[:, [FEATURE_INDEX[n] for n in self.manifest.feature_names]]
        self.x = _check_rows(rows[-_CHECK_ROWS:])
        return f"{model_dir}: {self.manifest.model_file}, {len(self.manifest.feature_names)} features"

    def _storage(self) -> str:
        found = pickled_files(self.dir)
        if found:
            raise _Failed("pickle in the model directory: " + "; ".join(found) + " (store arrays as .npz or JSON)")
        files = sorted(str(p.relative_to(self.dir)) for p in self.dir.rglob("*") if p.is_file())
        return f"no pickle in {len(files)} file(s): {', '.join(files)}"

    def _load(self) -> str:
        with watching_unpickling() as unpickled:
            self.model = self.adapter.load(self.dir, self.manifest)
        libraries_loaded()  # as the repository does after a load: the thread rule covers its libraries
        if unpickled:
            raise _Failed(f"load unpickled {', '.join(sorted(set(unpickled)))}: `load` must never unpickle")
        if not isinstance(self.model, ModelAdapter):
            raise _Failed(f"load returned {type(self.model).__name__}, not an instance of the adapter")
        return f"{type(self.model).__name__} from {self.manifest.model_file}, nothing unpickled"

    def _serves(self) -> str:
        root = self.tmp / "repository"
        copy = root / self.manifest.name / self.manifest.version
        shutil.copytree(self.dir, copy)
        repository = ModelRepository(root, {self.adapter.name: self.adapter})
        (entry,) = repository.load(self.manifest.name, self.manifest.version)
        if entry.state is not ModelState.READY:
            raise _Failed(f"the server's repository loads it {entry.state.value}: {entry.reason}")
        self.second = entry.model.adapter
        return "a copy of the model directory loads READY in the server's repository (ticks to signal rules)"

    def _roundtrip(self) -> str:
        if not hasattr(self, "second"):
            raise _Failed("no second load to compare (see serves)")
        first, second = self._predict(self.model, self.x), self._predict(self.second, self.x)
        _same_bits(first, second, "first load", "a load of a copy of its directory", "what was saved is not what loads")
        return f"a load of a copy of the directory predicts the same bits on {len(self.x)} rows"

    def _threads(self) -> str:
        if not Path("/proc/self/task").is_dir():
            return "not checked: no /proc/self/task to count threads on this OS"
        # In a fresh thread, as a server worker is: OpenMP keeps a pool per calling thread, so a
        # library ignoring the rule starts its threads here, and they outlive the calls.
        counted: list[int] = []

        def calls() -> None:
            limit_this_thread(self.adapter.native_threads)
            before = _os_threads()
            for row in self.x[:20]:
                self.model.predict_proba(row[None, :].copy())
            counted.append(_os_threads() - before)

        worker = threading.Thread(target=calls, name="tickserve-check-threads")
        worker.start()
        worker.join()
        if not counted:
            raise _Failed("single-row calls raised in a fresh thread (see the log)")
        if counted[0] > 0:
            raise _Failed(
                f"20 single-row calls from a fresh thread started {counted[0]} thread(s) under the thread rule "
                f"(native_threads={self.adapter.native_threads}): an adapter uses the threads it is given"
            )
        return (
            f"20 single-row calls from a fresh thread under native_threads={self.adapter.native_threads} started none"
        )

    def _probabilities(self) -> str:
        p = self.p = self._predict(self.model, self.x)
        if p.dtype != np.float64:
            raise _Failed(f"dtype {p.dtype}, not float64")
        if p.shape != (len(self.x), len(CLASSES)):
            raise _Failed(f"shape {p.shape} for {len(self.x)} rows, not ({len(self.x)}, {len(CLASSES)})")
        bad = ~np.isfinite(p).all(axis=1)
        if bad.any():
            raise _Failed(f"row {_first(bad)} is not finite: {p[_first(bad)].tolist()}")
        bad = ((p < 0) | (p > 1)).any(axis=1)
        if bad.any():
            raise _Failed(f"row {_first(bad)} has a probability outside [0, 1]: {p[_first(bad)].tolist()}")
        off = np.abs(p.sum(axis=1) - 1.0)
        if off.max() > SUM_TOLERANCE:
            row = int(np.argmax(off))
            raise _Failed(
                f"row {row} sums to {float(p[row].sum())!r} ({p[row].tolist()}), not 1 within {SUM_TOLERANCE}"
            )
        return f"({len(p)}, {len(CLASSES)}) float64, finite, in [0, 1], rows sum to 1 within {off.max():.1e}"

    def _batch(self) -> str:
        alone = np.vstack([self._predict(self.model, self.x[i : i + 1]) for i in range(len(self.x))])
        _same_bits(alone, self.p, "alone", f"in a batch of {len(self.x)}", _BATCHING)
        for size in (2, 7, 64):
            chunks = np.vstack([self._predict(self.model, self.x[i : i + size]) for i in range(0, len(self.x), size)])
            _same_bits(chunks, self.p, f"in chunks of {size}", f"in a batch of {len(self.x)}", _BATCHING)
        return f"{len(self.x)} rows: alone, in chunks of 2, 7 and 64 and all at once give the same bits"

    def _deterministic(self) -> str:
        x = self.x.copy()
        for call in range(2, 4):
            _same_bits(self._predict(self.model, self.x), self.p, f"call {call}", "call 1")
        if not np.array_equal(x, self.x):
            raise _Failed("predict_proba changed its input array (the server's rows are shared)")
        return "3 calls on the same batch give the same bits; the input is left unchanged"

    def _concurrent(self) -> str:
        # each thread's calls (start, rows), answered first by this thread alone, then all at once
        plans = [
            [(start, size) for size in (1, 5, 1, 32, 1) for start in range(k, len(self.x) - size, _THREADS * 7)]
            for k in range(_THREADS)
        ]
        alone = [[self._predict(self.model, self.x[a : a + n]) for a, n in plan] for plan in plans]
        barrier = threading.Barrier(_THREADS)
        answers: list[list[np.ndarray]] = [[] for _ in plans]
        errors: list[str] = []

        def call(k: int) -> None:
            limit_this_thread(self.adapter.native_threads)  # as a server worker thread runs
            try:
                barrier.wait(timeout=30)
                answers[k].extend(self._predict(self.model, self.x[a : a + n]) for a, n in plans[k])
            except Exception as exc:  # noqa: BLE001 - reported as this check's failure
                errors.append(f"thread {k}: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=call, args=(k,)) for k in range(_THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise _Failed("; ".join(errors))
        for k, plan in enumerate(plans):
            for (start, size), got, want in zip(plan, answers[k], alone[k]):
                _same_bits(
                    got,
                    want,
                    f"+{start} from thread {k} ({size} rows a call, {_THREADS} threads at once)",
                    "the same call alone",
                    "calls across streams run at once in worker threads",
                )
        calls = sum(len(plan) for plan in plans)
        return f"{_THREADS} threads, {calls} calls at once: the same bits as each call alone"

    def _latency(self) -> str:
        limit_this_thread(self.adapter.native_threads)
        row = self.x[:1].copy()
        times: list[float] = []
        deadline = time.perf_counter() + _LATENCY_BUDGET_S
        while len(times) < _LATENCY_CALLS and time.perf_counter() < deadline:
            started = time.perf_counter()
            self.model.predict_proba(row)
            times.append(time.perf_counter() - started)
        p50 = statistics.median(times) * 1e3
        return f"single row p50 {p50:.3f} ms over {len(times)} calls, native_threads={self.adapter.native_threads}"

    def _predict(self, model: ModelAdapter, x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_proba(x))


# --- helpers ------------------------------------------------------------------------------


def synthetic_data(seed: int = 0) -> tuple[TrainingData, np.ndarray]:
    """A TrainingData split of the real feature stage's rows on simulated ticks (so scales are the
    server's), labelled by a random linear rule with noise (all three classes, learnable), and
    held-out rows to check predictions on."""
    n = _TRAIN_ROWS + _VALID_ROWS + _CHECK_ROWS
    x = batch_features(simulate(n, seed=seed), FeatureConfig())
    rng = np.random.default_rng(seed)
    scale = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    y = np.argmax(z @ rng.normal(size=(x.shape[1], len(CLASSES))) + rng.gumbel(size=(n, len(CLASSES))), axis=1)
    a, b = _TRAIN_ROWS, _TRAIN_ROWS + _VALID_ROWS
    data = TrainingData(x[:a], y[:a], x[a:b], y[a:b], list(FEATURE_NAMES), list(CLASSES))
    return data, _check_rows(x[b:])


def _check_rows(x: np.ndarray) -> np.ndarray:
    """Held-out rows plus a row of zeros (the repository's own smoke test sends zeros)."""
    return np.ascontiguousarray(np.vstack([x, np.zeros((1, x.shape[1]))]))


_BATCHING = "the server batches rows of different streams into one call: a signal must not depend on its neighbours"


def _same_bits(got: np.ndarray, want: np.ndarray, got_what: str, want_what: str, why: str = "") -> None:
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        raise _Failed(f"{got_what}: shape {got.shape}, {want_what}: {want.shape}")
    differ = (got != want).any(axis=1) if got.ndim == 2 else np.atleast_1d(got != want)
    if differ.any():
        row = _first(differ)
        diff = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max())
        raise _Failed(
            f"row {row} {got_what}: {got[row].tolist()}, {want_what}: {want[row].tolist()} "
            f"({int(differ.sum())} row(s) differ, by up to {diff:.3g})" + (f"; {why}" if why else "")
        )


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))
