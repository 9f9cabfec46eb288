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
import os
import platform
import shutil
import subprocess
import threading
from math import exp
from pathlib import Path

import numpy as np

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


def _host_hash() -> str:
    """The compiler versions and this CPU (lleaves compiles for the host's features), read
    without loading LLVM."""
    from importlib.metadata import PackageNotFoundError, version

    parts = [platform.machine(), platform.system()]
    for dist in ("lleaves", "llvmlite"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} -")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags", "vendor_id", "cpu family", "model\t")):
                parts.append(line)
                if line.startswith("flags"):
                    break  # the first CPU's description is enough: they are alike
    except OSError:
        parts.append(platform.processor())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def artifact_stem(model_dir: Path, model_file: Path, level: str = "full") -> Path:
    """The artifact's path without its extension (FORMS): the model file, this level, this
    compiler and this CPU."""
    if level not in LEVELS:
        raise ValueError(f"level: {level!r} is not one of {', '.join(LEVELS)}")
    return model_dir / COMPILED_DIR / f"lleaves-{_model_hash(model_file)}-{_host_hash()}-{level}"


def find_artifact(model_dir: Path, model_file: Path) -> Path | None:
    """The best artifact built for this model file here: full before quick, a shared library
    before an object file; None if there is none."""
    for level in LEVELS:
        stem = artifact_stem(model_dir, model_file, level)
        for suffix in FORMS:
            path = stem.with_name(stem.name + suffix)
            if path.is_file():
                return path
    return None


def checksum_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".sha256")


def _linker() -> list[str] | None:
    for name, command in (("ld", ["-shared"]), ("cc", ["-shared", "-nostdlib"])):
        found = shutil.which(name)
        if found:
            return [found, *command]
    return None


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
        linker = _linker()
        if linker is not None:
            done = subprocess.run([*linker, "-o", str(lib), str(obj)], capture_output=True, text=True, timeout=600)
            if done.returncode == 0:
                built, suffix = lib, ".so"
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
        self._local = threading.local()  # per-thread row buffers: the call runs without the GIL

    def raw_row(self, row: np.ndarray) -> list[float]:
        """`raw` for one row, without the per-call array set-up (a third of the cost)."""
        try:
            into, out, into_at, out_at = self._local.buffers
        except AttributeError:
            into, out = np.empty(self.n_features), np.empty(self.n_classes)
            into_at, out_at = into.ctypes.data, out.ctypes.data
            self._local.buffers = into, out, into_at, out_at
        into[:] = row
        self._forest(into_at, out_at, 0, 1)
        return out.tolist()

    def raw(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"features: expected shape (n, {self.n_features}), got {x.shape}")
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


def probe_rows(n_features: int, rows: int = 2048) -> np.ndarray:
    """Rows that reach many leaves: values on several scales, zeros, negatives, NaN and
    infinities (missing-value and default-direction branches)."""
    rng = np.random.default_rng(20261125)
    scale = np.exp(rng.uniform(-9.0, 9.0, size=(rows, 1)))
    x = rng.standard_normal((rows, n_features)) * scale
    x[rng.random((rows, n_features)) < 0.05] = 0.0
    x[rng.random((rows, n_features)) < 0.01] = np.nan
    x[rng.random((rows, n_features)) < 0.005] = np.inf
    x[rng.random((rows, n_features)) < 0.005] = -np.inf
    return x
