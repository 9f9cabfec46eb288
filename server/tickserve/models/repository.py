"""The model repository: `models/<name>/<version>/` directories, loaded through adapters.

Every version is loaded at start-up. One that fails (bad manifest, unknown
adapter, corrupt file, features the stage cannot produce) is FAILED with a
reason and every other model still serves. A request that names no version
gets the newest READY one (versions compare as integers when they are).

Models can be loaded, reloaded and unloaded while serving. A new model is
loaded completely before it replaces the old entry in one dict assignment,
so a request sees the old model or the new one, never a half-loaded one; a
stream holds the `LoadedModel` it opened with until it ends. A reload that
fails leaves the version already serving in place. Ensembles (manifests
with members) are loaded after the models they are built from.
"""

from __future__ import annotations

import enum
import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..core.calibration import Calibrator
from ..errors import FailedPrecondition, InvalidArgument, ModelLoadError, NotFound, Unavailable
from ..evaluation.labels import CLASSES
from ..features import FEATURE_INDEX, FEATURE_STAGE_VERSION, missing_features
from ..features.spec import COMPATIBLE_STAGE_VERSIONS
from ..plugin import ComposedAdapter, ModelAdapter
from .load_check import check_serving_path
from .manifest import MANIFEST_FILE, ModelManifest, check_name, file_sha256
from .threads import libraries_loaded, limit_this_thread

log = logging.getLogger(__name__)


class ModelState(enum.Enum):
    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"
    UNLOADED = "UNLOADED"


@dataclass
class LoadedModel:
    """A READY model: what the serving path needs, resolved once at load time."""

    manifest: ModelManifest
    adapter: ModelAdapter
    feature_index: np.ndarray  # positions of the model's features in the stage's vector
    importance: list[tuple[str, float]]  # largest first
    calibrator: Calibrator

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(raw, calibrated) class probabilities for the model's own feature columns."""
        limit_this_thread(getattr(self.adapter, "native_threads", 1))  # the thread rule (models/threads.py)
        raw = self.adapter.predict_proba(x)
        return raw, self.calibrator(raw)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    version: str
    path: Path
    state: ModelState
    reason: str = ""
    manifest: ModelManifest | None = None
    model: LoadedModel | None = None


def version_key(version: str) -> tuple:
    numeric = version.isascii() and version.isdecimal()  # "²".isdigit() is true, int("²") fails
    return (0, int(version), "") if numeric else (1, 0, version)


def _shares(importance: dict[str, float]) -> list[tuple[str, float]]:
    """Importance as each feature's share of the total, largest first: adapters measure on their
    own scales (LightGBM's total gain, XGBoost's, an example's |weight|), shares compare."""
    total = sum(abs(v) for v in importance.values())
    shares = {k: abs(v) / total for k, v in importance.items()} if total > 0 else dict.fromkeys(importance, 0.0)
    return sorted(shares.items(), key=lambda kv: -kv[1])


def _smoke_test(adapter: ModelAdapter, n_features: int) -> None:
    """Catch a model that loads but cannot answer (wrong class count...) before it is READY."""
    out = np.asarray(adapter.predict_proba(np.zeros((2, n_features))))
    if out.shape != (2, len(CLASSES)) or not np.isfinite(out).all():
        raise ModelLoadError(
            f"predicts shape {out.shape} (finite: {bool(np.isfinite(out).all())}) for 2 rows, "
            f"expected (2, {len(CLASSES)}) finite probabilities for {', '.join(CLASSES)}"
        )


def _is_ensemble(path: Path) -> bool:
    """Only orders the loading (members first): any manifest problem is reported by the load itself."""
    try:
        return bool(ModelManifest.load(path).members)
    except Exception:  # noqa: BLE001 - the model's own load marks it FAILED with the reason
        return False


