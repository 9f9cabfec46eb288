"""Features and labels of a tick frame computed in chunks on a Dask cluster, the same bits as one process.

A chunk is a run of rows of the frame sorted by instrument (arrival order kept,
which is time order within an instrument): partitioned by instrument and time,
many small instruments share a chunk, a large one spans several. Each chunk
carries the context its rows need and nothing else:

- warm-up: the MAX_LOOKBACK ticks of its first instrument before its first row.
  Every feature of a tick reads at most MAX_LOOKBACK ticks back (the mid of
  return_50 is the oldest, `_kernel.c`), and the compiled step only asks whether
  an instrument has at least MAX_LOOKBACK ticks behind it, so after that many
  ticks the state equals the one that saw every tick before (spec.py: "a stream
  resumed after MAX_LOOKBACK ticks of warm-up computes them exactly");
- look-ahead: the ticks of its last instrument after its last row up to its
  label tick: `horizon_ticks` ticks, or (time horizon) every tick before
  t_last + horizon_ns and the first one at or after it. A tick's label tick
  is then in the chunk whenever it exists at all.

Other instruments of a chunk start and end inside it. The warm-up and
look-ahead rows are computed and dropped; each chunk returns the rows it owns,
and the driver writes them back in the frame's row order, label rows mapped
back to frame rows. `batch_features` and `make_labels` run unchanged on each
chunk, so the compiled step is the one that serves streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..core.ticks import TickFrame
from ..evaluation.labels import LabelConfig, instrument_codes, make_labels
from ..features import FEATURE_NAMES, MAX_LOOKBACK, FeatureConfig, batch_features

if TYPE_CHECKING:  # dask is optional: imported only by the code that is given a client
    from distributed import Client

DEFAULT_CHUNK_ROWS = 200_000


@dataclass(frozen=True)
class Chunk:
    """`rows`: frame rows the chunk computes on, grouped by instrument in time order;
    `rows[own_start:own_stop]` are the rows whose features and labels it returns."""

    rows: np.ndarray
    own_start: int
    own_stop: int


@dataclass(frozen=True)
class ChunkResult:
    features: np.ndarray  # (own rows, len(FEATURE_NAMES))
    labels: np.ndarray  # int64, NO_LABEL where unlabeled
    future: np.ndarray  # int64: the label tick's row within the chunk, -1 where none


def plan_chunks(frame: TickFrame, labels: LabelConfig, chunk_rows: int) -> list[Chunk]:
    """The chunks of `frame`, each owning at most `chunk_rows` rows. Refuses ticks out of time
    order within an instrument, as `make_labels` does (a chunk might not see both rows)."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    codes = instrument_codes(frame)
    n = len(codes)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    ts = frame.timestamp_ns[order]
    # per sorted position, the first and one-past-last position of its instrument
    first = np.searchsorted(sorted_codes, sorted_codes, side="left")
    end = np.searchsorted(sorted_codes, sorted_codes, side="right")
    chunks = []
    for lo in range(0, n, chunk_rows):
        hi = min(n, lo + chunk_rows)
        warm = max(lo - MAX_LOOKBACK, int(first[lo]))
        stop = int(end[hi - 1])
        if labels.in_time:
            # the first tick at or after t_last + H is the last label tick any owned row can have
            at = hi + int(np.searchsorted(ts[hi:stop], ts[hi - 1] + labels.horizon_ns, side="left"))
            ahead = min(stop, at + 1)
        else:
            ahead = min(stop, hi + labels.horizon_ticks)
        chunks.append(Chunk(order[warm:ahead], lo - warm, hi - warm))
    return chunks


def chunk_features_labels(
    frame: TickFrame, own_start: int, own_stop: int, features: FeatureConfig, labels: LabelConfig
) -> ChunkResult:
    """One chunk's work, on a worker: the single-process functions on the chunk's rows."""
    x = batch_features(frame, features)
    y, future = make_labels(frame, labels, features)
    own = slice(own_start, own_stop)
    return ChunkResult(x[own], y[own], future[own])


def features_and_labels(
    client: Client,
    frame: TickFrame,
    features: FeatureConfig,
    labels: LabelConfig,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(feature matrix, labels, label-tick rows) of `frame` computed on `client`'s workers;
    equal bit for bit to (`batch_features(frame)`, *`make_labels(frame, ...)`)."""
    n = len(frame)
    x = np.empty((n, len(FEATURE_NAMES)))
    y = np.empty(n, dtype=np.int64)
    future = np.empty(n, dtype=np.int64)
    if n == 0:
        return x, y, future
    chunks = plan_chunks(frame, labels, chunk_rows)
    # scattered first: the chunks' ticks travel once, not inside the task graph
    parts = client.scatter([frame.take(c.rows) for c in chunks])
    results = client.map(
        chunk_features_labels,
        parts,
        [c.own_start for c in chunks],
        [c.own_stop for c in chunks],
        features=features,
        labels=labels,
        pure=False,
    )
    for chunk, result in zip(chunks, client.gather(results)):
        owned = chunk.rows[chunk.own_start : chunk.own_stop]
        x[owned] = result.features
        y[owned] = result.labels
        future[owned] = np.where(result.future >= 0, chunk.rows[np.maximum(result.future, 0)], -1)
    return x, y, future


class FeatureLabelStage(Protocol):
    """(feature matrix, labels, label-tick rows) of a frame: `local_stage` or `DaskStage`."""

    def __call__(
        self, frame: TickFrame, features: FeatureConfig, labels: LabelConfig
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class DaskStage:
    """The feature and label stage of `train_model` on a Dask cluster (`--dask`)."""

    client: Client
    chunk_rows: int = DEFAULT_CHUNK_ROWS

    def __call__(
        self, frame: TickFrame, features: FeatureConfig, labels: LabelConfig
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return features_and_labels(self.client, frame, features, labels, self.chunk_rows)


def local_stage(
    frame: TickFrame, features: FeatureConfig, labels: LabelConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The single-process stage: what `DaskStage` must equal."""
    y, future = make_labels(frame, labels, features)
    return batch_features(frame, features), y, future


__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "Chunk",
    "ChunkResult",
    "DaskStage",
    "FeatureLabelStage",
    "chunk_features_labels",
    "features_and_labels",
    "local_stage",
    "plan_chunks",
]
