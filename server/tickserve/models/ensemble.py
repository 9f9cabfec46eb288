"""Ensembles: soft voting of the members' calibrated probabilities.

An ensemble is a model directory whose manifest lists members (any adapters,
by name and version) and weights. Its feature vector is the union of the
members' features in the stage's order, so the feature stage runs once per
tick and each member reads its own columns from that one vector. Members
must share the feature config and label config (checked at load).
"""

from __future__ import annotations

from math import isfinite
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError
from ..features import FEATURE_INDEX
from ..plugin import ComposedAdapter, ModelAdapter, hookimpl
from .manifest import ModelManifest


class EnsembleAdapter(ComposedAdapter):
    name = "ensemble"

    def __init__(self, members: list[tuple[object, float, np.ndarray]]) -> None:
        self.members = members  # (LoadedModel, weight, columns of the ensemble's vector)
        self.total_weight = sum(w for _, w, _ in members)

    @classmethod
    def load(cls, model_dir: Path, manifest: ModelManifest) -> EnsembleAdapter:
        raise ModelLoadError("an ensemble is built from its members: its manifest needs a 'members' list")

    @classmethod
    def from_members(cls, manifest: ModelManifest, members: list[tuple[object, float]]) -> EnsembleAdapter:
        if not members:
            raise ModelLoadError("an ensemble needs at least one member")
        position = {name: i for i, name in enumerate(manifest.feature_names)}
        built = []
        for model, weight in members:
            m = model.manifest
            problem = member_problem(manifest, m, weight)
            if problem:
                raise ModelLoadError(f"member {m.name}/{m.version}: {problem}")
            built.append((model, weight, np.array([position[f] for f in m.feature_names], dtype=np.intp)))
        return cls(built)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        total = None
        for model, weight, columns in self.members:
            _, calibrated = model.predict(features[:, columns])
            total = weight * calibrated if total is None else total + weight * calibrated
        return total / self.total_weight

    def feature_importance(self) -> dict[str, float]:
        """The members' importance shares (LoadedModel.importance sums to 1), weighted as they vote."""
        out: dict[str, float] = {}
        for model, weight, _ in self.members:
            for name, share in model.importance:
                out[name] = out.get(name, 0.0) + weight / self.total_weight * share
        return out

    def metadata(self) -> dict[str, str]:
        return {"members": ", ".join(f"{m.name}/{m.version}:{w:g}" for m, w, _ in self.members)}


def member_problem(ensemble: ModelManifest, member: ModelManifest, weight: float) -> str:
    """Why `member` cannot vote in `ensemble` ("" if it can): checked when an ensemble is written
    and again when it loads, by this one function."""
    if not (isfinite(weight) and 0 < weight <= 1e6):
        return f"weight must be > 0 and at most 1e6, got {weight!r}"
    if member.members:
        return "it is an ensemble itself (members must be models)"
    if list(member.classes) != list(ensemble.classes):
        return f"its classes {list(member.classes)} differ from the ensemble's {list(ensemble.classes)}"
    if member.feature_stage_version != ensemble.feature_stage_version:
        return (
            f"its feature stage version {member.feature_stage_version!r} differs from the ensemble's "
            f"{ensemble.feature_stage_version!r}"
        )
    if member.feature_config != ensemble.feature_config:
        return "its feature config (tick sizes, calendar) differs from the ensemble's"
    if member.label_config != ensemble.label_config:
        return "its label config (what BUY/SELL mean: horizon, threshold, mode) differs from the ensemble's"
    missing = [f for f in member.feature_names if f not in set(ensemble.feature_names)]
    if missing:
        return f"features {missing} are not in the ensemble's feature list"
    return ""


def ensemble_manifest(name: str, version: str, members: list[tuple[ModelManifest, float]]) -> ModelManifest:
    """The manifest of an ensemble of these member manifests; ValueError naming every member that
    cannot vote with the first (the same checks run again at load)."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    first = members[0][0]
    used = {f for m, _ in members for f in m.feature_names}
    features = sorted(used, key=FEATURE_INDEX.__getitem__)
    manifest = ModelManifest(
        name=name,
        version=version,
        adapter=EnsembleAdapter.name,
        model_file="",
        feature_names=features,
        feature_stage_version=first.feature_stage_version,
        feature_config=first.feature_config,
        label_config=first.label_config,
        signal_rules=first.signal_rules,
        parameters={"voting": "soft", "weights": {f"{m.name}/{m.version}": w for m, w in members}},
        members=[{"model": m.name, "version": m.version, "weight": w} for m, w in members],
    )
    problems = [f"{m.name}/{m.version}: {problem}" for m, w in members if (problem := member_problem(manifest, m, w))]
    if problems:
        raise ValueError(f"members cannot vote together with {first.name}/{first.version}: " + "; ".join(problems))
    return manifest


@hookimpl
def tickserve_adapters() -> list[type[ModelAdapter]]:
    return [EnsembleAdapter]