class ModelRepository:
    def __init__(self, root: Path, adapters: dict[str, type[ModelAdapter]], default_model: str = "") -> None:
        self.root = Path(root)
        self.adapters = adapters
        self._configured_default = default_model
        self._entries: dict[tuple[str, str], ModelEntry] = {}
        self._changes = threading.Lock()  # one load/unload at a time; readers never wait
        # `serve --processes N`: load/reload/unload go through the group's change file so that
        # every process applies them (models/change_log.py); None: this process alone
        self.shared_changes = None

    # --- discovery ------------------------------------------------------------------

    def _on_disk(self, name: str | None = None) -> list[tuple[str, str, Path]]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"model repository {self.root} does not exist")
        found = []
        for model_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if name is not None and model_dir.name != name:
                continue
            for version_dir in sorted(
                (p for p in model_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                key=lambda p: version_key(p.name),
            ):
                found.append((model_dir.name, version_dir.name, version_dir))
        return found

    def load_all(self) -> None:
        self._load_many(self._on_disk(), keep_serving=False)

    def _load_many(
        self, targets: list[tuple[str, str, Path]], *, keep_serving: bool = True, only_loaded: bool = False
    ) -> list[ModelEntry]:
        # plain models first: an ensemble needs its members READY
        ordered = sorted(targets, key=lambda t: _is_ensemble(t[2]))
        with self._changes:
            if only_loaded:  # checked under the lock: an Unload that got in first is not undone
                ordered = [t for t in ordered if self._is_loaded(t[0], t[1])]
                if not ordered:
                    raise NotFound(f"model: {targets[0][0]!r} is not loaded, use LoadModel", field="model")
            for name, version, path in ordered:  # shown as LOADING meanwhile, unless a load already serves
                current = self._entries.get((name, version))
                if current is None or current.state is ModelState.UNLOADED:
                    self._entries[(name, version)] = ModelEntry(name, version, path, ModelState.LOADING)
            return [self._install(self._load(name, version, path), keep_serving) for name, version, path in ordered]

    def _is_loaded(self, name: str, version: str) -> bool:
        entry = self._entries.get((name, version))
        return entry is not None and entry.state is not ModelState.UNLOADED

    def _install(self, entry: ModelEntry, keep_serving: bool) -> ModelEntry:
        key = (entry.name, entry.version)
        current = self._entries.get(key)
        if keep_serving and entry.state is ModelState.FAILED and current and current.state is ModelState.READY:
            kept = replace(current, reason=f"reload failed, the previous load keeps serving: {entry.reason}")
            self._entries[key] = kept
            return kept
        self._entries[key] = entry  # the atomic swap
        return entry

    def _load(self, name: str, version: str, path: Path) -> ModelEntry:
        manifest = None
        try:
            check_name("model", name)
            check_name("version", version)
            self._check_inside(path, "the version directory")
            self._check_inside(path / MANIFEST_FILE, MANIFEST_FILE)
            if not (path / MANIFEST_FILE).exists():
                raise ModelLoadError(f"no {MANIFEST_FILE}")
            manifest = ModelManifest.load(path)
            if (manifest.name, manifest.version) != (name, version):
                raise ModelLoadError(
                    f"manifest says {manifest.name}/{manifest.version} but the directory is {name}/{version}"
                )
            model = self._resolve(manifest, path)
            log.info("model %s/%s READY (adapter %s)", name, version, manifest.adapter)
            return ModelEntry(name, version, path, ModelState.READY, "", manifest, model)
        except Exception as exc:  # any failure leaves this model FAILED, the others serve
            reason = exc.message if isinstance(exc, ModelLoadError) else f"{type(exc).__name__}: {exc}"
            log.error("model %s/%s FAILED: %s", name, version, reason)
            # the traceback, where there is more to it than the reason (an unexpected error or a
            # cause), for whoever debugs the adapter (--log-level debug), not on every console
            trace = exc.__cause__ or (None if isinstance(exc, ModelLoadError) else exc)
            if trace is not None:
                log.debug("model %s/%s: the load's traceback", name, version, exc_info=trace)
            # the reason is shown to clients: no server paths in it
            reason = reason.replace(str(self.root.resolve()), "<models>").replace(str(self.root), "<models>")
            return ModelEntry(name, version, path, ModelState.FAILED, reason, manifest)

    def _check_inside(self, path: Path, what: str) -> None:
        """A symlink may point within the repository (a shared file, a version alias), never out of
        it: the repository is the one directory an operator reviews, and a link out would serve
        (and checksum, and list) files nobody deployed there."""
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise ModelLoadError(f"{what} is a link out of the model repository: refused")

    def _resolve(self, manifest: ModelManifest, path: Path) -> LoadedModel:
        adapter_cls = self.adapters.get(manifest.adapter)
        if adapter_cls is None:
            known = ", ".join(sorted(self.adapters)) or "none"
            raise ModelLoadError(f"adapter {manifest.adapter!r} is not installed (installed: {known})")
        if manifest.feature_stage_version not in COMPATIBLE_STAGE_VERSIONS:
            raise ModelLoadError(
                f"trained with feature stage version {manifest.feature_stage_version!r}, "
                f"this server computes version {FEATURE_STAGE_VERSION!r} (and serves models of versions "
                f"{', '.join(sorted(COMPATIBLE_STAGE_VERSIONS))}, whose features it computes unchanged)"
            )
        missing = missing_features(manifest.feature_names)
        if missing:
            raise ModelLoadError(f"the feature stage cannot produce feature(s): {', '.join(missing)}")
        if list(manifest.classes) != list(CLASSES):
            raise ModelLoadError(f"classes {manifest.classes} are not {list(CLASSES)}")
        try:
            if manifest.members:
                adapter = self._build_from_members(adapter_cls, manifest)
            else:
                self._check_inside(path / manifest.model_file, f"model file {manifest.model_file!r}")
                if not (path / manifest.model_file).is_file():
                    raise ModelLoadError(f"model file {manifest.model_file!r} is missing")
                if manifest.model_sha256 and file_sha256(path / manifest.model_file) != manifest.model_sha256:
                    raise ModelLoadError(
                        f"model file {manifest.model_file!r} does not match the manifest's sha256 (corrupt or truncated)"
                    )
                adapter = adapter_cls.load(path, manifest)
            libraries_loaded()  # it may have brought an OpenMP or BLAS library: the thread rule covers it
            _smoke_test(adapter, len(manifest.feature_names))
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"{manifest.adapter} adapter could not load {manifest.model_file}: {exc}") from exc
        try:
            calibrator = Calibrator(manifest.calibration)
        except (KeyError, ValueError) as exc:
            raise ModelLoadError(f"invalid calibration in the manifest: {exc}") from None
        importance = _shares(adapter.feature_importance())
        index = np.array([FEATURE_INDEX[n] for n in manifest.feature_names], dtype=np.intp)
        model = LoadedModel(manifest, adapter, index, importance, calibrator)
        _, calibrated = model.predict(np.zeros((2, len(manifest.feature_names))))
        if not (np.isfinite(calibrated).all() and np.allclose(calibrated.sum(axis=1), 1.0, rtol=0, atol=1e-6)):
            raise ModelLoadError(
                f"calibrated probabilities are not finite or do not sum to 1: {calibrated[0].tolist()}"
            )
        check_serving_path(model)  # ticks -> features -> model -> rules, as a stream will run them
        return model

    def _build_from_members(self, adapter_cls: type[ModelAdapter], manifest: ModelManifest) -> ModelAdapter:
        if not issubclass(adapter_cls, ComposedAdapter):
            raise ModelLoadError(f"adapter {manifest.adapter!r} cannot build a model from members")
        members = []
        for m in manifest.members:
            name, version = str(m.get("model", "")), str(m.get("version", ""))
            entry = self._entries.get((name, version))
            if entry is None or entry.model is None or entry.state is not ModelState.READY:
                state = entry.state.value if entry else "not in the repository"
                raise ModelLoadError(f"member {name}/{version} is {state}")
            members.append((entry.model, float(m.get("weight", 1.0))))
        return adapter_cls.from_members(manifest, members)

    # --- changes while serving ----------------------------------------------------------

    def load(self, name: str, version: str = "") -> list[ModelEntry]:
        return self._change("load", name, version)

    def reload(self, name: str, version: str = "") -> list[ModelEntry]:
        return self._change("reload", name, version)

    def unload(self, name: str, version: str = "") -> list[ModelEntry]:
        return self._change("unload", name, version)

    def _change(self, op: str, name: str, version: str) -> list[ModelEntry]:
        if self.shared_changes is not None:
            return self.shared_changes.submit(op, name, version)
        return self.apply_change(op, name, version)

    def apply_change(self, op: str, name: str, version: str = "") -> list[ModelEntry]:
        """The change in this process only (what the shared change file replays)."""
        local = {"load": self._load_local, "reload": self._reload_local, "unload": self._unload_local}
        return local[op](name, version)

    def _load_local(self, name: str, version: str = "") -> list[ModelEntry]:
        """(Re)load one version, or every version directory of `name` on disk. A version
        already serving keeps serving if its files now fail to load."""
        return self._load_many(self._targets(name, version))

    def _reload_local(self, name: str, version: str = "") -> list[ModelEntry]:
        """Load the loaded versions again and swap them in; one that fails keeps its previous
        load serving (if it had one) and the call fails with FAILED_PRECONDITION."""
        entries = self._load_many(self._targets(name, version), only_loaded=True)
        failed = [e for e in entries if e.state is not ModelState.READY or e.reason.startswith("reload failed")]
        if failed:
            raise FailedPrecondition("; ".join(f"{e.name}/{e.version}: {e.reason}" for e in failed), field="model")
        return entries

    def _unload_local(self, name: str, version: str = "") -> list[ModelEntry]:
        check_name("model", name)
        if version:
            check_name("version", version)
        with self._changes:
            keys = [k for k in self._entries if k[0] == name and (not version or k[1] == version)]
            if not keys:
                what = f"{name}/{version}" if version else name
                raise NotFound(f"model: {what!r} is not loaded", field="model")
            users = sorted(
                f"{e.name}/{e.version}"
                for e in list(self._entries.values())
                if e.state is ModelState.READY and e.manifest is not None
                for m in e.manifest.members
                if (str(m.get("model")), str(m.get("version"))) in keys
            )
            if users:
                raise FailedPrecondition(
                    f"model: {name!r} is a member of the READY ensemble(s) {', '.join(users)}: unload those first",
                    field="model",
                )
            out = []
            for key in keys:
                e = self._entries[key]
                self._entries[key] = out_entry = replace(e, state=ModelState.UNLOADED, reason="", model=None)
                out.append(out_entry)
            return out

    def _targets(self, name: str, version: str) -> list[tuple[str, str, Path]]:
        check_name("model", name)
        if version:
            check_name("version", version)
        targets = [t for t in self._on_disk(name) if not version or t[1] == version]
        if not targets:
            what = f"{name}/{version}" if version else name
            raise NotFound(f"model: no directory {what!r} in the model repository", field="model")
        return targets

    def index(self) -> list[ModelEntry]:
        """Every version directory on disk (UNLOADED when never loaded) plus every known entry."""
        known = dict(self._entries)
        for name, version, path in self._on_disk():
            known.setdefault((name, version), ModelEntry(name, version, path, ModelState.UNLOADED))
        return sorted(known.values(), key=lambda e: (e.name, version_key(e.version)))

    # --- queries ------------------------------------------------------------------------

    def entries(self) -> list[ModelEntry]:
        return sorted(self._entries.values(), key=lambda e: (e.name, version_key(e.version)))

    @property
    def default_model(self) -> str:
        """The model a request naming none gets: the configured one, else the repository's only
        model; "" when it holds several and none is configured. Never "the first by name": adding
        a model must not silently move every client that names none."""
        if self._configured_default:
            return self._configured_default
        names = {e.name for e in list(self._entries.values())}  # a snapshot: a load may add entries
        return names.pop() if len(names) == 1 else ""

    def entry(self, name: str, version: str = "") -> ModelEntry:
        name = name or self.default_model
        if not name:
            names = sorted({e.name for e in list(self._entries.values())})
            if not names:
                raise NotFound("model: no model is loaded")
            shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
            raise InvalidArgument(
                f"model: the request names no model and this server has no default model: it serves "
                f"{len(names)} ({shown}); name one, or start the server with --default-model NAME",
                field="model",
            )
        check_name("model", name)
        versions = [e for (n, _), e in list(self._entries.items()) if n == name]
        if not versions:
            raise NotFound(f"model: no model named {name!r}", field="model")
        if version:
            check_name("version", version)
            found = self._entries.get((name, version))
            if found is None:
                have = ", ".join(e.version for e in sorted(versions, key=lambda e: version_key(e.version)))
                raise NotFound(f"version: model {name!r} has no version {version!r} (has: {have})", field="version")
            return found
        ready = [e for e in versions if e.state is ModelState.READY]
        return max(ready or versions, key=lambda e: version_key(e.version))

    def get(self, name: str, version: str = "") -> LoadedModel:
        """The READY model to serve, or why not: NOT_FOUND (no such model or version),
        UNAVAILABLE (LOADING: retrying shortly may succeed), FAILED_PRECONDITION (FAILED or
        UNLOADED: needs an operator's load or a fixed model first)."""
        entry = self.entry(name, version)
        if entry.state is ModelState.READY and entry.model is not None:
            return entry.model
        what = f"model: {entry.name!r} version {entry.version!r} is {entry.state.value}"
        if entry.state is ModelState.LOADING:
            raise Unavailable(f"{what}, retry when it is READY", field="model")
        detail = f": {entry.reason}" if entry.reason else ""
        raise FailedPrecondition(f"{what}{detail}", field="model")
