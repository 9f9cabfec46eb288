"""`serve --processes N` (issue 16): N real child processes on one port, repository changes reaching
every child, /metrics summed over the group, SIGTERM draining all, a killed child restarted.

A child is told apart by the `tickserve-process` initial metadata of a unary answer; separate
connections (a local subchannel pool per channel) are spread over the children by SO_REUSEPORT."""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from tickserve.serving.converters import frame_to_protos
from tickserve.simulate import simulate
from tickserve_proto.v1 import tickserve_pb2 as pb
from tickserve_proto.v1 import tickserve_pb2_grpc as pb_grpc

from .conftest import MODEL

TICKSERVE = [sys.executable, "-m", "tickserve.cli"]


class Group:
    def __init__(self, models: Path, tmp: Path, *extra: str) -> None:
        self.ready = tmp / "ready"
        self.proc = subprocess.Popen(
            [*TICKSERVE, "serve", "--models", str(models), "--port", "0", "--processes", "2", "--no-signal-log"]
            + ["--ready-file", str(self.ready), "--default-model", MODEL, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not (self.ready.exists() and self.ready.read_text().strip()):
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, "the group did not start"
            time.sleep(0.05)
        self.port = int(self.ready.read_text())
        self.channels: list[grpc.Channel] = []

    def children(self) -> set[int]:
        text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return {int(p) for p in text.split()}

    def channel(self) -> grpc.Channel:
        # its own connection: grpc would otherwise share one subchannel among channels to a target
        ch = grpc.insecure_channel(f"127.0.0.1:{self.port}", options=[("grpc.use_local_subchannel_pool", 1)])
        self.channels.append(ch)
        return ch

    def channel_per_child(self) -> dict[int, grpc.Channel]:
        """A channel (connection) answered by each child, by pid."""
        found: dict[int, grpc.Channel] = {}
        for _ in range(40):
            ch = self.channel()
            found.setdefault(answering_pid(ch), ch)
            if len(found) == 2:
                return found
        raise AssertionError(f"40 connections reached only the children {sorted(found)}")

    def close(self) -> tuple[str, str]:
        for ch in self.channels:
            ch.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.communicate(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def answering_pid(channel: grpc.Channel) -> int:
    _, call = pb_grpc.SignalServiceStub(channel).GetModel.with_call(pb.GetModelRequest(model=MODEL), timeout=10)
    return int(dict(call.initial_metadata())["tickserve-process"])


def model_state(channel: grpc.Channel, version: str) -> int:
    return (
        pb_grpc.SignalServiceStub(channel).GetModel(pb.GetModelRequest(model=MODEL, version=version), timeout=10).state
    )


@pytest.fixture
def group(model_repo, tmp_path):
    g = Group(model_repo, tmp_path)
    yield g
    g.close()


def test_children_share_one_port_and_stop_together_on_sigterm(model_repo, tmp_path):
    g = Group(model_repo, tmp_path)
    try:
        children = g.children()
        assert len(children) == 2
        assert set(g.channel_per_child()) == children  # both serve the one port
        with socket.socket() as s:  # a plain server cannot take the group's port
            with pytest.raises(OSError):
                s.bind(("127.0.0.1", g.port))
    finally:
        out, err = g.close()
    assert g.proc.returncode == 0, err
    assert out.count("tickserve stopping") == 2 and "SIGTERM to 2 processes" in out
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_repository_changes_reach_every_child(group):
    per_child = group.channel_per_child()
    first = next(iter(per_child.values()))
    repo = pb_grpc.ModelRepositoryServiceStub(first)
    repo.UnloadModel(pb.ModelRef(model=MODEL, version="1"), timeout=30)
    assert model_state(first, "1") == pb.MODEL_STATE_UNLOADED  # the RPC's own child: at once
    for change, state in (
        (None, pb.MODEL_STATE_UNLOADED),
        (repo.LoadModel, pb.MODEL_STATE_READY),
        (repo.UnloadModel, pb.MODEL_STATE_UNLOADED),
    ):
        if change is not None:
            change(pb.ModelRef(model=MODEL, version="1"), timeout=30)
        for pid, channel in per_child.items():  # the siblings: within their poll interval
            deadline = time.monotonic() + 5
            while model_state(channel, "1") != state:
                assert time.monotonic() < deadline, f"child {pid} never saw version 1 {pb.ModelState.Name(state)}"
                time.sleep(0.05)
            assert answering_pid(channel) == pid
    # a change sent to the other child reaches the first too
    last = list(per_child.values())[-1]
    pb_grpc.ModelRepositoryServiceStub(last).LoadModel(pb.ModelRef(model=MODEL, version="1"), timeout=30)
    deadline = time.monotonic() + 5
    while model_state(first, "1") != pb.MODEL_STATE_READY:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_metrics_sum_every_child(model_repo, tmp_path):
    g = Group(model_repo, tmp_path, "--http-port", "0")
    try:
        ticks = frame_to_protos(simulate(40, seed=5))
        sent = 0
        for i, channel in enumerate(g.channel_per_child().values()):
            n = 7 + 10 * i  # a different count per child: a sum of one child's would not match
            stub = pb_grpc.SignalServiceStub(channel)
            assert len(stub.Predict(pb.PredictRequest(model=MODEL, ticks=ticks[:n]), timeout=10).signals) == n
            sent += n
        http_port = int(re.search(r"HTTP on port (\d+)", _stdout_until(g, "HTTP on port")).group(1))
        for _ in range(4):  # every scrape, whichever child answers it, sums both
            body = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10).read().decode()
            total = sum(
                float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith("tickserve_ticks_total{")
            )
            assert total == sent
            assert body.count("tickserve_models{") == 4  # the model states, once
    finally:
        g.close()


def _stdout_until(g: Group, text: str) -> str:
    seen = ""
    while text not in seen:
        line = g.proc.stdout.readline()
        assert line, seen
        seen += line
    return seen


def test_a_killed_child_is_restarted_and_the_other_serves_on(group):
    per_child = group.channel_per_child()
    victim, survivor = list(per_child)
    answers: queue.Queue = queue.Queue()
    requests: queue.Queue = queue.Queue()
    ticks = frame_to_protos(simulate(60, seed=9))

    def stream() -> None:
        calls = pb_grpc.SignalServiceStub(per_child[survivor]).StreamSignals(iter(requests.get, None), timeout=60)
        for response in calls:
            answers.put(len(response.results))

    requests.put(pb.StreamSignalsRequest(config=pb.StreamConfig(model=MODEL)))
    reader = threading.Thread(target=stream, daemon=True)
    reader.start()
    for tick in ticks[:30]:
        requests.put(pb.StreamSignalsRequest(tick=tick))
    assert sum(answers.get(timeout=10) for _ in range(30)) == 30

    subprocess.run(["kill", "-9", str(victim)], check=True)
    for tick in ticks[30:]:  # the stream on the other child does not notice
        requests.put(pb.StreamSignalsRequest(tick=tick))
    assert sum(answers.get(timeout=10) for _ in range(30)) == 30
    requests.put(None)
    reader.join(10)

    deadline = time.monotonic() + 20
    while True:  # a new child takes the victim's place and serves
        children = group.children()
        if len(children) == 2 and victim not in children:
            replacement = (children - {survivor}).pop()
            pids = {answering_pid(group.channel()) for _ in range(20)}
            if replacement in pids:
                break
        assert time.monotonic() < deadline, "no replacement child serves"
        time.sleep(0.2)
    out, err = group.close()
    assert group.proc.returncode == 0, err
    assert re.search(rf"child process pid {victim} \(slot \d\) exited with code -9 \(SIGKILL\)", err), err
