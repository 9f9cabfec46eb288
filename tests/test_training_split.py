"""The purged time split used by training, and the model manifest it writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tickserve.core.signals import SignalRules
from tickserve.core.ticks import Tick, TickFrame
from tickserve.errors import InvalidArgument, ModelLoadError
from tickserve.evaluation.labels import LabelConfig, make_labels
from tickserve.features import ALWAYS_OPEN, DEFAULT_MODEL_FEATURES, FEATURE_STAGE_VERSION, FeatureConfig
from tickserve.models.manifest import MANIFEST_FILE, ModelManifest, check_name
from tickserve.simulate import InstrumentSpec, simulate
from tickserve.training.walk_forward import fold_rows, fold_spans


@pytest.fixture(scope="module")
def labeled():
    frame = simulate(9_000, seed=31)
    y, future = make_labels(frame, LabelConfig(horizon_ticks=50), FeatureConfig())
    return frame, y, future


@pytest.mark.parametrize("folds, test_fraction, valid_fraction", [(3, 0.2, 0.15), (1, 0.2, 0.15), (4, 0.1, 0.3)])
def test_folds_are_disjoint_time_ordered_and_purged(labeled, folds, test_fraction, valid_fraction):
    frame, y, future = labeled
    ts = frame.timestamp_ns
    n = len(frame)
    spans = fold_spans(ts, folds, test_fraction, valid_fraction)
    assert [s.fold for s in spans] == list(range(1, folds + 1))
    for k, spans_k in enumerate(spans):
        rows = fold_rows(frame, future, spans_k)
        train, valid, test = rows.train, rows.valid, rows.test
        for part in (train, valid, test):
            assert part.dtype.kind == "i"
            assert (np.diff(part) > 0).all(), "indices sorted, no repeats"
            assert (future[part] >= 0).all(), "only labeled rows"
            assert (y[part] >= 0).all()
            assert len(part)
        assert not set(train) & set(valid) and not set(train) & set(test) and not set(valid) & set(test)
        # time order, and purged: every label tick lies before the next span starts
        assert ts[train].max() < ts[valid].min() and ts[valid].max() < ts[test].min()
        assert ts[future[train]].max() < spans_k.valid_start_ns <= ts[valid].min()
        assert ts[future[valid]].max() < spans_k.test_start_ns <= ts[test].min()
        # the test block is every labeled tick inside it, by time, and the blocks tile the end of the data
        start = int(n * (1 - (folds - k) * test_fraction))
        assert spans_k.test_start_ns == np.sort(ts)[start]
        inside = (ts >= spans_k.test_start_ns) & (ts < spans_k.test_end_ns) & (future >= 0)
        assert set(test) == set(np.flatnonzero(inside))
        if k + 1 < folds:
            assert spans_k.test_end_ns == spans[k + 1].test_start_ns
        else:
            assert spans_k.test_end_ns > ts.max()
        # expanding window: every fold trains from the first tick, on more ticks than the one before
        assert spans_k.train_start_ns == ts.min()
        if k:
            assert len(train) > len(fold_rows(frame, future, spans[k - 1]).train)
    # the purge really removed rows: labeled ticks just before a boundary whose label crosses it
    last = spans[-1]
    gap = np.flatnonzero(
        (future >= 0) & (ts < last.valid_start_ns) & (ts[np.maximum(future, 0)] >= last.valid_start_ns)
    )
    rows = fold_rows(frame, future, last)
    assert len(gap) > 0 and not set(gap) & (set(rows.train) | set(rows.valid) | set(rows.test))


def test_folds_by_hand():
    """One instrument, timestamps 1..20, horizon 2, one fold: 25 % test, a third of the rest validation."""
    ticks = [Tick("A", t, 0.0, 0.0, (100.0,), (1.0,), (100.01,), (1.0,)) for t in range(1, 21)]
    frame = TickFrame.from_ticks(ticks)
    _, future = make_labels(frame, LabelConfig(horizon_ticks=2, threshold_ticks=1.0), FeatureConfig())
    (spans,) = fold_spans(frame.timestamp_ns, 1, 0.25, 1 / 3)
    # test starts at row 15 (t=16), validation at row int(15 * 2/3) = 10 (t=11)
    assert (spans.valid_start_ns, spans.test_start_ns) == (11, 16)
    rows = fold_rows(frame, future, spans)
    assert rows.train.tolist() == list(range(0, 8))  # labels must land before t=11
    assert rows.valid.tolist() == [10, 11, 12]  # ... before t=16
    assert rows.test.tolist() == [15, 16, 17]  # rows 18, 19 have no label


def test_folds_use_time_not_row_order():
    """Rows out of time order across instruments (time order per instrument, as TickFrame requires)."""
    a = simulate(2_000, seed=1, start_ns=1_704_205_800 * 10**9)
    late = (InstrumentSpec("LATE1", 10.0), InstrumentSpec("LATE2", 20.0))
    b = simulate(2_000, seed=2, start_ns=1_704_205_800 * 10**9 + 3_600 * 10**9, instruments=late)
    frame = TickFrame.concat([b, a])  # the later instruments' rows first
    _, future = make_labels(frame, LabelConfig(horizon_ticks=20), FeatureConfig())
    (spans,) = fold_spans(frame.timestamp_ns, 1, 0.25, 1 / 3)
    rows = fold_rows(frame, future, spans)
    ts = frame.timestamp_ns
    assert ts[rows.train].max() < ts[rows.valid].min() <= ts[rows.valid].max() < ts[rows.test].min()
    assert ts[future[rows.train]].max() < ts[rows.valid].min()
    assert (rows.train >= 2_000).all(), "the early ticks (rows 2000..) make up the training span"


@pytest.mark.parametrize(
    "folds, test_fraction, valid_fraction",
    [(0, 0.2, 0.15), (5, 0.2, 0.15), (3, 0.0, 0.15), (3, 0.2, 0.0), (3, 0.2, 1.0)],
)
def test_folds_reject_bad_fractions(labeled, folds, test_fraction, valid_fraction):
    frame, _, _ = labeled
    with pytest.raises(ValueError):
        fold_spans(frame.timestamp_ns, folds, test_fraction, valid_fraction)


# --- manifest -------------------------------------------------------------------------


def _manifest(**changes) -> ModelManifest:
    fields = dict(
        name="signal-lgbm",
        version="3",
        adapter="lightgbm",
        model_file="model.txt",
        feature_names=list(DEFAULT_MODEL_FEATURES[:5]),
        feature_stage_version=FEATURE_STAGE_VERSION,
        feature_config=FeatureConfig(
            default_tick_size=0.05, tick_sizes=(("X", 0.5), ("Y", 0.25)), calendar=ALWAYS_OPEN
        ),
        label_config=LabelConfig(horizon_ticks=20, threshold_ticks=1.5),
        signal_rules=SignalRules(strong_edge=0.35, low_risk_confidence=0.85),
        parameters={"num_boost_round": 40, "nested": {"a": [1, 2]}, "name": "x"},
        metrics={"valid_accuracy": 0.61, "ticks": 9000.0},
        data_fingerprint="ab" * 32,
        created_at="2024-01-02T14:30:00+00:00",
        tickserve_version="0.1.0",
    )
    fields.update(changes)
    return ModelManifest(**fields)


def test_manifest_round_trip(tmp_path):
    manifest = _manifest()
    path = manifest.save(tmp_path)
    assert path == tmp_path / MANIFEST_FILE
    loaded = ModelManifest.load(tmp_path)
    assert loaded == manifest
    assert loaded.feature_config.tick_size("X") == 0.5
    assert loaded.feature_config.calendar == ALWAYS_OPEN
    assert loaded.signal_rules.strong_edge == 0.35
    # plain JSON on disk, never pickle
    on_disk = json.loads(path.read_text())
    assert on_disk["format"] == 1 and on_disk["name"] == "signal-lgbm"
    # a second save/load is a fixed point
    again = tmp_path / "again"
    again.mkdir()
    loaded.save(again)
    assert (again / MANIFEST_FILE).read_text() == path.read_text()


def test_manifest_defaults_round_trip(tmp_path):
    manifest = ModelManifest("m", "1", "lightgbm", "model.txt", ["spread"], FEATURE_STAGE_VERSION)
    manifest.save(tmp_path)
    assert ModelManifest.load(tmp_path) == manifest


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.pop("feature_names"),
        lambda d: d.update(format=2),
        lambda d: d.update(model_file="../outside.txt"),
        lambda d: d.update(model_file="sub/model.txt"),
        lambda d: d.update(signal_rules={"unknown_rule": 1.0}),
        lambda d: d.update(label_config={"horizon_ticks": 0, "threshold_ticks": 2.0}),
    ],
)
def test_manifest_load_rejects_bad_files(tmp_path, edit):
    d = _manifest().to_dict()
    edit(d)
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(d))
    with pytest.raises(ModelLoadError):
        ModelManifest.load(tmp_path)


def test_manifest_load_missing_or_unreadable(tmp_path):
    with pytest.raises(ModelLoadError, match="no manifest"):
        ModelManifest.load(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ModelLoadError):
        ModelManifest.load(tmp_path)


@pytest.mark.parametrize("name", ["signal-lgbm", "1", "v1.2_rc-3", "A", "x" * 128])
def test_check_name_accepts(name):
    assert check_name("model", name) == name


@pytest.mark.parametrize("name", ["../x", "a/b", "", "..", ".hidden", "a..b", "a\\b", "a b", "-x", "x" * 129, "a/../b"])
def test_check_name_rejects(name):
    with pytest.raises(InvalidArgument) as info:
        check_name("version", name)
    assert info.value.field == "version"
    assert repr(name[:64]) in info.value.message  # long values are shortened in the message


def test_labels_refuse_ticks_out_of_time_order():
    """Labels look `horizon` rows ahead: rows out of time order would make them look backwards."""
    from tickserve.simulate import simulate

    frame = simulate(600, seed=3)
    later_first = TickFrame.concat([frame.take(slice(300, 600)), frame.take(slice(0, 300))])
    with pytest.raises(ValueError, match="not in time order"):
        make_labels(later_first, LabelConfig(), FeatureConfig())
