"""`tickserve check PATH`: the load-time checks `serve` runs, offline, on a model version, a model
or a whole repository, so a deployment script learns before any server does that a model would
come up FAILED (and why)."""

from __future__ import annotations

from pathlib import Path

from ..plugin import ModelAdapter
from .manifest import MANIFEST_FILE, ModelManifest
from .repository import ModelEntry, ModelRepository


def check_models(path: Path, adapters: dict[str, type[ModelAdapter]]) -> list[ModelEntry]:
    """Load what `path` holds exactly as the server would (an ensemble against its members, loaded
    first) and return the entries checked: READY, or FAILED with the reason."""
    path = Path(path)
    if (path / MANIFEST_FILE).is_file():  # models/NAME/VERSION
        root, name, version = path.parent.parent, path.parent.name, path.name
    elif path.is_dir() and any(path.glob(f"*/{MANIFEST_FILE}")):  # models/NAME
        root, name, version = path.parent, path.name, ""
    elif path.is_dir() and any(path.glob(f"*/*/{MANIFEST_FILE}")):  # a repository
        repository = ModelRepository(path, adapters)
        repository.load_all()
        return repository.entries()
    else:
        raise ValueError(
            f"{path}: no {MANIFEST_FILE} here (expected a model version directory, a model directory "
            "or a model repository)"
        )
    repository = ModelRepository(root, adapters)
    for member in _members(path if version else None, path if not version else None):
        try:
            repository.load(member[0], member[1])
        except Exception:  # noqa: BLE001 - a missing member is reported by the ensemble's own load
            pass
    return repository.load(name, version)


def _members(version_dir: Path | None, model_dir: Path | None) -> list[tuple[str, str]]:
    """The (name, version) of every member an ensemble at this path names."""
    dirs = [version_dir] if version_dir else sorted(p for p in model_dir.iterdir() if (p / MANIFEST_FILE).is_file())
    out = []
    for d in dirs:
        try:
            manifest = ModelManifest.load(d)
        except Exception:  # noqa: BLE001 - the load itself names what is wrong with it
            continue
        out += [(str(m.get("model", "")), str(m.get("version", ""))) for m in manifest.members]
    return out
