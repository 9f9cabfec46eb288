"""The thread rule for adapters: a model call runs on one native thread (OpenMP, BLAS, MKL).

Why: the server's parallelism is its worker threads, one model call each. A native library left
to its default starts one thread per core *inside* every call; on a busy box those threads wait
for each other and a single row costs 100 times more (issue 15: a third-party model answered a
row in 123 ms with OpenMP's default pool, 1 ms with one thread). So every thread that calls an
adapter limits the native pools of the libraries loaded so far to one thread before its first
call, and again after a new adapter has loaded (it may have brought a library of its own).

threadpoolctl does the limiting: it knows where each OpenMP/BLAS runtime keeps its setting, which
we would otherwise rediscover per library. Two facts shape this module:
- building a controller walks the process's loaded libraries (about 2 ms), so it is built once
  per adapter load, off the serving path;
- OpenMP's limit belongs to the calling thread (BLAS's is process-wide), so each calling thread
  applies the limit itself, once per generation (about 10 us), and a call then costs one
  thread-local read.
An adapter that needs more threads for big batches asks for them explicitly per call (LightGBM's
`num_threads`, XGBoost's `nthread`), never more than the cores it runs on.
"""

from __future__ import annotations

import threading

from threadpoolctl import ThreadpoolController

_lock = threading.Lock()
_controller: ThreadpoolController | None = None
_generation = 0
_local = threading.local()


def libraries_loaded() -> None:
    """Call after an adapter has loaded: every calling thread re-applies the rule on its next call,
    to the native libraries loaded by then."""
    global _controller, _generation
    controller = ThreadpoolController()  # outside the lock: it walks every loaded library
    with _lock:
        _controller = controller
        _generation += 1


def limit_this_thread(threads: int | None) -> None:
    """Limit the native pools this thread uses to `threads` (an adapter's `native_threads`) unless
    done since the last load; None: the adapter sets its own thread counts per call, left alone."""
    if threads is None or getattr(_local, "applied", None) == (_generation, threads):
        return  # the serving path: one thread-local read
    if _controller is None:  # called before any adapter load was announced (a script, a test)
        libraries_loaded()
    with _lock:
        controller, generation = _controller, _generation
    controller.limit(limits=threads)  # kept: not a context manager, nothing restores it
    _local.applied = (generation, threads)
