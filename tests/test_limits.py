"""Limits and back-pressure (docs/errors.md) against real servers on loopback ports.

Each limit is configurable (ServerLimits, `tickserve serve --max-...`) and answered with
RESOURCE_EXHAUSTED (or, for a deadline, DEADLINE_EXCEEDED) whose message names the limit
and the value. A client that stops reading makes the server stop reading too (gRPC flow
control; the servicer holds one message and one answer per stream), and once it reads
again every tick it sent is answered, in order.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import grpc
import pytest

from tickserve.cli.launch import serve_command
from tickserve.serving.limits import ServerLimits
from tickserve_proto.v1 import tickserve_pb2 as pb
from tickserve_proto.v1 import tickserve_pb2_grpc as pb_grpc

from .test_error_model import MODEL, rpc_error, small_repository, start_server, stop_server, stream_requests, tick

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
TIGHT = ServerLimits(
    max_concurrent_streams=2, max_ticks_per_message=100, max_instruments_per_stream=3, max_message_bytes=64 * 1024
)


@pytest.fixture(scope="module")
def models(tmp_path_factory, plugins):
    return small_repository(tmp_path_factory.mktemp("limit-models"), plugins)


@pytest.fixture(scope="module")
def tight(models, plugins):
    served = start_server(models, plugins, limits=TIGHT)
    yield served
    stop_server(served)


@pytest.fixture(scope="module")
def roomy(models, plugins):
    """Default limits."""
    served = start_server(models, plugins)
    yield served
    stop_server(served)


def stub_of(served) -> pb_grpc.SignalServiceStub:
    channel = grpc.insecure_channel(served.address)
    return pb_grpc.SignalServiceStub(channel)


def wait_for(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class OpenStream:
    """A stream the test drives message by message."""

    def __init__(self, stub, method: str = "StreamSignals", timeout: float = 30) -> None:
        self.requests: queue.Queue = queue.Queue()

        def feed():
            while (item := self.requests.get()) is not None:
                yield item

        self.call = getattr(stub, method)(feed(), timeout=timeout)

    def send(self, request) -> None:
        self.requests.put(request)

    def close(self) -> list:
        """Half-close and read what is left; the call must end OK."""
        self.requests.put(None)
        rest = list(self.call)
        assert self.call.code() == grpc.StatusCode.OK
        return rest


def collect(call) -> tuple[list, grpc.RpcError | None]:
    """The answers a stream gave before it ended, and the error it ended with."""
    answers = []
    try:
        for response in call:
            answers.append(response)
    except grpc.RpcError as exc:
        return answers, exc
    return answers, None


# --- limits --------------------------------------------------------------------------------


def test_limits_are_validated():
    for name in ("max_concurrent_streams", "max_ticks_per_message", "max_instruments_per_stream", "max_message_bytes"):
        with pytest.raises(ValueError) as err:
            ServerLimits(**{name: 0})
        assert str(err.value) == f"{name}: must be an integer >= 1, got 0"
    with pytest.raises(ValueError) as err:
        ServerLimits(max_parallel_messages=-1)
    assert str(err.value) == "max_parallel_messages: must be >= 0 (0: one per CPU core), got -1"


def test_one_parallel_message_still_serves_pipelined_columns_evaluate_and_predict(models, plugins):
    """max_parallel_messages caps the messages worked on in worker threads at once; at 1 the
    pipelined paths (a TickColumns stream reads and prepares ahead, Evaluate finishes one run
    while preparing the next) take turns instead of overlapping, and nothing waits forever."""
    from tickserve.serving.converters import frame_to_protos
    from tickserve.simulate import simulate
    from tickserve_client import TickserveClient, frame_columns

    served = start_server(models, plugins, limits=ServerLimits(max_parallel_messages=1))
    try:
        frame = simulate(3_000, seed=5)
        with TickserveClient(served.address, timeout=60) as client:
            answers = list(client.stream_columns(frame_columns(frame, 250), model=MODEL))
            assert sum(len(a.p_buy) for a in answers) == len(frame) and len(answers) == 12
            report = list(client.evaluate(columns=frame_columns(frame, 250), model=MODEL))[-1].report
            assert report.ticks == len(frame)
            signals = client.predict(frame_to_protos(frame.take(slice(0, 50))), model=MODEL)
            assert len(signals) == 50
    finally:
        stop_server(served)


def test_concurrent_streams_beyond_the_limit_are_refused_and_a_closed_one_frees_a_slot(tight):
    stub = stub_of(tight)
    stats = tight.tick_server.signals.stream_stats
    refused_before = stats.refused
    first = OpenStream(stub)
    first.send(pb.StreamSignalsRequest(config=pb.StreamConfig(model=MODEL)))
    first.send(pb.StreamSignalsRequest(tick=tick("A", 0)))
    assert next(first.call).results[0].WhichOneof("result") == "signal"
    second = OpenStream(stub, "Evaluate")  # Evaluate counts too
    assert wait_for(lambda: stats.open == 2)

    refused = "2 streams are open, the server's limit is max_concurrent_streams=2; retry when one has closed"
    err = rpc_error(lambda: list(stub.StreamSignals(stream_requests([tick()]), timeout=10)))
    assert (err.code(), err.details()) == (EXHAUSTED, f"StreamSignals: {refused}")
    err = rpc_error(lambda: list(stub.Evaluate(iter([pb.EvaluateRequest(tick=tick())]), timeout=10)))
    assert (err.code(), err.details()) == (EXHAUSTED, f"Evaluate: {refused}")
    # unary calls are not streams: still served
    assert len(stub.Predict(pb.PredictRequest(model=MODEL, ticks=[tick()]), timeout=10).signals) == 1

    assert first.close() == []  # every answer was read already
    assert wait_for(lambda: stats.open == 1)
    results = [
        r for response in stub.StreamSignals(stream_requests([tick("B", 0)]), timeout=10) for r in response.results
    ]
    assert results[0].WhichOneof("result") == "signal"

    second.send(pb.EvaluateRequest(batch=pb.TickBatch(ticks=[tick("A", i) for i in range(60)])))
    assert [r.WhichOneof("payload") for r in second.close()] == ["report"]
    assert wait_for(lambda: stats.open == 0)
    assert stats.refused - refused_before == 2


def test_ticks_per_message_beyond_the_limit_end_the_call(tight):
    stub = stub_of(tight)
    hundred = [tick("A", i) for i in range(100)]
    requests = [
        pb.StreamSignalsRequest(batch=pb.TickBatch(ticks=hundred)),
        pb.StreamSignalsRequest(batch=pb.TickBatch(ticks=[tick("A", 100 + i) for i in range(101)])),
    ]
    answers, err = collect(stub.StreamSignals(iter(requests), timeout=10))
    assert [len(a.results) for a in answers] == [100]  # the message within the limit was answered
    assert err.code() == EXHAUSTED
    assert err.details() == "batch.ticks: 101 ticks in one message, the limit is max_ticks_per_message=100"

    err = rpc_error(lambda: stub.Predict(pb.PredictRequest(model=MODEL, ticks=hundred + [tick("A", 100)]), timeout=10))
    assert (err.code(), err.details()) == (
        EXHAUSTED,
        "ticks: 101 ticks in one request, the limit is max_ticks_per_message=100",
    )
    err = rpc_error(
        lambda: list(stub.Evaluate(iter([pb.EvaluateRequest(batch=pb.TickBatch(ticks=hundred * 2))]), timeout=10))
    )
    assert (err.code(), err.details()) == (
        EXHAUSTED,
        "batch.ticks: 200 ticks in one message, the limit is max_ticks_per_message=100",
    )
    assert len(stub.Predict(pb.PredictRequest(model=MODEL, ticks=hundred), timeout=10).signals) == 100


def test_instruments_per_stream_beyond_the_limit_are_rejected_per_tick(tight):
    stub = stub_of(tight)
    ticks = [tick("A", 0), tick("B", 0), tick("C", 0), tick("D", 0), tick("A", 1), tick("D", 1), tick("C", 1)]
    call = stub.StreamSignals(stream_requests(ticks), timeout=10)
    results = [r for response in call for r in response.results]
    assert call.code() == grpc.StatusCode.OK  # the stream goes on
    assert [r.WhichOneof("result") for r in results] == ["signal"] * 3 + ["error", "signal", "error", "signal"]
    for error in (results[3].error, results[5].error):
        assert grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] == error.code
        assert error.field == "instrument" and error.instrument == "D"
        assert error.message == (
            "instrument: 'D' would exceed this stream's limit of 3 instruments (max_instruments_per_stream)"
        )
    # the limit is per stream: a new stream starts from zero
    results = [
        r for response in stub.StreamSignals(stream_requests([tick("D", 0)]), timeout=10) for r in response.results
    ]
    assert results[0].WhichOneof("result") == "signal"


def test_one_connection_holds_at_most_max_streams_per_connection_and_others_are_served(models, plugins):
    """With a cap of 1 call per connection, a second stream on the same connection waits (no
    slot taken, no error) while another connection is served; it proceeds when the first ends."""
    served = start_server(models, plugins, limits=ServerLimits(max_streams_per_connection=1))
    try:
        own = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own, not a shared one
        one = grpc.insecure_channel(served.address, options=own)
        other = grpc.insecure_channel(served.address, options=own)
        first = OpenStream(pb_grpc.SignalServiceStub(one))
        first.send(next(stream_requests([])))
        first.send(pb.StreamSignalsRequest(tick=tick("A", 0)))
        assert next(first.call).results[0].WhichOneof("result") == "signal"
        waiting = OpenStream(pb_grpc.SignalServiceStub(one))
        waiting.send(next(stream_requests([])))
        waiting.send(pb.StreamSignalsRequest(tick=tick("B", 0)))
        answered = []
        reader = threading.Thread(target=lambda: answered.append(next(waiting.call)), daemon=True)
        reader.start()
        reader.join(1.0)
        assert not answered  # queued by HTTP/2 behind the connection's one open call
        third = pb_grpc.SignalServiceStub(other)
        results = [
            r for response in third.StreamSignals(stream_requests([tick("C", 0)]), timeout=10) for r in response.results
        ]
        assert [r.WhichOneof("result") for r in results] == ["signal"]  # another connection is served
        first.close()
        reader.join(10)
        assert answered and answered[0].results[0].WhichOneof("result") == "signal"
        waiting.close()
        one.close()
        other.close()
    finally:
        stop_server(served)


def test_a_stream_that_sends_nothing_for_idle_timeout_is_ended_and_frees_its_slot(models, plugins):
    # margins for a loaded machine: the busy stream's gaps (~0.2 s) are far below the timeout (1 s),
    # and it keeps sending for 1.6 s, past the moment the idle one must have been ended
    served = start_server(models, plugins, limits=ServerLimits(idle_timeout_s=1.0))
    try:
        stub = stub_of(served)
        signals = served.tick_server.signals
        idle = OpenStream(stub)
        idle.send(next(stream_requests([])))
        idle.send(pb.StreamSignalsRequest(tick=tick("A", 0)))
        assert next(idle.call).results[0].WhichOneof("result") == "signal"
        busy = OpenStream(stub)
        busy.send(next(stream_requests([])))
        for i in range(8):  # a message every 0.2 s: never idle for 1 s
            busy.send(pb.StreamSignalsRequest(tick=tick("B", i)))
            assert next(busy.call).results[0].WhichOneof("result") == "signal"
            time.sleep(0.2)
        answers, err = collect(idle.call)
        assert answers == [] and err is not None and err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert err.details().startswith("StreamSignals: no message for 1 s (idle_timeout_s)")
        assert busy.close() == []  # the busy stream was never ended
        assert wait_for(lambda: signals.stream_stats.open == 0) and signals.idle.ended == 1
        idle.requests.put(None)
    finally:
        stop_server(served)


@pytest.fixture(scope="module")
def budgeted(models, plugins):
    served = start_server(models, plugins, limits=ServerLimits(max_instruments_total=3))
    yield served
    stop_server(served)


def test_instruments_beyond_the_server_wide_budget_are_rejected_per_tick_until_streams_close(budgeted):
    """max_instruments_total bounds the feature state all streams hold together: a tick of an
    instrument new to its stream while the budget is spent gets RESOURCE_EXHAUSTED naming the
    budget (TickBatch, TickColumns and Predict alike); a closing stream gives its instruments back."""
    from tickserve_client import columns_from_ticks

    stub = stub_of(budgeted)
    held = budgeted.tick_server.signals.instruments

    def results(responses):
        return [r for response in responses for r in response.results]

    first = OpenStream(stub)
    first.send(next(stream_requests([])))
    for name in ("X", "Y"):
        first.send(pb.StreamSignalsRequest(tick=tick(name, 0)))
    assert [r.WhichOneof("result") for r in results([next(first.call), next(first.call)])] == ["signal"] * 2
    assert held.held == 2

    second = OpenStream(stub)
    second.send(next(stream_requests([])))
    second.send(pb.StreamSignalsRequest(batch=pb.TickBatch(ticks=[tick("Z", 0), tick("W", 0), tick("Z", 1)])))
    got = results([next(second.call)])
    assert [r.WhichOneof("result") for r in got] == ["signal", "error", "signal"]
    assert got[1].error.code == EXHAUSTED.value[0] and got[1].error.field == "instrument"
    assert got[1].error.message == (
        "instrument: 'W' would exceed the server's budget of 3 instruments across all open streams "
        "(max_instruments_total); retry when streams have closed"
    )
    columns = columns_from_ticks([tick("V", 0)])
    second.send(pb.StreamSignalsRequest(columns=columns))
    answer = next(second.call).columns
    assert list(answer.code) == [EXHAUSTED.value[0]] and "max_instruments_total" in answer.errors[0].message
    err = rpc_error(lambda: stub.Predict(pb.PredictRequest(model=MODEL, ticks=[tick("P", 0)]), timeout=10))
    assert err.code() == EXHAUSTED and "max_instruments_total" in err.details()

    first.close()  # X and Y go back to the budget
    assert wait_for(lambda: held.held == 1)
    second.send(pb.StreamSignalsRequest(tick=tick("W", 1)))
    assert results([next(second.call)])[0].WhichOneof("result") == "signal"
    second.close()
    assert wait_for(lambda: held.held == 0)
    signals = stub.Predict(pb.PredictRequest(model=MODEL, ticks=[tick("P", 0), tick("Q", 0)]), timeout=10).signals
    assert len(signals) == 2 and held.held == 0  # a Predict call gives its instruments back at once


def test_a_message_larger_than_max_message_bytes_is_resource_exhausted(tight):
    stub = stub_of(tight)
    huge = pb.Tick(instrument="A", timestamp_ns=1, bid_price=[1.0] * 6000, bid_size=[1.0] * 6000)  # ~96 KiB
    size = pb.PredictRequest(model=MODEL, ticks=[huge]).ByteSize()
    assert size > 64 * 1024

    requests = [pb.StreamSignalsRequest(tick=tick("A", 0)), pb.StreamSignalsRequest(tick=huge)]
    answers, err = collect(stub.StreamSignals(iter(requests), timeout=10))
    assert [len(a.results) for a in answers] == [1]
    assert err.code() == EXHAUSTED
    assert "Received message larger than max" in err.details() and "vs. 65536)" in err.details()

    err = rpc_error(lambda: stub.Predict(pb.PredictRequest(model=MODEL, ticks=[huge]), timeout=10))
    assert err.code() == EXHAUSTED
    assert err.details().endswith(f"Received message larger than max ({size} vs. 65536)")
    err = rpc_error(lambda: list(stub.Evaluate(iter([pb.EvaluateRequest(tick=huge)]), timeout=10)))
    assert err.code() == EXHAUSTED and "larger than max" in err.details()


# --- deadlines ---------------------------------------------------------------------------------


def deadline_exceeded(err: grpc.RpcError) -> bool:
    # gRPC's own status: "Deadline Exceeded" when the client's timer fires first,
    # "Stream removed (Deadline Exceeded)" when the server's does
    return err.code() == grpc.StatusCode.DEADLINE_EXCEEDED and err.details() in (
        "Deadline Exceeded",
        "Stream removed (Deadline Exceeded)",
    )


def test_a_call_past_its_deadline_gets_deadline_exceeded_and_others_are_served(roomy):
    stub = stub_of(roomy)
    stats = roomy.tick_server.signals.stream_stats

    def slow_evaluation():
        yield pb.EvaluateRequest(config=pb.EvaluateConfig(model=MODEL))
        for k in range(1_000):  # far longer than the deadline
            yield pb.EvaluateRequest(batch=pb.TickBatch(ticks=[tick("E", k * 100 + i) for i in range(100)]))
            time.sleep(0.02)

    started = time.monotonic()
    err = rpc_error(lambda: list(stub.Evaluate(slow_evaluation(), timeout=0.5)))
    assert deadline_exceeded(err)
    assert time.monotonic() - started < 5

    # a stream that goes quiet after one answer
    stream = OpenStream(stub, timeout=0.5)
    stream.send(pb.StreamSignalsRequest(tick=tick("S", 0)))
    answers, err = collect(stream.call)
    assert len(answers) == 1 and deadline_exceeded(err)
    stream.requests.put(None)

    # a big Predict with a deadline too short for it
    many = [tick("P", i) for i in range(10_000)]
    err = rpc_error(lambda: stub.Predict(pb.PredictRequest(model=MODEL, ticks=many), timeout=0.01))
    assert deadline_exceeded(err)

    assert wait_for(lambda: stats.open == 0)  # the server let go of the streams
    assert len(stub.Predict(pb.PredictRequest(model=MODEL, ticks=many[:50]), timeout=10).signals) == 50
    results = [r for response in stub.StreamSignals(stream_requests(many[:20]), timeout=10) for r in response.results]
    assert len(results) == 20


# --- back-pressure ---------------------------------------------------------------------------


def test_a_client_that_does_not_read_stops_the_server_then_gets_every_answer_in_order(roomy):
    """Send 1,000-tick batches as fast as possible while reading nothing: the answers the server
    has produced stop growing (it stops pulling requests; the client's sends block) instead of
    piling up in server memory; once the client reads, every tick sent is answered, in order."""
    stub = stub_of(roomy)
    stats = roomy.tick_server.signals.stream_stats
    before = stats.ticks
    template = tick(
        "BP",
        0,
        bids=[(99.99 - 0.01 * i, 10.0 + i) for i in range(10)],
        asks=[(100.01 + 0.01 * i, 12.0 + i) for i in range(10)],
    )
    sent = {"ticks": 0}
    stop = threading.Event()

    def requests():
        yield pb.StreamSignalsRequest(config=pb.StreamConfig(model=MODEL))
        seq = 0
        while not stop.is_set():
            batch = pb.TickBatch()
            for _ in range(1_000):
                t = batch.ticks.add()
                t.CopyFrom(template)
                t.timestamp_ns += seq
                t.sequence = seq
                seq += 1
            yield pb.StreamSignalsRequest(batch=batch)
            sent["ticks"] += 1_000

    call = stub.StreamSignals(requests(), timeout=60)
    history = []  # (time, answered by the server, sent by the client)
    started = time.monotonic()
    plateau = False
    while time.monotonic() - started < 20:
        time.sleep(0.25)
        history.append((time.monotonic(), stats.ticks - before, sent["ticks"]))
        recent = [h for h in history if h[0] >= history[-1][0] - 1.5]
        if history[-1][0] - history[0][0] >= 1.5 and len({(a, s) for _, a, s in recent}) == 1 and recent[0][1] > 0:
            plateau = True  # nothing answered and nothing sent for 1.5 s: both sides are held by flow control
            break
    stop.set()
    answered, in_flight = history[-1][1], history[-1][2]
    assert plateau, f"the server kept answering a client that reads nothing: {history[-6:]}"
    assert answered <= 200_000, answered  # bounded by the transport windows, not by how long the client sends
    assert in_flight >= answered

    signals = [r.signal for response in call for r in response.results]
    assert call.code() == grpc.StatusCode.OK
    assert len(signals) == sent["ticks"] > answered
    assert [s.sequence for s in signals] == list(range(sent["ticks"]))
    assert all(s.sequence_gap == 0 and s.model == MODEL for s in signals)


# --- the command line -------------------------------------------------------------------------


def test_serve_flags_set_the_limits(models, tmp_path):
    ready, log = tmp_path / "port", tmp_path / "stderr"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        serve_command(
            models,
            ready,
            "--max-concurrent-streams",
            "1",
            "--max-ticks-per-message",
            "5",
            "--max-instruments-per-stream",
            "1",
            "--max-message-bytes",
            "50000",
        ),
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env=env,
    )
    try:
        started = wait_for(lambda: proc.poll() is not None or (ready.exists() and ready.read_text().strip()), 90)
        assert started and proc.poll() is None, f"exit {proc.poll()}: {log.read_text()[-2000:]}"
        with grpc.insecure_channel(f"127.0.0.1:{ready.read_text().strip()}") as channel:
            stub = pb_grpc.SignalServiceStub(channel)
            stream = OpenStream(stub)
            stream.send(pb.StreamSignalsRequest(tick=tick("A", 0)))
            stream.send(pb.StreamSignalsRequest(tick=tick("B", 0)))
            results = [next(stream.call).results[0], next(stream.call).results[0]]
            assert results[0].WhichOneof("result") == "signal"
            assert results[1].error.message.endswith("limit of 1 instruments (max_instruments_per_stream)")
            err = rpc_error(lambda: list(stub.StreamSignals(iter([]), timeout=10)))
            assert err.code() == EXHAUSTED and "max_concurrent_streams=1" in err.details()
            stream.close()
            err = rpc_error(lambda: stub.Predict(pb.PredictRequest(ticks=[tick("A", i) for i in range(6)]), timeout=10))
            assert err.code() == EXHAUSTED and "max_ticks_per_message=5" in err.details()
            huge = pb.Tick(instrument="A", bid_price=[1.0] * 7000)  # ~56 KB
            err = rpc_error(lambda: stub.Predict(pb.PredictRequest(ticks=[huge]), timeout=10))
            assert err.code() == EXHAUSTED and "vs. 50000)" in err.details()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


# --- shutdown ------------------------------------------------------------------------------


def test_streams_still_open_when_the_grace_period_runs_out_are_told_how_far_they_were_answered(models, plugins):
    """A client that keeps sending past a shutdown's grace period is not cut off in silence:
    near the end of the grace period its stream ends UNAVAILABLE, saying how many of its
    messages were answered (so it knows where to resume elsewhere), and an Evaluate is told
    there will be no report. The stop does not outlast the grace period."""
    served = start_server(models, plugins)
    stub = stub_of(served)
    streaming, evaluating = OpenStream(stub), OpenStream(stub, "Evaluate")
    streaming.send(pb.StreamSignalsRequest(config=pb.StreamConfig(model=MODEL)))
    evaluating.send(pb.EvaluateRequest(config=pb.EvaluateConfig(model=MODEL)))
    got: list = []
    outcome: dict = {}

    def read() -> None:
        try:
            for response in streaming.call:
                got.append(response)
        except grpc.RpcError as exc:
            outcome["stream"] = exc

    reader = threading.Thread(target=read)
    reader.start()
    stop_feeding = threading.Event()

    def feed() -> None:  # never half-closes: a client that does not know the server is stopping
        i = 0
        while not stop_feeding.is_set():
            streaming.send(pb.StreamSignalsRequest(tick=tick(i=i)))
            evaluating.send(pb.EvaluateRequest(tick=tick(i=i)))
            i += 1
            time.sleep(0.01)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        assert wait_for(lambda: len(got) >= 20)
        started = time.monotonic()
        served.runner.run(served.tick_server.stop(2.0))
        took = time.monotonic() - started
        reader.join(10)
        _, evaluated = collect(evaluating.call)
    finally:
        stop_feeding.set()
        feeder.join(5)
        streaming.requests.put(None)
        evaluating.requests.put(None)
        served.runner.close()
    error = outcome.get("stream")
    assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE, error
    assert error.details().startswith("StreamSignals: the server is shutting down and the grace period ran out")
    # the StreamConfig, then one tick per message. The count is taken after each answer is handed
    # to gRPC, so it may be one behind what arrived (a resend, never a gap), never ahead
    taken = re.search(
        r"the first (\d+) messages of this stream were taken \((\d+) ticks, every one answered\)", error.details()
    )
    assert taken is not None, error.details()
    messages, ticks = int(taken.group(1)), int(taken.group(2))
    assert messages == ticks + 1 and len(got) - 1 <= ticks <= len(got), (messages, ticks, len(got))
    assert all(r.results[0].WhichOneof("result") == "signal" for r in got)
    assert evaluated is not None and evaluated.code() == grpc.StatusCode.UNAVAILABLE
    assert "no report; run it again on another server" in evaluated.details()
    assert 0.9 < took < 2.5, took


# --- HTTP/2 rapid reset ------------------------------------------------------------------------


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _h2_literal(name: str, value: str) -> bytes:
    """An HPACK literal header field without indexing, a new name, no Huffman coding."""
    n, v = name.encode(), value.encode()
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def _rapid_reset(address: str, pairs: int) -> dict:
    """Open `pairs` streams on one raw HTTP/2 connection, each HEADERS (no token, no message)
    followed at once by RST_STREAM(CANCEL): CVE-2023-44487's pattern. What the server sent back."""
    host, port = address.rsplit(":", 1)
    block = b"".join(
        _h2_literal(k, v)
        for k, v in (
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/tickserve.v1.SignalService/Predict"),
            (":authority", address),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        )
    )
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _h2_frame(0x4, 0, 0))  # preface + SETTINGS
    sock.setblocking(False)
    received, sent, stream = bytearray(), 0, 1
    try:
        while sent < pairs:
            burst = bytearray()
            for _ in range(200):
                burst += _h2_frame(0x1, 0x4, stream, block) + _h2_frame(0x3, 0, stream, struct.pack(">I", 8))
                stream, sent = stream + 2, sent + 1
            view = memoryview(burst)
            while view:
                try:
                    view = view[sock.send(view) :]
                except BlockingIOError:
                    time.sleep(0.001)
                try:
                    while chunk := sock.recv(65536):
                        received += chunk
                except BlockingIOError:
                    pass
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server closed the connection: a valid defence
    finally:
        sock.close()
    kinds: dict[int, int] = {}
    i = 0
    while i + 9 <= len(received):
        kinds[received[i + 3]] = kinds.get(received[i + 3], 0) + 1
        i += 9 + int.from_bytes(received[i : i + 3], "big")
    return {"sent": sent, "resets_back": kinds.get(0x3, 0)}


