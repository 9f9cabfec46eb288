"""The model repository: `models/<name>/<version>/` directories, loaded through adapters.

Every version is loaded at start-up. One that fails (bad manifest, unknown
adapter, corrupt file, features the stage cannot produce) is FAILED with a
reason and every other model still serves. A request that names no version
gets the newest READY one (versions compare as integers when they are).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .calibration import Calibrator
from .errors import FailedPrecondition, ModelLoadError, NotFound
from .features import FEATURE_INDEX, FEATURE_STAGE_VERSION, missing_features
from .labels import CLASSES
from .manifest import MANIFEST_FILE, ModelManifest, check_name
from .plugin import ModelAdapter

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

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(raw, calibrated) class probabilities for the model's own feature columns."""
        raw = self.adapter.predict_proba(x)
        return raw, self.calibrator(raw)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version


@dataclass
class ModelEntry:
    name: str
    version: str
    path: Path
    state: ModelState
    reason: str = ""
    manifest: ModelManifest | None = None
    model: LoadedModel | None = None


def version_key(version: str) -> tuple:
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


class ModelRepository:
    def __init__(self, root: Path, adapters: dict[str, type[ModelAdapter]], default_model: str = "") -> None:
        self.root = Path(root)
        self.adapters = adapters
        self._configured_default = default_model
        self._entries: dict[tuple[str, str], ModelEntry] = {}

    def load_all(self) -> None:
        if not self.root.is_dir():
            raise FileNotFoundError(f"model repository {self.root} does not exist")
        for model_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for version_dir in sorted(
                (p for p in model_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                key=lambda p: version_key(p.name),
            ):
                entry = self._load(model_dir.name, version_dir.name, version_dir)
                self._entries[(entry.name, entry.version)] = entry

    def _load(self, name: str, version: str, path: Path) -> ModelEntry:
        entry = ModelEntry(name, version, path, ModelState.LOADING)
        try:
            check_name("model", name)
            check_name("version", version)
            if not (path / MANIFEST_FILE).exists():
                raise ModelLoadError(f"no {MANIFEST_FILE} in {path}")
            manifest = ModelManifest.load(path)
            entry.manifest = manifest
            if (manifest.name, manifest.version) != (name, version):
                raise ModelLoadError(
                    f"manifest says {manifest.name}/{manifest.version} but the directory is {name}/{version}"
                )
            entry.model = self._resolve(manifest, path)
            entry.state = ModelState.READY
            log.info("model %s/%s READY (adapter %s)", name, version, manifest.adapter)
        except Exception as exc:  # any failure leaves this model FAILED, the others serve
            entry.state = ModelState.FAILED
            entry.reason = exc.message if isinstance(exc, ModelLoadError) else f"{type(exc).__name__}: {exc}"
            log.error("model %s/%s FAILED: %s", name, version, entry.reason)
        return entry

    def _resolve(self, manifest: ModelManifest, path: Path) -> LoadedModel:
        adapter_cls = self.adapters.get(manifest.adapter)
        if adapter_cls is None:
            known = ", ".join(sorted(self.adapters)) or "none"
            raise ModelLoadError(f"adapter {manifest.adapter!r} is not installed (installed: {known})")
        if manifest.feature_stage_version != FEATURE_STAGE_VERSION:
            raise ModelLoadError(
                f"trained with feature stage version {manifest.feature_stage_version!r}, "
                f"this server computes version {FEATURE_STAGE_VERSION!r}"
            )
        missing = missing_features(manifest.feature_names)
        if missing:
            raise ModelLoadError(f"the feature stage cannot produce feature(s): {', '.join(missing)}")
        if list(manifest.classes) != list(CLASSES):
            raise ModelLoadError(f"classes {manifest.classes} are not {list(CLASSES)}")
        if not (path / manifest.model_file).is_file():
            raise ModelLoadError(f"model file {manifest.model_file!r} is missing from {path}")
        try:
            adapter = adapter_cls.load(path, manifest)
        except Exception as exc:
            raise ModelLoadError(f"{manifest.adapter} adapter could not load {manifest.model_file}: {exc}") from exc
        try:
            calibrator = Calibrator(manifest.calibration)
        except (KeyError, ValueError) as exc:
            raise ModelLoadError(f"invalid calibration in the manifest: {exc}") from None
        importance = sorted(adapter.feature_importance().items(), key=lambda kv: -kv[1])
        index = np.array([FEATURE_INDEX[n] for n in manifest.feature_names], dtype=np.intp)
        return LoadedModel(manifest, adapter, index, importance, calibrator)

    # --- queries ------------------------------------------------------------------

    def entries(self) -> list[ModelEntry]:
        return sorted(self._entries.values(), key=lambda e: (e.name, version_key(e.version)))

    @property
    def default_model(self) -> str:
        if self._configured_default:
            return self._configured_default
        ready = sorted({e.name for e in self._entries.values() if e.state is ModelState.READY})
        return ready[0] if ready else ""

    def entry(self, name: str, version: str = "") -> ModelEntry:
        name = name or self.default_model
        if not name:
            raise NotFound("model: no model is loaded")
        check_name("model", name)
        versions = [e for (n, _), e in self._entries.items() if n == name]
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
        if not ready:
            return max(versions, key=lambda e: version_key(e.version))
        return max(ready, key=lambda e: version_key(e.version))

    def get(self, name: str, version: str = "") -> LoadedModel:
        """The READY model to serve, or NOT_FOUND / FAILED_PRECONDITION naming why not."""
        entry = self.entry(name, version)
        if entry.state is not ModelState.READY or entry.model is None:
            detail = f": {entry.reason}" if entry.reason else ""
            raise FailedPrecondition(
                f"model {entry.name!r} version {entry.version!r} is {entry.state.value}{detail}", field="model"
            )
        return entry.model
