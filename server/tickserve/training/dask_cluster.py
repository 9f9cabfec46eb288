"""`--dask ADDRESS|local[:N]`: the Dask client `tickserve train --dask` works through.

A scheduler address ("tcp://host:8786") connects to a running cluster; "local" or
"local:N" starts a LocalCluster of N worker processes (default 2) on this machine for
the length of the command. dask is imported here only, when --dask is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

DEFAULT_LOCAL_WORKERS = 2


@dataclass(frozen=True)
class ClusterSpec:
    address: str | None  # None: a LocalCluster
    workers: int = DEFAULT_LOCAL_WORKERS

    @staticmethod
    def parse(text: str) -> ClusterSpec:
        text = text.strip()
        if text == "local" or text.startswith("local:"):
            _, _, n = text.partition(":")
            try:
                workers = int(n) if n else DEFAULT_LOCAL_WORKERS
            except ValueError:
                raise ValueError(f"--dask: local:N takes a number of workers, got {text!r}") from None
            if workers < 1:
                raise ValueError(f"--dask: local:N needs N >= 1, got {workers}")
            return ClusterSpec(None, workers)
        if not text:
            raise ValueError("--dask: a scheduler address (tcp://host:8786) or local[:N]")
        return ClusterSpec(text)

    def describe(self) -> str:
        return self.address or f"a local cluster of {self.workers} worker processes"


@contextmanager
def connect(spec: ClusterSpec) -> Iterator:
    """A `distributed.Client` for the spec; a local cluster is closed on exit."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise RuntimeError("--dask needs dask and distributed: pip install 'tickserve[dask]'") from None
    if spec.address is not None:
        with Client(spec.address) as client:
            yield client
        return
    # one thread per worker: the feature kernel and LightGBM each use a core per task
    with (
        LocalCluster(n_workers=spec.workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield client
