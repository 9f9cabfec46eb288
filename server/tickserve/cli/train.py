"""Models on disk: `tickserve train` (training orchestration), `compile`, `ensemble` and `check`."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from .data import _load_frame
from .plugins import _plugins


def _key_values(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what}: expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def cmd_train(args) -> int:
    import json

    from ..evaluation.labels import LabelConfig
    from ..features import FeatureConfig
    from ..training import train_model
    from .progress import ProgressBar

    plugins = _plugins(args)
    adapter = plugins.adapters.get(args.adapter)
    if adapter is None:
        raise ValueError(
            f"--adapter: no adapter named {args.adapter!r} (installed: {', '.join(sorted(plugins.adapters)) or 'none'})"
        )
    # instrument settings recorded by `tickserve import` in the data file, then the flags on top
    from ..core.ticks import read_metadata
    from ..evaluation.labels import parse_duration_ns
    from ..importer import instrument_settings

    recorded_sizes, recorded_calendar = instrument_settings(read_metadata(args.data_file) if args.data_file else {})
    tick_sizes = {**recorded_sizes, **{k: float(v) for k, v in _key_values(args.tick_size, "--tick-size").items()}}
    if args.calendar:
        calendar = plugins.calendar(args.calendar)
    else:
        calendar = recorded_calendar or plugins.calendar("us-equities")
    feature_config = FeatureConfig(
        default_tick_size=args.default_tick_size,
        tick_sizes=tuple(sorted(tick_sizes.items())),
        calendar=calendar,
    )
    if recorded_sizes:
        print(
            f"instrument settings recorded in {args.data_file}: "
            + ", ".join(f"{k} tick {v:g}" for k, v in sorted(recorded_sizes.items()))
            + (f", calendar {recorded_calendar.name}" if recorded_calendar else "")
        )
    from ..training.label_choice import parse_threshold
    from ..training.report import TrainingReport
    from .output import format_training

    threshold, spreads = parse_threshold(args.threshold)
    if args.label == "taker" and args.threshold != "2":
        raise ValueError("--threshold applies to --label mid; taker labels use --cost-ticks")
    choose = None
    horizon_ticks = horizon_ns = None
    if args.horizon_time is not None:
        if args.horizon_time == "auto":
            choose = "time"
        else:
            horizon_ns = parse_duration_ns(args.horizon_time)
    elif args.horizon == "auto":
        choose = "ticks"
    else:
        try:
            horizon_ticks = int(args.horizon)
        except ValueError:
            raise ValueError(f"--horizon: a number of ticks or auto, got {args.horizon!r}") from None
    label_config = LabelConfig(
        horizon_ticks, threshold or 2.0, horizon_ns=horizon_ns, mode=args.label, cost_ticks=args.cost_ticks
    )
    params = {k: json.loads(v) if _is_json(v) else v for k, v in _key_values(args.param, "--param").items()}
    features = tuple(f.strip() for f in args.features.split(",") if f.strip()) or None
    frame = _load_frame(args.data_file, args.samples, args.seed)
    source = args.data_file or f"simulator (seed {args.seed})"
    name = args.name or derived_name(args.data_file, args.adapter)
    if not args.name:
        print(f"model name: {name} (from the data and the adapter; --name NAME sets it)")
    check_new_version(args.models, name, frame.fingerprint(), feature_config, args.adapter, args.new_version)
    print(
        f"training {args.adapter} model {name!r} on {len(frame)} ticks from {source} "
        f"({args.label} labels, horizon {'chosen from the data' if choose else label_config.describe()}; "
        f"calendar {calendar.name}; {args.folds} walk-forward folds)"
    )
    with _dask_session(args, adapter) as (stage, trainer):
        path, manifest = train_model(
            frame,
            adapter=adapter,
            stage=stage,
            trainer=trainer,
            models_dir=args.models,
            name=name,
            version=args.version,
            feature_config=feature_config,
            label_config=label_config,
            choose=choose,
            threshold_spreads=spreads,
            feature_names=features,
            params=params,
            progress=ProgressBar("boosting"),
            folds=args.folds,
            cost_gate=not args.no_cost_gate,
            fee_bps=args.fee_bps,
        )
    print(f"wrote {path}")
    for line in format_training(TrainingReport.from_dict(manifest.training)):
        print(line)
    if not args.no_compile:
        _compile_one(adapter, path, manifest, quick=True)
    return 0


@contextmanager
def _dask_session(args, adapter):
    """(stage, trainer) for train_model: both None without --dask. With it, features and labels
    in chunks on the cluster, and the adapter's train_dask if it has one (else its `train` on the
    gathered arrays, said so)."""
    if args.dask is None:
        yield None, None
        return
    from functools import partial

    from ..training.dask_cluster import ClusterSpec, connect
    from ..training.distributed import DaskStage

    spec = ClusterSpec.parse(args.dask)
    with connect(spec) as client:
        train_dask = getattr(adapter, "train_dask", None)
        fit = "lightgbm.dask" if train_dask else f"{adapter.name}'s own train, in this process"
        print(f"dask: {spec.describe()}: features and labels in chunks of {args.dask_chunk_rows} ticks; fit: {fit}")
        yield DaskStage(client, args.dask_chunk_rows), (partial(train_dask, client) if train_dask else None)


def derived_name(data_file: Path | None, adapter: str) -> str:
    """A model name from what it is trained on: `<data file stem>-<adapter>`, or
    `simulated-<adapter>`; never one fixed name that every training run would add a version to."""
    import re

    stem = Path(data_file).name.split(".")[0] if data_file else "simulated"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._") or "ticks"
    return f"{stem[:100]}-{adapter}"


def check_new_version(models: Path, name: str, fingerprint: str, feature_config, adapter: str, allowed: bool) -> None:
    """Refuse to add a version of an existing model trained on other data, with another feature
    config or adapter: its newest version is what every client of the name gets, so a version
    from elsewhere silently changes what they are served. --new-version consents."""
    from ..models.manifest import MANIFEST_FILE, ModelManifest
    from ..models.repository import version_key

    folder = Path(models) / name
    versions = [p for p in folder.iterdir() if (p / MANIFEST_FILE).is_file()] if folder.is_dir() else []
    if not versions or allowed:
        return
    latest = max(versions, key=lambda p: version_key(p.name))
    try:
        previous = ModelManifest.load(latest)
    except Exception:  # an unreadable previous version is the repository's problem, not this one's
        return
    changed = []
    if previous.members:
        changed.append("it is an ensemble")
    if previous.adapter != adapter and not previous.members:
        changed.append(f"adapter {previous.adapter} -> {adapter}")
    if previous.data_fingerprint and previous.data_fingerprint != fingerprint:
        changed.append(f"training data (fingerprint {previous.data_fingerprint[:12]} -> {fingerprint[:12]})")
    if previous.feature_config.to_dict() != feature_config.to_dict():
        changed.append("feature config (tick sizes or calendar)")
    if changed:
        raise ValueError(
            f"--name {name}: version {latest.name} of this model differs: {'; '.join(changed)}. A new version "
            f"would change what every client of {name!r} is served; choose another --name, or pass "
            "--new-version to add one anyway"
        )


def cmd_compile(args) -> int:
    """Compile every model version on disk (or the one named) whose adapter can compile."""
    from ..models.manifest import MANIFEST_FILE, ModelManifest

    plugins = _plugins(args)
    if not args.models.is_dir():
        raise ValueError(f"--models: {args.models} is not a directory")

    def subdirs(folder: Path) -> list[str]:  # not the hidden staging directories of a training in progress
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    names = [args.name] if args.name else subdirs(args.models)
    failed = found = 0
    for name in names:
        if not (args.models / name).is_dir():
            raise ValueError(f"name: no model {name!r} in {args.models}")
        for version in [args.version] if args.version else subdirs(args.models / name):
            path = args.models / name / version
            if not (path / MANIFEST_FILE).is_file():
                if args.version:
                    raise ValueError(f"version: no version {version!r} of {name!r} in {args.models}")
                continue
            try:
                manifest = ModelManifest.load(path)
            except Exception as exc:  # one unreadable manifest must not stop the others
                print(f"{name}/{version}: not compiled (manifest unreadable: {exc})")
                failed += 1
                continue
            if manifest.members:
                continue  # an ensemble: its members are compiled as models of their own
            adapter = plugins.adapters.get(manifest.adapter)
            if adapter is None:
                print(f"{name}/{version}: adapter {manifest.adapter!r} is not installed, skipped")
                continue
            found += 1
            failed += not _compile_one(adapter, path, manifest, quick=args.quick)
    if not found:
        print("no model to compile")
    return 1 if failed else 0


def _compile_one(adapter, path: Path, manifest, *, quick: bool) -> bool:
    import time

    started = time.perf_counter()
    try:
        built = adapter.compile(path, manifest, quick=quick)
    except Exception as exc:  # one model failing to compile leaves it native; say so and go on
        print(f"{manifest.name}/{manifest.version}: not compiled ({type(exc).__name__}: {exc}); it serves natively")
        return False
    if built:
        print(f"{manifest.name}/{manifest.version}: {built} ({time.perf_counter() - started:.1f} s)")
    return True


def _is_json(v: str) -> bool:
    import json

    try:
        json.loads(v)
        return True
    except ValueError:
        return False


def cmd_ensemble(args) -> int:
    from ..models.ensemble import ensemble_manifest
    from ..models.manifest import ModelManifest
    from ..models.repository import version_key
    from ..training import next_version

    members = []
    for spec in args.member:
        ref, _, weight = spec.partition("=")
        name, _, version = ref.partition(":")
        if not version:
            versions = (
                [p.name for p in (args.models / name).iterdir() if p.is_dir()] if (args.models / name).is_dir() else []
            )
            if not versions:
                raise ValueError(f"--member {spec}: no model {name!r} in {args.models}")
            version = max(versions, key=version_key)
        members.append((ModelManifest.load(args.models / name / version), float(weight or 1.0)))
    version = args.version or next_version(args.models, args.name)
    target = args.models / args.name / version
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    manifest = ensemble_manifest(args.name, version, members)  # ValueError naming a member that cannot vote
    target.mkdir(parents=True)
    manifest.save(target)
    # the load `serve` will run (members READY, the whole serving path): a deployment that would
    # come up FAILED is not left behind
    from ..models.offline_check import check_models

    entry = check_models(target, _plugins(args).adapters)[0]
    if entry.state.value != "READY":
        import shutil

        shutil.rmtree(target)
        raise ValueError(f"ensemble {args.name}/{version} would not load ({entry.reason}); nothing written")
    print(f"wrote {target} (members: {', '.join(f'{m.name}/{m.version}={w:g}' for m, w in members)}): READY")
    return 0


def cmd_check(args) -> int:
    """Run the server's load-time checks on a model version, a model or a repository, offline."""
    from ..models.offline_check import check_models

    entries = check_models(args.path, _plugins(args).adapters)
    for e in entries:
        print(f"{e.name}/{e.version}: {e.state.value}" + (f" ({e.reason})" if e.reason else ""))
    return 0 if entries and all(e.state.value == "READY" for e in entries) else 1
