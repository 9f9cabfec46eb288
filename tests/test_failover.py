"""Failover that keeps features exact (issue 16): a stream that loses its server mid-way
reconnects, replays each instrument's last max_lookback ticks as warm-up and resumes, and its
signals equal, bit for bit, those of a stream that never broke; draining says NOT_SERVING while
still serving."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tickserve.features import MAX_LOOKBACK
from tickserve.serving.converters import frame_to_protos
from tickserve.simulate import simulate
from tickserve_client import TickserveClient
from tickserve_proto.v1 import tickserve_pb2 as pb

from .conftest import MODEL

TICKSERVE = [sys.executable, "-m", "tickserve.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(models, port: int, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*TICKSERVE, "serve", "--models", str(models), "--port", str(port), "--no-signal-log", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise TimeoutError("the server did not start")


def _ticks(n: int = 700, seed: int = 71) -> list[pb.Tick]:
    ticks = frame_to_protos(simulate(n, seed=seed))
    for i, t in enumerate(ticks):  # two instruments, interleaved, each with its own sequence
        t.instrument = "AAA" if i % 3 else "BBB"
        t.sequence = 1000 + i
    return ticks


def _key(result: pb.TickResult) -> tuple:
    s = result.signal
    return (s.instrument, s.sequence, s.p_sell, s.p_hold, s.p_buy, s.action, s.warmed_up, s.sequence_gap, s.edge_score)


def test_warmup_ticks_fold_into_state_without_signals(server):
    ticks = _ticks(200)
    with TickserveClient(server.address, timeout=60) as client:
        whole = list(client.stream_signals(ticks, model=MODEL))
        info = client.get_model(MODEL)
        assert info.max_lookback == MAX_LOOKBACK
        # a fresh stream given the last max_lookback ticks of each instrument as warm-up answers
        # the rest exactly as the stream that saw everything
        cut = 150
        by = {}
        for t in ticks[:cut]:
            by.setdefault(t.instrument, []).append(t)
        replay = sorted((t for q in by.values() for t in q[-MAX_LOOKBACK:]), key=lambda t: t.timestamp_ns)

        def requests():
            yield pb.StreamSignalsRequest(config=pb.StreamConfig(model=MODEL, version=info.version))
            yield pb.StreamSignalsRequest(warmup=pb.TickBatch(ticks=replay))
            for t in ticks[cut:]:
                yield pb.StreamSignalsRequest(tick=t)

        responses = list(client.stub.StreamSignals(requests(), timeout=60))
    assert responses[0].warmup.accepted == len(replay) and responses[0].warmup.rejected == 0
    assert not responses[0].results
    resumed = [r for resp in responses[1:] for r in resp.results]
    assert [_key(r) for r in resumed] == [_key(r) for r in whole[cut:]]


def test_a_stream_resumes_across_a_killed_server_with_the_same_signals(model_repo):
    port = _free_port()
    ticks = _ticks()
    proc = _serve(model_repo, port)
    replaced: dict = {}
    try:
        with TickserveClient(f"127.0.0.1:{port}", timeout=60) as client:
            expected = [_key(r) for r in client.stream_signals(ticks, model=MODEL)]

        def kill_and_restart() -> None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            replaced["proc"] = _serve(model_repo, port)

        got, resumes = [], []
        with TickserveClient(f"127.0.0.1:{port}", timeout=60) as client:
            killer = None
            for i, result in enumerate(
                client.stream_signals_resuming(
                    ticks, model=MODEL, on_resume=lambda answered, attempt: resumes.append(answered)
                )
            ):
                got.append(_key(result))
                if i == 300:  # mid-stream: the server dies without a word, another takes its port
                    killer = threading.Thread(target=kill_and_restart)
                    killer.start()
            killer.join()
        assert resumes and 300 < resumes[0] < len(ticks)  # it did break, and resumed
        assert len(got) == len(ticks) and got == expected  # every tick once, in order, same bits
    finally:
        for p in (proc, replaced.get("proc")):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)


def test_drain_says_not_serving_while_still_serving(model_repo):
    port, http_port = _free_port(), _free_port()
    proc = _serve(model_repo, port, "--drain", "3", "--http-port", str(http_port), "--default-model", MODEL)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        health = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest(service="")
        assert health.Check(check, timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 2
        while health.Check(check, timeout=10).status == health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # NOT_SERVING, yet a new call is answered: a balancer has time to move streams away
        with TickserveClient(f"127.0.0.1:{port}", timeout=10) as client:
            assert len(client.predict(_ticks(3), model=MODEL)) == 3
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{http_port}/ready", timeout=10)
        assert err.value.code == 503
        channel.close()
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "tickserve draining" in out
    finally:
        if proc.poll() is None:
            proc.kill()
