"""Safe model storage, checked: which files of a model directory are or hold a pickle, and which
globals an unpickler resolved while a block ran. Unpickling a file runs any code written into it,
and a model directory is data an operator copies around, so `load` must never unpickle
(tickserve.plugin's contract; plugins/contract.py runs these checks)."""

from __future__ import annotations

import io
import sys
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".sav", ".dill", ".pt", ".pth", ".ckpt"})


def pickled_files(model_dir: Path) -> list[str]:
    """What in `model_dir` is or holds a pickle, each with the reason: a pickle-based file name, a
    pickle header (protocol 2-5), an object array in a .npy or inside an .npz/zip (np.load
    unpickles those), or a pickle inside a zip (torch.save files are zips of pickles)."""
    found = []
    for path in sorted(p for p in Path(model_dir).rglob("*") if p.is_file()):
        name = str(path.relative_to(model_dir))
        with path.open("rb") as f:
            head = f.read(2)
        if path.suffix.lower() in PICKLE_SUFFIXES:
            found.append(f"{name} (a pickle-based format)")
        elif len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
            found.append(f"{name} (a pickle, protocol {head[1]})")
        elif path.suffix.lower() == ".npy" and _npy_holds_objects(path.read_bytes()):
            found.append(f"{name} (an object array: a pickle inside)")
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                for member in z.namelist():
                    if Path(member).suffix.lower() in PICKLE_SUFFIXES:
                        found.append(f"{name}:{member} (a pickle)")
                    elif member.endswith(".npy") and _npy_holds_objects(z.read(member)):
                        found.append(f"{name}:{member} (an object array: a pickle inside)")
    return found


def _npy_holds_objects(data: bytes) -> bool:
    try:
        f = io.BytesIO(data)
        major, _ = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        _, _, dtype = read(f, max_header_size=100_000)
    except ValueError:
        return False
    return dtype.hasobject


_watch_lock = threading.Lock()
_unpickled: list[str] | None = None
_hooked = False


def _audit(event: str, args: tuple) -> None:
    if event == "pickle.find_class" and _unpickled is not None:
        _unpickled.append(f"{args[0]}.{args[1]}")


@contextmanager
def watching_unpickling() -> Iterator[list[str]]:
    """The globals any unpickler resolves meanwhile, from Python's `pickle.find_class` audit event
    (C and Python unpicklers both raise it). An audit hook cannot be removed: it is added once and
    does nothing outside this block."""
    global _unpickled, _hooked
    with _watch_lock:
        if not _hooked:
            sys.addaudithook(_audit)
            _hooked = True
        _unpickled = seen = []
        try:
            yield seen
        finally:
            _unpickled = None