def test_a_rapid_reset_flood_on_one_connection_fails_no_other_clients_call(models, plugins):
    """Issue 14: HEADERS + RST_STREAM pairs flooded on one raw connection (no token, tokens on) made
    other clients' calls end CANCELLED. With the server's options (grpc.max_concurrent_streams per
    connection) and grpcio's own reset-flood handling, a bystander's Predict calls, made
    throughout the flood, all succeed."""
    from tickserve.serving.security import TokenAuth

    token = "a-long-enough-token-for-the-rapid-reset-test"
    served = start_server(models, plugins, auth=TokenAuth([token]))
    try:
        stub = stub_of(served)
        request = pb.PredictRequest(model=MODEL, ticks=[tick(i=0)])
        metadata = (("authorization", f"Bearer {token}"),)
        stub.Predict(request, metadata=metadata, timeout=10)
        outcome = {"ok": 0, "failed": []}
        done = threading.Event()

        def bystander() -> None:
            while not done.is_set():
                try:
                    stub.Predict(request, metadata=metadata, timeout=10)
                    outcome["ok"] += 1
                except grpc.RpcError as exc:
                    outcome["failed"].append(exc.code().name)

        caller = threading.Thread(target=bystander)
        caller.start()
        try:
            flood = _rapid_reset(served.address, 300_000)
            time.sleep(0.3)
        finally:
            done.set()
            caller.join(15)
    finally:
        stop_server(served)
    assert flood["sent"] >= 50_000 and flood["resets_back"] >= 10_000, flood  # the server did see the flood
    assert outcome["ok"] >= 20 and outcome["failed"] == [], (outcome["ok"], outcome["failed"][:5], flood)
