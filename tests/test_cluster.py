"""Replicas behind a real gRPC load balancer (issue 16): three `tickserve serve` replicas behind
nginx (grpc_pass), health-checked through gRPC health by `tickserve cluster`'s supervisor. Streams
through nginx are spread over the replicas and stay on one each; one replica is SIGKILLed
mid-stream and its streams resume elsewhere with every tick answered once, in order, with the
signals of an unbroken stream; a draining replica (NOT_SERVING) gets no new streams.

When nginx is missing the test installs Debian's package with apt-get (only as root); it skips,
saying why, only when it cannot be had."""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from tickserve.cluster import Cluster, ClusterConfig
from tickserve.cluster.access_log import read_calls
from tickserve.cluster.nginx import find_nginx
from tickserve_client import TickserveClient
from tickserve_proto.v1 import tickserve_pb2 as pb

from .conftest import MODEL
from .test_failover import _key
from .test_failover import _ticks as failover_ticks

STREAMS = 6
TICKS = 600
HELD_AT = 150  # each stream is held open here until a replica has been killed under it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ticks(n: int = TICKS) -> list[pb.Tick]:
    return failover_ticks(n, seed=73)


def _logged_calls(cluster, expected: int, since: float = 0.0) -> list:
    """nginx's access-log lines of StreamSignals calls, once `expected` of them (started since
    `since`) are there: nginx writes a call's line when it has finished the call, which may be a
    moment after the client saw its end (1 run in 5 read one line short without waiting)."""
    deadline = time.monotonic() + 10
    while True:
        calls = read_calls(cluster.settings.access_log, "StreamSignals")
        if sum(c.started >= since for c in calls) >= expected or time.monotonic() > deadline:
            return calls
        time.sleep(0.05)


class HeldTicks(list):
    """The ticks, of which the request side cannot take those from HELD_AT on until `gate` opens:
    every stream is then surely open (and on its replica) when the replica is killed."""

    def __init__(self, ticks, gate: threading.Event) -> None:
        super().__init__(ticks)
        self.gate = gate

    def __getitem__(self, key):
        if isinstance(key, slice) and (key.start or 0) >= HELD_AT:
            self.gate.wait(60)
        return super().__getitem__(key)


@pytest.fixture(scope="module")
def cluster(model_repo, tmp_path_factory):
    path, reason = find_nginx(install=True)
    if path is None:
        pytest.skip(f"no nginx: {reason}")
    config = ClusterConfig(
        models=model_repo,
        replicas=3,
        port=_free_port(),
        drain=4.0,
        grace=1.0,
        health_interval=0.2,
        run_dir=tmp_path_factory.mktemp("cluster"),
        serve_args=("--no-signal-log", "--default-model", MODEL),
    )
    notes: list[str] = []
    with Cluster(config, announce=notes.append) as running:
        running.notes = notes
        yield running


def test_streams_survive_a_killed_replica_with_the_same_signals(cluster):
    ticks = _ticks()
    with TickserveClient(cluster.replicas[0].address, timeout=60) as client:  # direct, unbroken
        expected = [_key(r) for r in client.stream_signals(ticks, model=MODEL)]

    gate = threading.Event()
    held = HeldTicks(ticks, gate)
    got: dict[int, list] = {i: [] for i in range(STREAMS)}
    resumes: dict[int, list[int]] = {i: [] for i in range(STREAMS)}
    back_at: dict[int, float] = {}  # first answer after a resume: the failover's end
    errors: list[BaseException] = []
    reached = threading.Semaphore(0)

    def run(i: int) -> None:
        try:
            with TickserveClient(cluster.address, timeout=60) as client:  # its own connection to nginx
                for result in client.stream_signals_resuming(
                    held, model=MODEL, on_resume=lambda answered, attempt: resumes[i].append(answered)
                ):
                    got[i].append(_key(result))
                    if resumes[i] and i not in back_at:
                        back_at[i] = time.monotonic()
                    if len(got[i]) == HELD_AT:
                        reached.release()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
            reached.release()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(STREAMS)]
    for t in threads:
        t.start()
    for _ in range(STREAMS):
        assert reached.acquire(timeout=60)
    assert not errors, errors
    victim = cluster.replicas[1]
    killed_wall, killed_at = time.time(), time.monotonic()
    victim.proc.send_signal(signal.SIGKILL)  # without a word: no drain, no GOAWAY, no status
    victim.proc.wait(10)
    gate.set()
    for t in threads:
        t.join(60)
    assert not errors, errors

    # every stream: every tick answered once, in order, bit for bit as the unbroken stream
    for i in range(STREAMS):
        assert len(got[i]) == len(ticks) and got[i] == expected, f"stream {i}"
    broken = [i for i in range(STREAMS) if resumes[i]]
    assert all(len(resumes[i]) == 1 and resumes[i][0] >= HELD_AT for i in broken)

    # spread: nginx's log says where each stream began; the victim's streams are the broken ones
    calls = _logged_calls(cluster, STREAMS + len(broken))  # one per stream, one more per resume
    first = [c for c in calls if c.started < killed_wall]
    per_replica = {r.address: sum(c.replica == r.address for c in first) for r in cluster.replicas}
    assert len(first) == STREAMS and all(n >= 1 for n in per_replica.values()), per_replica
    assert len(broken) == per_replica[victim.address] >= 1, (broken, per_replica)
    # a stream stays on one replica: one call per unbroken stream, two per broken one, and the
    # resumed calls all went to the replicas still alive
    later = [c for c in calls if c.started >= killed_wall]
    assert len(calls) == STREAMS + len(broken) and all(c.replica != victim.address for c in later)

    # the supervisor saw it go (gRPC health unanswered) and took it out of the upstream
    cluster.supervisor.wait_for(lambda s: s.serving.get(victim.address) is False, timeout=5)
    failover = max(back_at[i] - killed_at for i in broken)
    print(f"\nstreams per replica {per_replica}; {len(broken)} resumed; failover {failover * 1000:.0f} ms")
    assert failover < 5.0


def test_a_draining_replica_gets_no_new_streams(cluster):
    alive = [r for r in cluster.replicas if r.alive]
    assert len(alive) >= 2
    drained = alive[0]
    drained.proc.send_signal(signal.SIGTERM)  # --drain 4: NOT_SERVING, still serving for 4 s
    t0 = time.monotonic()
    cluster.supervisor.wait_for(lambda s: s.serving.get(drained.address) is False, timeout=3)
    removed_after = time.monotonic() - t0
    since = time.time()
    ticks = _ticks(80)
    for _ in range(2 * len(alive)):  # new connections, new streams: each would reach the drained one in turn
        with TickserveClient(cluster.address, timeout=30) as client:
            assert len(list(client.stream_signals(ticks, model=MODEL))) == len(ticks)
    assert drained.alive  # it was still serving: only the balancer kept the streams away
    calls = [c for c in _logged_calls(cluster, 2 * len(alive), since) if c.started >= since]
    assert len(calls) == 2 * len(alive)
    assert all(c.replica != drained.address for c in calls), [c.replica for c in calls]
    assert drained.proc.wait(15) == 0  # then it stopped cleanly
    print(f"\ndrained replica out of the upstream {removed_after * 1000:.0f} ms after SIGTERM")
