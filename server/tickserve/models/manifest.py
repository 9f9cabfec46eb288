"""The model manifest: `models/<name>/<version>/manifest.json`.

JSON, never pickle: it records everything needed to serve the model exactly
as it was trained (adapter, feature names and stage version, feature config,
label config, signal-rule thresholds) and how it was trained (parameters,
metrics, data fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.signals import SignalRules
from ..errors import InvalidArgument, ModelLoadError
from ..evaluation.labels import CLASSES, LabelConfig
from ..features.config import FeatureConfig

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
# A trained model's manifest is about 30 KB (its training report included); 1 MB leaves room for
# hand-written parameters, and bounds what every listing of the repository carries per model.
MAX_MANIFEST_BYTES = 1_000_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(kind: str, value: str) -> str:
    """Model names and versions are path components: letters, digits and `._-` only, so no
    request can name a path outside the repository (no `/`, `\\`, `..`, NUL or leading dot)."""
    if not _NAME.fullmatch(value) or ".." in value:
        shown = repr(value) if len(value) <= 64 else f"{value[:64]!r}... ({len(value)} characters)"
        raise InvalidArgument(
            f"{kind}: {shown} is not a valid name (1 to 128 letters, digits and ._-, "
            "starting with a letter or digit, no '..')",
            field=kind,
        )
    return value


@dataclass
class ModelManifest:
    name: str
    version: str
    adapter: str
    model_file: str
    feature_names: list[str]
    feature_stage_version: str
    feature_config: FeatureConfig = field(default_factory=FeatureConfig)
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    label_config: LabelConfig = field(default_factory=LabelConfig)
    signal_rules: SignalRules = field(default_factory=SignalRules)
    parameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    data_fingerprint: str = ""
    created_at: str = ""
    tickserve_version: str = ""
    # Adapter-specific settings the adapter reads at load time (e.g. ONNX output names).
    options: dict[str, Any] = field(default_factory=dict)
    # Probability calibration applied after the adapter: {} or {"method": "temperature", "temperature": T}.
    calibration: dict[str, Any] = field(default_factory=dict)
    # Ensemble members: [{"model": name, "version": version, "weight": w}, ...]; empty otherwise.
    members: list[dict[str, Any]] = field(default_factory=list)
    # sha256 of the model file, checked before any adapter parses it: native
    # parsers can crash the process on a truncated file (LightGBM segfaults).
    model_sha256: str = ""
    # What training chose and how the model scored per walk-forward fold (training.report.TrainingReport
    # as a dict); {} for ensembles and models trained before it was recorded.
    training: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "name": self.name,
            "version": self.version,
            "adapter": self.adapter,
            "model_file": self.model_file,
            "feature_names": list(self.feature_names),
            "feature_stage_version": self.feature_stage_version,
            "feature_config": self.feature_config.to_dict(),
            "classes": list(self.classes),
            "label_config": self.label_config.to_dict(),
            "signal_rules": self.signal_rules.to_dict(),
            "parameters": self.parameters,
            "metrics": self.metrics,
            "data_fingerprint": self.data_fingerprint,
            "created_at": self.created_at,
            "tickserve_version": self.tickserve_version,
            "options": self.options,
            "calibration": self.calibration,
            "members": self.members,
            "model_sha256": self.model_sha256,
            "training": self.training,
        }

    def save(self, model_dir: Path) -> Path:
        path = model_dir / MANIFEST_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return path

    @staticmethod
    def load(model_dir: Path) -> ModelManifest:
        path = model_dir / MANIFEST_FILE
        try:
            info = path.stat()
            # only a regular file is opened: a FIFO named manifest.json would block the reading
            # thread forever; and a size bound, since listings carry what a manifest holds
            if not stat.S_ISREG(info.st_mode):
                raise ModelLoadError(f"{MANIFEST_FILE} is not a regular file")
            if info.st_size > MAX_MANIFEST_BYTES:
                raise ModelLoadError(f"{MANIFEST_FILE} is {info.st_size:,} bytes, the limit is {MAX_MANIFEST_BYTES:,}")
            d = json.loads(path.read_bytes()[: MAX_MANIFEST_BYTES + 1])
        except FileNotFoundError:
            raise ModelLoadError(f"no {MANIFEST_FILE}") from None
        except RecursionError:
            raise ModelLoadError(f"unreadable {MANIFEST_FILE}: JSON nested too deeply") from None
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"unreadable {MANIFEST_FILE}: {type(exc).__name__}") from None
        if not isinstance(d, dict):
            got = {type(None): "null", list: "an array", str: "a string", bool: "a boolean"}.get(type(d), "a number")
            raise ModelLoadError(f"invalid {MANIFEST_FILE}: must be a JSON object, got {got}")
        try:
            if d.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"format {d.get('format')!r} is not {MANIFEST_FORMAT}")
            model_file = str(d["model_file"])
            if Path(model_file).name != model_file:
                raise ValueError(f"model_file {model_file!r} must be a plain file name")
            return ModelManifest(
                name=str(d["name"]),
                version=str(d["version"]),
                adapter=str(d["adapter"]),
                model_file=model_file,
                feature_names=[str(x) for x in d["feature_names"]],
                feature_stage_version=str(d["feature_stage_version"]),
                feature_config=FeatureConfig.from_dict(d.get("feature_config", {})),
                classes=[str(x) for x in d.get("classes", CLASSES)],
                label_config=LabelConfig.from_dict(d.get("label_config", LabelConfig().to_dict())),
                signal_rules=SignalRules.from_dict(d.get("signal_rules", {})),
                parameters=dict(d.get("parameters", {})),
                metrics={str(k): float(v) for k, v in d.get("metrics", {}).items()},
                data_fingerprint=str(d.get("data_fingerprint", "")),
                created_at=str(d.get("created_at", "")),
                tickserve_version=str(d.get("tickserve_version", "")),
                options=dict(d.get("options", {})),
                calibration=dict(d.get("calibration", {})),
                members=[dict(m) for m in d.get("members", [])],
                model_sha256=str(d.get("model_sha256", "")),
                training=dict(d.get("training", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ModelLoadError(f"invalid {MANIFEST_FILE}: {detail}") from None


def file_sha256(path: Path) -> str:
    """The checksum `model_sha256` records: SHA-256 of the file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
