"""The compiled LightGBM path (lleaves): built by `tickserve compile`, loaded only when it
matches LightGBM to the last bit, and serving exactly the signals the native path serves."""

from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tickserve.features import batch_features
from tickserve.models.repository import ModelRepository
from tickserve.serving.app import create_server
from tickserve.serving.converters import frame_to_protos
from tickserve.simulate import simulate
from tickserve.training import train_model
from tickserve_client import TickserveClient, frame_columns
from tickserve_lightgbm import compiled

from .conftest import FAST_PARAMS, MODEL, _LoopThread

TICKSERVE = [sys.executable, "-m", "tickserve.cli"]


def _compile(models: Path, *names: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TICKSERVE, "compile", "--models", str(models), *names], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def repos(model_repo, tmp_path_factory) -> dict[str, Path]:
    """The same two trained versions twice: `native` as trained, `compiled` after `tickserve compile`."""
    root = tmp_path_factory.mktemp("compiled-repos")
    out = {}
    for kind in ("native", "compiled"):
        shutil.copytree(model_repo / MODEL, root / kind / MODEL)
        out[kind] = root / kind
    done = _compile(out["compiled"], MODEL)
    assert done.returncode == 0, done.stdout + done.stderr
    out["compile_output"] = done.stdout
    return out


def _artifact(version_dir: Path) -> Path:
    """The full build: a linked .so where a linker exists, else the object file (.o)."""
    found = [
        p for p in sorted((version_dir / compiled.COMPILED_DIR).glob("lleaves-*-full.*")) if p.suffix in compiled.FORMS
    ]
    assert len(found) == 1, found
    return found[0]


def _repository(root: Path, plugins) -> ModelRepository:
    repository = ModelRepository(root, plugins.adapters, default_model=MODEL)
    repository.load_all()
    return repository


def test_compile_writes_a_checksummed_artifact_per_version_and_skips_what_is_built(repos):
    for version in ("1", "2"):
        assert f"{MODEL}/{version}: compiled with lleaves" in repos["compile_output"]
        artifact = _artifact(repos["compiled"] / MODEL / version)
        compiled.check_artifact(artifact)  # the checksum beside it matches
    again = _compile(repos["compiled"])
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already compiled") == 2, again.stdout


def test_compiled_probabilities_equal_lightgbm_to_the_last_bit(repos, plugins):
    native = _repository(repos["native"], plugins).get(MODEL, "1").adapter
    fast = _repository(repos["compiled"], plugins).get(MODEL, "1").adapter
    assert native.compiled is None and "not compiled" in native.predictor
    assert fast.compiled is not None and fast.predictor.startswith("lleaves"), fast.predictor

    model = _repository(repos["native"], plugins).get(MODEL, "1")
    x = batch_features(simulate(6_000, seed=91), model.manifest.feature_config)[:, model.feature_index]
    expected = native.booster.predict(x)  # LightGBM's own batch path
    assert np.array_equal(fast.predict_proba(x), expected)  # one call, split in chunks inside
    assert np.array_equal(fast.predict_proba(x[:37]), expected[:37])
    singles = np.vstack([fast.predict_proba(x[i : i + 1]) for i in range(500)])
    assert np.array_equal(singles, expected[:500])

    def rows(offset: int) -> np.ndarray:  # the single-row buffers are per thread
        return np.vstack([fast.predict_proba(x[i : i + 1]) for i in range(offset, 800, 4)])

    with ThreadPoolExecutor(4) as pool:
        for offset, got in enumerate(pool.map(rows, range(4))):
            assert np.array_equal(got, expected[offset:800:4])

    # LightGBM reads |v| <= 1e-35f as 0 before walking the trees; the compiled path must too
    tiny = x[:300].copy()
    k = compiled.ZERO_THRESHOLD
    tiny[:, ::2] = np.resize([k, -k, 5e-324, -1e-36, np.nextafter(k, 1.0)], tiny[:, ::2].shape)
    assert np.array_equal(fast.predict_proba(tiny), native.booster.predict(tiny))
    assert np.array_equal(
        np.vstack([fast.predict_proba(tiny[i : i + 1]) for i in range(50)]), native.booster.predict(tiny[:50])
    )


@pytest.fixture(scope="module")
def two_servers(repos, plugins):
    runner = _LoopThread()
    servers = {}
    try:
        for kind in ("native", "compiled"):
            servers[kind] = runner.run(create_server("127.0.0.1:0", _repository(repos[kind], plugins)))
        yield {kind: f"127.0.0.1:{s.port}" for kind, s in servers.items()}
    finally:
        for s in servers.values():
            runner.run(s.stop(1.0))
        runner.close()


