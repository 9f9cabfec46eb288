"""The compiled path: a LightGBM text model compiled to machine code by lleaves, bit-exact.

lleaves compiles the forest with LLVM. Compiled for raw scores, as one block of trees, it
sums the trees in LightGBM's order, so the raw scores are the same bits (tested). The
softmax is then ours, written as LightGBM's C++ writes it (subtract the row's maximum,
libm `exp`, sum left to right, divide), with `math.exp` because it is the same libm
function LightGBM calls and numpy's own SIMD `exp` may differ from it in the last bit on
some CPUs.

Compiling takes seconds to minutes, so it never happens at load or on the request path:
`tickserve compile` (or `tickserve train`) writes the artifact into the model's version
directory, keyed by the model file's hash, the compiler versions and the host CPU, and
`load` only picks up an artifact whose key matches. It then checks the artifact against
LightGBM on probe rows, bit for bit, and serves natively if anything differs.

Two forms of artifact. Where a system linker exists (`ld` or `cc`), lleaves' object code is
linked into a shared library and loaded with ctypes: serving then never loads LLVM (whose
library costs ~75 MB resident). Without a linker the object file itself is kept and loaded
through llvmlite, as lleaves does.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from math import exp
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

COMPILED_DIR = "compiled"
# "full" inlines the trees into one function (the fastest code; about a minute to build for
# 100 trees of 55 leaves); "quick" calls one function per tree (seconds to build, ~60% of
# full's batch rate, still above LightGBM's). `load` takes full when both exist.
LEVELS = ("full", "quick")
# A shared library (loaded with ctypes) before an object file (loaded through llvmlite).
FORMS = (".so", ".o")
ENTRY = "forest_root"
# rows predicted per call when a batch is split: small enough to stay in cache
_CHUNK_ROWS = 4096
# LightGBM reads any input with |v| <= kZeroThreshold (1e-35f, as a double) as 0 before it
# walks the trees (RowFunctionFromDenseMatric); lleaves does not, so the inputs are zeroed
# here the same way. The probe rows found it: a value of -1.00000002e-35 on a split at
# exactly that threshold went left in lleaves and right in LightGBM.
ZERO_THRESHOLD = float(np.float32(1e-35))


def available() -> str | None:
    """None if lleaves can be used here (to compile, or to load an object file), else why not."""
    try:
        import lleaves  # noqa: F401
        import llvmlite.binding  # noqa: F401
    except Exception as exc:  # an ImportError, or llvmlite failing to load its library
        return f"lleaves is not usable here ({type(exc).__name__}: {exc})"
    return None


def _model_hash(model_file: Path) -> str:
    return hashlib.sha256(model_file.read_bytes()).hexdigest()[:16]


def _host_hash() -> str | None:
    """The compiler versions and this CPU (lleaves compiles for the host's features), read
    without loading LLVM; None when the CPU cannot be identified (then no artifact is built
    or trusted: code built for another CPU may die of an illegal instruction, uncatchably)."""
    from importlib.metadata import PackageNotFoundError, version

    parts = [platform.machine(), platform.system()]
    for dist in ("lleaves", "llvmlite"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} -")
    cpu = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":", 1)[0].strip()
            if key in _CPU_KEYS and line not in cpu:
                cpu.append(line)  # the first CPU's description: the others are alike
    except OSError:
        pass
    if not any(line.split(":", 1)[0].strip() in ("flags", "Features") for line in cpu):
        return None
    return hashlib.sha256("|".join(parts + cpu).encode()).hexdigest()[:12]


# x86 and ARM names for what identifies the instruction set
_CPU_KEYS = frozenset(
    (
        "vendor_id",
        "cpu family",
        "model",
        "model name",
        "flags",
        "CPU implementer",
        "CPU architecture",
        "CPU variant",
        "CPU part",
        "Features",
    )
)


def unsupported(model_file: Path) -> str | None:
    """Why lleaves cannot reproduce this model exactly, or None. LightGBM's zero-as-missing
    splits treat |v| <= 1e-35 as zero; lleaves tests v == 0.0 exactly."""
    for line in model_file.read_text(errors="replace").splitlines():
        if line.startswith("decision_type="):
            if any((int(v) >> 2) & 3 == 1 for v in line.split("=", 1)[1].split()):
                return "the model has zero-as-missing splits (zero_as_missing=true), which lleaves does not reproduce exactly"
    return None


def split_points(model_file: Path) -> list[tuple[int, float]]:
    """(feature, threshold) of every numerical split in the model file."""
    points = []
    features: list[int] = []
    for line in model_file.read_text(errors="replace").splitlines():
        if line.startswith("split_feature="):
            features = [int(v) for v in line.split("=", 1)[1].split()]
        elif line.startswith("threshold=") and features:
            thresholds = [float(v) for v in line.split("=", 1)[1].split()]
            points.extend(zip(features, thresholds))
            features = []
    return points


def artifact_stem(model_dir: Path, model_file: Path, level: str = "full") -> Path:
    """The artifact's path without its extension (FORMS): the model file, this level, this
    compiler and this CPU."""
    if level not in LEVELS:
        raise ValueError(f"level: {level!r} is not one of {', '.join(LEVELS)}")
    host = _host_hash()
    if host is None:
        raise ValueError("this CPU cannot be identified (/proc/cpuinfo has no flags or Features line)")
    return model_dir / COMPILED_DIR / f"lleaves-{_model_hash(model_file)}-{host}-{level}"


def find_artifacts(model_dir: Path, model_file: Path) -> list[Path]:
    """The artifacts built for this model file on this CPU, best first: full before quick, a
    shared library before an object file."""
    if _host_hash() is None:
        return []
    found = []
    for level in LEVELS:
        stem = artifact_stem(model_dir, model_file, level)
        found += [p for p in (stem.with_name(stem.name + suffix) for suffix in FORMS) if p.is_file()]
    return found


def checksum_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".sha256")


def _linkers() -> list[list[str]]:
    """Commands that can link an object file into a shared library here, in order of preference."""
    return [
        [found, *flags]
        for name, flags in (("ld", ["-shared"]), ("cc", ["-shared", "-nostdlib"]))
        if (found := shutil.which(name))
    ]


def compile_model(model_file: Path, stem: Path, level: str = "full") -> Path:
    """Compile `model_file` for raw scores; write the artifact at `stem` + .so (linked) or .o
    (no linker here), then its checksum beside it, and return its path.

    The checksum goes last: an artifact without a matching one (compilation interrupted,
    file truncated or damaged) is never loaded, because LLVM aborts the whole process on an
    object file it cannot parse."""
    import lleaves

    stem.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}.tmp"
    obj = stem.with_name(f".{stem.name}.o.{tag}")
    lib = stem.with_name(f".{stem.name}.so.{tag}")
    try:
        model = lleaves.Model(model_file=str(model_file))
        # one block of all trees: lleaves' cache blocking (34 trees by default) sums the trees
        # block by block, in another order than LightGBM, which changes the last bits
        model.compile(cache=str(obj), raw_score=True, fblocksize=model.num_trees(), finline=level == "full")
        built, suffix = obj, ".o"
        for linker in _linkers():
            done = subprocess.run([*linker, "-o", str(lib), str(obj)], capture_output=True, text=True, timeout=600)
            if done.returncode == 0:
                built, suffix = lib, ".so"
                break
            log.warning(
                "linking %s with %s failed (keeping the object file): %s",
                obj.name,
                linker[0],
                done.stderr.strip()[-500:],
            )
        artifact = stem.with_name(stem.name + suffix)
        digest = hashlib.sha256(built.read_bytes()).hexdigest()
        os.replace(built, artifact)
        sidecar = checksum_path(artifact)
        staging = sidecar.with_name(f".{sidecar.name}.{tag}")
        staging.write_text(digest + "\n")
        os.replace(staging, sidecar)
        return artifact
    finally:
        obj.unlink(missing_ok=True)
        lib.unlink(missing_ok=True)


def check_artifact(artifact: Path) -> None:
    """Raise unless `artifact` has the checksum `compile_model` wrote for it."""
    sidecar = checksum_path(artifact)
    if not sidecar.is_file():
        raise ValueError(f"{sidecar.name} is missing (an interrupted compilation?)")
    expected = sidecar.read_text().strip()
    if hashlib.sha256(artifact.read_bytes()).hexdigest() != expected:
        raise ValueError("its sha256 does not match the checksum written when it was compiled (damaged)")


class CompiledForest:
    """Raw scores from a compiled artifact; with `softmax_like_lightgbm`, LightGBM's
    probabilities to the last bit (checked at load by the adapter)."""

    def __init__(self, model_file: Path, artifact: Path, n_features: int, n_classes: int) -> None:
        check_artifact(artifact)  # before the loader sees it: a damaged object file aborts the process
        self.n_features, self.n_classes = n_features, n_classes
        self.probed = 0  # probe rows it was checked on (set by the adapter's check)
        if artifact.suffix == ".so":
            self._owner = ctypes.CDLL(str(artifact))  # keeps the code mapped
            address = ctypes.cast(getattr(self._owner, ENTRY), ctypes.c_void_p).value
        else:
            import lleaves

            model = lleaves.Model(model_file=str(model_file))
            model.compile(cache=str(artifact), raw_score=True)  # the object file exists: loaded, not compiled
            self._owner = model  # owns the machine code: keep it alive
            address = model._execution_engine.get_function_address(ENTRY)
        # our own prototype taking raw addresses (cheaper than POINTER casts); ctypes
        # releases the GIL for the call, and the function only reads its input
        prototype = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32)
        self._forest = prototype(address)

    def raw(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"features: expected shape (n, {self.n_features}), got {x.shape}")
        tiny = np.abs(x) <= ZERO_THRESHOLD
        if tiny.any():
            x = np.where(tiny, 0.0, x)  # a copy: the caller's array is left alone
        out = np.empty((len(x), self.n_classes))
        for start in range(0, len(x), _CHUNK_ROWS):
            self._forest(x.ctypes.data, out.ctypes.data, start, min(start + _CHUNK_ROWS, len(x)))
        return out

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax_like_lightgbm(self.raw(x))


def softmax_like_lightgbm(raw: np.ndarray) -> np.ndarray:
    """LightGBM's Common::Softmax, row by row: exp(x - max) with libm's exp, summed left to
    right from 0, each divided by the sum. Subtractions, sums and divisions are IEEE
    operations (the same bits in numpy as in C++); only the exp is taken from libm."""
    z = raw - raw.max(axis=1)[:, None]
    flat = z.ravel()
    e = np.fromiter(map(exp, flat.tolist()), dtype=np.float64, count=len(flat)).reshape(z.shape)
    total = np.zeros(len(e))
    for k in range(e.shape[1]):  # left to right, as the C++ loop adds
        total += e[:, k]
    return e / total[:, None]


def probe_rows(n_features: int, model_file: Path | None = None, rows: int = 2048) -> np.ndarray:
    """Rows that reach many leaves and sit on the edges where two implementations could part:
    values on many scales, zeros of both signs, tiny and subnormal values, NaN, infinities,
    and, from `model_file`, every split threshold (up to 2,048 of them) exactly and one ulp
    either side."""
    rng = np.random.default_rng(20261125)
    scale = np.exp(rng.uniform(-9.0, 9.0, size=(rows, 1)))
    x = rng.standard_normal((rows, n_features)) * scale
    x[rng.random((rows, n_features)) < 0.05] = 0.0
    x[rng.random((rows, n_features)) < 0.01] = np.nan
    x[rng.random((rows, n_features)) < 0.005] = np.inf
    x[rng.random((rows, n_features)) < 0.005] = -np.inf
    edges = [x]
    tiny = np.array([0.0, -0.0, 1e-36, -1e-36, 1e-35, -1e-35, 2e-35, -2e-35, 5e-324, -5e-324, 1e-300, -1e-300])
    for f in range(n_features):  # each tiny value in each feature, the other features ordinary
        block = x[: len(tiny)].copy()
        block[:, f] = tiny
        edges.append(block)
    if model_file is not None:
        points = split_points(model_file)
        if len(points) > 2048:
            points = [points[i] for i in rng.choice(len(points), 2048, replace=False)]
        if points:
            base = x[rng.integers(0, rows, size=len(points))]
            for value in (lambda t: t, lambda t: np.nextafter(t, np.inf), lambda t: np.nextafter(t, -np.inf)):
                block = base.copy()
                for i, (f, t) in enumerate(points):
                    if 0 <= f < n_features:
                        block[i, f] = value(t)
                edges.append(block)
    return np.vstack(edges)
