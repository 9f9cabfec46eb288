"""A StreamSignals stream that survives its server: reconnect, replay, resume.

When the server goes away (UNAVAILABLE: stopped, killed, a replica gone behind a balancer;
CANCELLED: the connection reset; INTERNAL from an HTTP/2 RST_STREAM: a balancer whose replica died) the stream reconnects with backoff, replays each instrument's
last `max_lookback` answered ticks as a `warmup` message (state only, no signals), and resends
the ticks not answered yet. The server's feature state depends on exactly those ticks
(ModelInfo.max_lookback), so the signals after the break are bit for bit those of a stream that
never broke, and each tick is answered once, in order. The model version is pinned to the one
that answered first, so a replica serving a newer version cannot change the model mid-stream.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator, Sequence

import grpc

from tickserve_proto.v1 import tickserve_pb2 as pb

RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


def _retried(err: grpc.RpcError) -> bool:
    """UNAVAILABLE or CANCELLED; or a stream reset with no status from any server: a proxy
    (nginx's grpc_pass) whose replica died mid-stream resets the client's HTTP/2 stream with
    INTERNAL_ERROR, which gRPC reports as INTERNAL "Received RST_STREAM with error code 2". A
    server's own INTERNAL comes with a status in trailers instead, and is not retried."""
    if err.code() in RETRIED:
        return True
    return err.code() == grpc.StatusCode.INTERNAL and "RST_STREAM" in (err.details() or "")


def stream_signals_resuming(
    client,
    ticks: Sequence[pb.Tick],
    *,
    model: str = "",
    version: str = "",
    return_features: bool = False,
    batch_size: int = 1,
    retry_for_s: float = 30.0,
    on_resume=None,
) -> Iterator[pb.TickResult]:
    """One TickResult per tick, in order, across server failures: see the module's doc.

    `retry_for_s`: give up (raise the last error) when no answer has come for this long.
    `on_resume(answered, attempt)`: called before each reconnection (for logs and tests)."""
    info = client.get_model(model, version)
    lookback = info.max_lookback
    version = version or info.version  # pinned: the replay must meet the same model
    history: dict[str, collections.deque] = {}
    answered = 0
    attempt = 0
    backoff = 0.05
    last_progress = time.monotonic()
    while answered < len(ticks):
        start = answered
        replay = [t for q in history.values() for t in q]
        replay.sort(key=lambda t: t.timestamp_ns)  # per instrument in order; across them any order is valid

        def requests(start=start, replay=replay) -> Iterator[pb.StreamSignalsRequest]:
            config = pb.StreamConfig(model=info.name, version=version, return_features=return_features)
            yield pb.StreamSignalsRequest(config=config)
            if replay:
                yield pb.StreamSignalsRequest(warmup=pb.TickBatch(ticks=replay))
            for i in range(start, len(ticks), max(1, batch_size)):
                chunk = ticks[i : i + max(1, batch_size)]
                if len(chunk) == 1:
                    yield pb.StreamSignalsRequest(tick=chunk[0])
                else:
                    yield pb.StreamSignalsRequest(batch=pb.TickBatch(ticks=chunk))

        try:
            for response in client.stub.StreamSignals(requests(), timeout=client.timeout):
                if response.HasField("warmup"):
                    if response.warmup.rejected:
                        error = response.warmup.first_error
                        raise RuntimeError(f"resuming: the server refused a replayed tick: {error.message}")
                    continue
                for result in response.results:
                    tick = ticks[answered]
                    if result.HasField("signal"):  # only admitted ticks are in the server's state
                        queue = history.setdefault(tick.instrument, collections.deque(maxlen=lookback))
                        queue.append(tick)
                    answered += 1
                    last_progress = time.monotonic()
                    backoff = 0.05
                    yield result
            return
        except grpc.RpcError as err:
            if not _retried(err) or time.monotonic() - last_progress > retry_for_s:
                raise
            attempt += 1
            if on_resume is not None:
                on_resume(answered, attempt)
            time.sleep(backoff)
            backoff = min(backoff * 2, 1.0)