def test_both_servers_serve_the_same_signals_for_every_message_shape(two_servers):
    frame = simulate(3_000, seed=92)
    ticks = frame_to_protos(frame)
    answers = {}
    for kind, address in two_servers.items():
        with TickserveClient(address, timeout=120) as client:
            info = client.get_model(MODEL, "1")
            assert info.runtime["predictor"].startswith("lleaves" if kind == "compiled" else "lightgbm"), info.runtime
            answers[kind] = (
                [r.SerializeToString() for r in client.stream_signals(ticks[:400], model=MODEL)],
                [r.SerializeToString() for r in client.stream_signals(ticks, model=MODEL, batch_size=500)],
                [c.SerializeToString() for c in client.stream_columns(frame_columns(frame, 700), model=MODEL)],
                [s.SerializeToString() for s in client.predict(ticks[:64], model=MODEL)],
            )
    for shape, native, fast in zip(("per tick", "TickBatch", "TickColumns", "Predict"), *answers.values()):
        assert native == fast, f"{shape}: the compiled server answered differently"
    assert len(answers["native"][1]) == len(ticks)


def _copy_version(repos, tmp_path: Path) -> Path:
    shutil.copytree(repos["compiled"] / MODEL / "1", tmp_path / MODEL / "1")
    return tmp_path / MODEL / "1"


def test_a_damaged_artifact_is_never_handed_to_llvm_and_the_model_serves_natively(repos, plugins, tmp_path):
    version = _copy_version(repos, tmp_path)
    artifact = _artifact(version)
    artifact.write_bytes(artifact.read_bytes()[:1000])  # LLVM would abort the process on this
    adapter = _repository(tmp_path, plugins).get(MODEL, "1").adapter
    assert adapter.compiled is None
    assert "rejected" in adapter.predictor and "damaged" in adapter.predictor, adapter.predictor
    done = _compile(tmp_path, MODEL, "1")  # compile rebuilds it
    assert done.returncode == 0 and "compiled with lleaves" in done.stdout, done.stdout + done.stderr
    assert _repository(tmp_path, plugins).get(MODEL, "1").adapter.compiled is not None


def test_an_artifact_without_its_checksum_is_not_loaded(repos, plugins, tmp_path):
    version = _copy_version(repos, tmp_path)
    compiled.checksum_path(_artifact(version)).unlink()  # as if compilation stopped half-way
    adapter = _repository(tmp_path, plugins).get(MODEL, "1").adapter
    assert adapter.compiled is None and "missing" in adapter.predictor, adapter.predictor


def test_an_intact_artifact_of_another_model_fails_the_bit_check_and_is_not_used(repos, plugins, tmp_path):
    version = _copy_version(repos, tmp_path)
    own = _artifact(version)
    other = _artifact(repos["compiled"] / MODEL / "2")  # version 2: other trees, valid checksum
    shutil.copyfile(other, own)
    shutil.copyfile(compiled.checksum_path(other), compiled.checksum_path(own))
    model = _repository(tmp_path, plugins).get(MODEL, "1")
    assert model.adapter.compiled is None
    assert "differ from LightGBM" in model.adapter.predictor, model.adapter.predictor
    x = batch_features(simulate(500, seed=93), model.manifest.feature_config)[:, model.feature_index]
    assert np.array_equal(model.adapter.predict_proba(x), model.adapter.booster.predict(x))


def test_an_artifact_for_an_older_model_file_is_not_found(repos, plugins, tmp_path):
    """The artifact's name carries the model file's hash: a retrained file never meets an old artifact."""
    version = _copy_version(repos, tmp_path)
    artifact = _artifact(version)
    wrong = artifact.with_name("lleaves-0000000000000000-" + artifact.name.split("-", 2)[2])
    artifact.rename(wrong)
    compiled.checksum_path(artifact).rename(compiled.checksum_path(wrong))
    adapter = _repository(tmp_path, plugins).get(MODEL, "1").adapter
    assert adapter.compiled is None and "not compiled" in adapter.predictor, adapter.predictor


def test_the_quick_build_train_makes_is_exact_too_and_the_full_build_wins_when_both_exist(repos, plugins, tmp_path):
    version = _copy_version(repos, tmp_path)
    full = _artifact(version)
    done = _compile(tmp_path, MODEL, "1", "--quick")
    assert done.returncode == 0 and "compiled with lleaves (quick" in done.stdout, done.stdout + done.stderr
    assert _repository(tmp_path, plugins).get(MODEL, "1").adapter.predictor.startswith(f"lleaves (compiled {full.name}")
    full.unlink()
    model = _repository(tmp_path, plugins).get(MODEL, "1")
    assert model.adapter.compiled is not None and "-quick." in model.adapter.predictor, model.adapter.predictor
    x = batch_features(simulate(2_000, seed=94), model.manifest.feature_config)[:, model.feature_index]
    assert np.array_equal(model.adapter.predict_proba(x), model.adapter.booster.predict(x))
    singles = np.vstack([model.adapter.predict_proba(x[i : i + 1]) for i in range(300)])
    assert np.array_equal(singles, model.adapter.booster.predict(x[:300]))


@pytest.mark.skipif(shutil.which("ld") is None and shutil.which("cc") is None, reason="no system linker here")
def test_with_a_linker_the_artifact_is_a_shared_library_and_serving_never_loads_llvm(repos):
    """LLVM's library costs ~75 MB resident: a linked artifact is loaded with ctypes alone."""
    assert _artifact(repos["compiled"] / MODEL / "1").suffix == ".so"
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tickserve.plugins.manager import load_plugins\n"
        "from tickserve.models.repository import ModelRepository\n"
        f"r = ModelRepository(Path({str(repos['compiled'])!r}), load_plugins().adapters); r.load_all()\n"
        f"print(r.get({MODEL!r}, '1').adapter.predictor)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('llvmlite', 'lleaves')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    predictor, loaded = done.stdout.strip().splitlines()[-2:]
    assert predictor.startswith("lleaves"), predictor
    assert loaded == "[]", f"serving a linked artifact loaded {loaded}"


def test_without_a_linker_the_object_file_is_kept_and_loaded_through_llvmlite(repos, plugins, tmp_path, monkeypatch):
    version = _copy_version(repos, tmp_path)
    shutil.rmtree(version / compiled.COMPILED_DIR)
    monkeypatch.setattr(compiled, "_linkers", lambda: [])  # as on a machine without ld or cc
    adapter_cls = plugins.adapters["lightgbm"]
    model = _repository(tmp_path, plugins).get(MODEL, "1")
    built = adapter_cls.compile(version, model.manifest, quick=True)
    assert "object file" in built and built.endswith("-quick.o"), built
    model = _repository(tmp_path, plugins).get(MODEL, "1")
    assert (
        model.adapter.compiled is not None
        and model.adapter.predictor.endswith("probe rows)")
        and "-quick.o" in model.adapter.predictor
    ), model.adapter.predictor
    x = batch_features(simulate(1_500, seed=95), model.manifest.feature_config)[:, model.feature_index]
    expected = model.adapter.booster.predict(x)
    assert np.array_equal(model.adapter.predict_proba(x), expected)
    assert np.array_equal(np.vstack([model.adapter.predict_proba(x[i : i + 1]) for i in range(200)]), expected[:200])


def test_models_command_shows_what_computes_the_predictions(two_servers):
    for kind, expected in (("compiled", "lleaves"), ("native", "lightgbm")):
        done = subprocess.run(
            [*TICKSERVE, "models", "--server", two_servers[kind]], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        row = next(line for line in done.stdout.splitlines() if line.startswith(MODEL))
        assert row.split()[5] == expected, done.stdout


def test_compile_skips_staging_directories_and_reports_an_unreadable_manifest_without_stopping(repos, tmp_path):
    version = _copy_version(repos, tmp_path)
    shutil.rmtree(version / compiled.COMPILED_DIR)
    (tmp_path / MODEL / ".signal-lgbm-3-abc").mkdir()  # a training in progress
    broken = tmp_path / MODEL / "7"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    done = _compile(tmp_path, "--quick")
    assert done.returncode == 1, done.stdout + done.stderr  # one model failed
    assert f"{MODEL}/7: not compiled (manifest unreadable" in done.stdout, done.stdout
    assert f"{MODEL}/1: compiled with lleaves (quick" in done.stdout, done.stdout
    assert ".signal-lgbm-3-abc" not in done.stdout


def test_a_zero_as_missing_model_is_not_compiled_because_lleaves_would_not_be_exact(plugins, tmp_path):
    """LightGBM treats |v| <= 1e-35 as zero in such splits, lleaves only 0.0: refused at compile and at load."""
    adapter = plugins.adapters["lightgbm"]
    path, manifest = train_model(
        simulate(6_000, seed=96),
        adapter=adapter,
        models_dir=tmp_path,
        name=MODEL,
        params={**FAST_PARAMS, "zero_as_missing": True},
    )
    done = _compile(tmp_path, MODEL)
    assert done.returncode == 1 and "zero-as-missing" in done.stdout, done.stdout + done.stderr
    assert not (path / compiled.COMPILED_DIR).exists() or not any((path / compiled.COMPILED_DIR).iterdir())
    loaded = _repository(tmp_path, plugins).get(MODEL, "1").adapter
    assert loaded.compiled is None and "zero-as-missing" in loaded.predictor, loaded.predictor


def test_the_probe_rows_cover_every_split_threshold_and_its_neighbours(repos):
    model_file = repos["compiled"] / MODEL / "1" / "model.txt"
    points = compiled.split_points(model_file)
    import lightgbm

    x = compiled.probe_rows(lightgbm.Booster(model_file=str(model_file)).num_feature(), model_file)
    assert points, "no split parsed from the model file"
    for f, t in points[:50]:
        column = x[:, f]
        assert (
            (column == t).any()
            and (column == np.nextafter(t, np.inf)).any()
            and (column == np.nextafter(t, -np.inf)).any()
        )
    assert (x == 1e-36).any() and (x == 5e-324).any() and np.isnan(x).any() and np.isinf(x).any()
