"""The HTTP/JSON gateway, Prometheus /metrics and the signal log, against a real server.

One server with every option on: gRPC on a free port, the gateway on another,
the signal log in a temporary SQLite file. Over real HTTP (urllib) and a real
gRPC channel.
"""

from __future__ import annotations

import json
import queue
import re
import shutil
import time
import urllib.error
import urllib.request

import grpc
import pytest
from google.protobuf import json_format

from tickserve.models.repository import ModelRepository
from tickserve.serving.app import create_server
from tickserve.serving.converters import frame_to_protos
from tickserve.serving.security import TokenAuth
from tickserve.serving.signal_log import query_signals
from tickserve.simulate import simulate
from tickserve_client import TickserveClient
from tickserve_proto.v1 import tickserve_pb2 as pb
from tickserve_proto.v1 import tickserve_pb2_grpc as pb_grpc

from .conftest import MODEL, _LoopThread


@pytest.fixture(scope="module")
def full_server(model_repo, plugins, tmp_path_factory):
    db = tmp_path_factory.mktemp("signal-log") / "signals.db"
    repository = ModelRepository(model_repo, plugins.adapters, default_model=MODEL)
    repository.load_all()
    runner = _LoopThread()
    server = runner.run(create_server("127.0.0.1:0", repository, http_port=0, signal_log=db))
    yield server, runner, db
    runner.run(server.stop(1.0))
    runner.close()


def _http(port: int, path: str, body: dict | bytes | None = None, headers: dict | None = None):
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _tick_json(tick: pb.Tick) -> dict:
    return json_format.MessageToDict(tick, preserving_proto_field_name=True)


def _metric(text: str, name: str, **labels) -> float:
    """The value of one sample of the Prometheus text format (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- REST ------------------------------------------------------------------------------


def test_health_ready_and_model_metadata_over_http(full_server):
    server, _, _ = full_server
    assert _http(server.http_port, "/health") == (200, b'{"status": "SERVING"}')
    status, body = _http(server.http_port, "/ready")
    assert status == 200 and json.loads(body) == {"ready": True}
    status, body = _http(server.http_port, "/v1/models")
    listed = json.loads(body)
    assert status == 200 and listed["default_model"] == MODEL
    assert {(m["name"], m["version"]) for m in listed["models"]} >= {(MODEL, "1"), (MODEL, "2")}
    status, body = _http(server.http_port, f"/v1/models/{MODEL}/versions/1")
    info = json.loads(body)
    assert status == 200 and info["name"] == MODEL and info["version"] == "1" and info["state"] == "MODEL_STATE_READY"
    assert len(info["feature_names"]) > 10


def test_rest_predict_equals_grpc_predict(full_server):
    server, _, _ = full_server
    ticks = frame_to_protos(simulate(120, seed=61))
    status, body = _http(server.http_port, f"/v1/models/{MODEL}/predict", {"ticks": [_tick_json(t) for t in ticks]})
    assert status == 200, body
    got = json.loads(body)["signals"]
    with TickserveClient(f"127.0.0.1:{server.port}", timeout=30) as client:
        expected = client.predict(ticks, model=MODEL)
    assert len(got) == len(expected) == 120
    for g, e in zip(got, expected):
        assert g == json_format.MessageToDict(e, preserving_proto_field_name=True)


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "message"),
    [
        ("/v1/models/nope/predict", {"ticks": []}, 404, "NOT_FOUND", "nope"),
        (f"/v1/models/{MODEL}/predict", b"{not json", 400, "INVALID_ARGUMENT", "body: not valid JSON"),
        (f"/v1/models/{MODEL}/predict", {"tickz": []}, 400, "INVALID_ARGUMENT", "tickz"),
        (f"/v1/models/{MODEL}/versions/9/predict", {"ticks": []}, 404, "NOT_FOUND", "9"),
        (f"/v1/models/{MODEL}/versions/..%2Fx/predict", {"ticks": []}, 400, "INVALID_ARGUMENT", "version"),
    ],
)
def test_rest_errors_carry_the_code_and_a_message_naming_the_field(full_server, path, body, status, code, message):
    server, _, _ = full_server
    got_status, got = _http(server.http_port, path, body)
    error = json.loads(got)["error"]
    assert got_status == status and error["code"] == code and message in error["message"], error


def test_rest_refusals_from_routing_and_decoding_are_json_errors(full_server):
    """Unknown routes, wrong methods, nesting that would exhaust the parser's stack, and bodies
    that do not decode as their Content-Encoding says: each a JSON error naming the problem,
    never a 500 or plain text."""
    import gzip

    server, _, _ = full_server
    predict = f"/v1/models/{MODEL}/predict"

    def json_error(status, body, code, text):
        error = json.loads(body)["error"]
        assert error["code"] == code and text in error["message"], (status, error)
        return status

    status, body = _http(server.http_port, "/nope")
    assert json_error(status, body, "NOT_FOUND", "no route GET /nope") == 404
    status, body = _http(server.http_port, predict)  # GET on a POST route
    assert json_error(status, body, "UNIMPLEMENTED", "GET is not allowed") == 405
    status, body = _http(server.http_port, predict, b"[" * 100_000)
    assert json_error(status, body, "INVALID_ARGUMENT", "nested too deeply") == 400
    status, body = _http(server.http_port, predict, b"not gzip", headers={"Content-Encoding": "gzip"})
    assert json_error(status, body, "INVALID_ARGUMENT", "not valid gzip data") == 400
    status, body = _http(server.http_port, predict, b"not brotli", headers={"Content-Encoding": "br"})
    assert json_error(status, body, "INVALID_ARGUMENT", "'br' is not supported") == 400
    bomb = gzip.compress(b" " * (server.signals.limits.max_message_bytes + 1))
    status, body = _http(server.http_port, predict, bomb, headers={"Content-Encoding": "gzip"})
    assert json_error(status, body, "RESOURCE_EXHAUSTED", "once decoded") == 429
    ok = gzip.compress(json.dumps({"ticks": []}).encode())
    assert _http(server.http_port, predict, ok, headers={"Content-Encoding": "gzip"})[0] == 200


def test_rest_bad_tick_names_the_tick_and_field(full_server):
    server, _, _ = full_server
    tick = _tick_json(frame_to_protos(simulate(3, seed=62))[0])
    tick["ask_price"][0] = -1.0
    status, body = _http(server.http_port, f"/v1/models/{MODEL}/predict", {"ticks": [tick]})
    error = json.loads(body)["error"]
    assert status == 400 and error["code"] == "INVALID_ARGUMENT"
    assert error["message"].startswith("ticks[0].ask_price[0]:") and "-1.0" in error["message"]


def test_rest_aggressor_by_enum_name_in_json(full_server):
    """protobuf's JSON mapping: "aggressor": "SIDE_BUY" / "SIDE_SELL" (or the number) just work."""
    server, _, _ = full_server
    ticks = frame_to_protos(simulate(40, seed=66))
    as_json = [_tick_json(t) for t in ticks]
    sides = {t.get("aggressor") for t in as_json}
    assert sides == {None, "SIDE_BUY", "SIDE_SELL"}  # MessageToDict leaves SIDE_UNSPECIFIED out
    status, body = _http(server.http_port, f"/v1/models/{MODEL}/predict", {"ticks": as_json})
    assert status == 200, body
    with TickserveClient(f"127.0.0.1:{server.port}", timeout=30) as client:
        expected = client.predict(ticks, model=MODEL)
    assert json.loads(body)["signals"] == [
        json_format.MessageToDict(e, preserving_proto_field_name=True) for e in expected
    ]

    trade = next(t for t in as_json if t.get("aggressor") == "SIDE_SELL")
    for side in ("SIDE_BUY", 1, "SIDE_UNSPECIFIED"):
        status, body = _http(server.http_port, f"/v1/models/{MODEL}/predict", {"ticks": [{**trade, "aggressor": side}]})
        assert status == 200 and len(json.loads(body)["signals"]) == 1, body
    book = next(t for t in as_json if "aggressor" not in t)
    predict = f"/v1/models/{MODEL}/predict"
    status, body = _http(server.http_port, predict, {"ticks": [{**book, "aggressor": "SIDE_SELL"}]})
    error = json.loads(body)["error"]
    assert status == 400 and error["code"] == "INVALID_ARGUMENT"
    assert error["message"] == "ticks[0].aggressor: SIDE_SELL given but last_size is 0: no trade on this tick"
    status, body = _http(server.http_port, predict, {"ticks": [{**trade, "aggressor": "SIDE_UP"}]})
    assert status == 400 and json.loads(body)["error"]["code"] == "INVALID_ARGUMENT" and b"SIDE_UP" in body


def test_rest_requires_the_token_when_auth_is_on(model_repo, plugins):
    repository = ModelRepository(model_repo, plugins.adapters, default_model=MODEL)
    repository.load_all()
    runner = _LoopThread()
    auth = TokenAuth(["s3cret-token-for-the-http-test"])
    server = runner.run(create_server("127.0.0.1:0", repository, http_port=0, auth=auth))
    try:
        assert _http(server.http_port, "/health")[0] == 200  # health open by default
        status, body = _http(server.http_port, "/v1/models")
        assert status == 401 and "missing bearer token" in json.loads(body)["error"]["message"]
        status, body = _http(server.http_port, "/v1/models", headers={"Authorization": "Bearer wrong"})
        assert status == 401 and json.loads(body)["error"]["message"] == "authorization: invalid bearer token"
        assert "wrong" not in body.decode()
        ok = {"Authorization": "Bearer s3cret-token-for-the-http-test"}
        assert _http(server.http_port, "/v1/models", headers=ok)[0] == 200
    finally:
        runner.run(server.stop(1.0))
        runner.close()


# --- metrics ---------------------------------------------------------------------------


def test_metrics_scrape_over_http_and_the_counters_move(full_server):
    server, _, _ = full_server
    before = _http(server.http_port, "/metrics")[1].decode()
    ticks = frame_to_protos(simulate(60, seed=63))
    bad = pb.Tick()
    bad.CopyFrom(ticks[10])
    del bad.bid_price[:]  # an empty side: a per-tick INVALID_ARGUMENT
    with TickserveClient(f"127.0.0.1:{server.port}", timeout=30) as client:
        results = list(client.stream_signals(ticks[:10] + [bad] + ticks[10:], model=MODEL, batch_size=1))
        assert sum(r.HasField("signal") for r in results) == 60
        with pytest.raises(grpc.RpcError):
            client.predict(ticks[:1], model="no-such-model")
    after = _http(server.http_port, "/metrics")[1].decode()

    labels = {"rpc": "StreamSignals", "model": MODEL}
    assert _metric(after, "tickserve_ticks_total", **labels) - _metric(before, "tickserve_ticks_total", **labels) == 60
    assert (
        _metric(after, "tickserve_requests_total", **labels) - _metric(before, "tickserve_requests_total", **labels)
        == 61
    )
    errors = {"rpc": "StreamSignals", "code": "INVALID_ARGUMENT"}
    assert (
        _metric(after, "tickserve_tick_errors_total", **errors)
        - _metric(before, "tickserve_tick_errors_total", **errors)
        == 1
    )
    failed = {"rpc": "Predict", "code": "NOT_FOUND"}
    assert (
        _metric(after, "tickserve_call_errors_total", **failed)
        - _metric(before, "tickserve_call_errors_total", **failed)
        == 1
    )
    count = "tickserve_message_latency_seconds_count"
    assert _metric(after, count, model=MODEL) - _metric(before, count, model=MODEL) == 61
    assert _metric(after, "tickserve_models", state="READY") >= 2
    assert _metric(after, "tickserve_models", state="FAILED") >= 1  # the conftest repository's broken model
    assert _metric(after, "tickserve_open_streams", rpc="StreamSignals") == 0
    assert re.search(r"^tickserve_microbatch_rows_bucket", after, re.M)

    # an Evaluate call counts as one request with its scored ticks
    with TickserveClient(f"127.0.0.1:{server.port}", timeout=60) as client:
        frame = simulate(400, seed=64)
        report = [r.report for r in client.evaluate(frame_to_protos(frame), model=MODEL) if r.HasField("report")][0]
    evaluated = _http(server.http_port, "/metrics")[1].decode()
    labels = {"rpc": "Evaluate", "model": MODEL}
    assert (
        _metric(evaluated, "tickserve_requests_total", **labels) - _metric(after, "tickserve_requests_total", **labels)
        == 1
    )
    assert (
        _metric(evaluated, "tickserve_ticks_total", **labels) - _metric(after, "tickserve_ticks_total", **labels)
        == report.ticks
        > 0
    )


# --- signal log ------------------------------------------------------------------------


def test_every_served_signal_is_logged_with_its_identity(full_server):
    server, _, db = full_server
    ticks = frame_to_protos(simulate(90, seed=64))
    for i, t in enumerate(ticks):
        t.instrument = "LOGGED"
        t.sequence = 1000 + i
    with TickserveClient(f"127.0.0.1:{server.port}", timeout=30) as client:
        results = list(client.stream_signals(ticks, model=MODEL, batch_size=45))
    server.signal_log.flush()
    rows = query_signals(db, instrument="LOGGED", limit=1000)
    assert [r["sequence"] for r in rows] == [t.sequence for t in ticks]
    for row, result in zip(rows, results):
        s = result.signal
        assert (row["p_sell"], row["p_hold"], row["p_buy"]) == (s.p_sell, s.p_hold, s.p_buy)
        assert row["action"] == pb.Action.Name(s.action).removeprefix("ACTION_")
        assert row["model"] == MODEL and row["model_version"] == s.model_version and row["rpc"] == "StreamSignals"
        assert row["timestamp_ns"] == s.timestamp_ns and row["latency_us"] > 0


def test_nothing_acknowledged_is_lost_at_a_graceful_shutdown_and_the_log_survives_a_restart(
    model_repo, plugins, tmp_path
):
    db = tmp_path / "signals.db"
    ticks = frame_to_protos(simulate(400, seed=65))
    answered = 0
    for round_ in range(2):  # the second server appends to the first one's file
        repository = ModelRepository(model_repo, plugins.adapters, default_model=MODEL)
        repository.load_all()
        runner = _LoopThread()
        server = runner.run(create_server("127.0.0.1:0", repository, signal_log=db))
        try:
            with TickserveClient(f"127.0.0.1:{server.port}", timeout=30) as client:
                answered += sum(r.HasField("signal") for r in client.stream_signals(ticks, model=MODEL, batch_size=7))
        finally:
            runner.run(server.stop(5.0))  # graceful: close() writes everything queued
            runner.close()
        assert len(query_signals(db, limit=10_000)) == answered == 400 * (round_ + 1)


class SlowAdapter:
    """The LightGBM adapter, a quarter of a second slower per call: time to cancel a stream while
    its answer is being built."""

    name = "test-slow"

    def __init__(self, inner) -> None:
        self.inner = inner

    @classmethod
    def load(cls, model_dir, manifest):
        from tickserve_lightgbm import LightGBMAdapter

        return cls(LightGBMAdapter.load(model_dir, manifest))

    def predict_proba(self, features):
        time.sleep(0.25)
        return self.inner.predict_proba(features)

    def feature_importance(self):
        return self.inner.feature_importance()


def test_the_log_holds_what_was_sent_not_an_answer_whose_stream_was_cancelled_first(model_repo, plugins, tmp_path):
    """A client that cancels its stream while an answer is being built never receives it, so its
    signals are not logged as served; the answers it did receive are."""
    root = tmp_path / "models"
    shutil.copytree(model_repo / MODEL / "1", root / "slow" / "1")
    manifest_path = root / "slow" / "1" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(name="slow", adapter=SlowAdapter.name)
    manifest_path.write_text(json.dumps(manifest))
    repository = ModelRepository(root, {**plugins.adapters, SlowAdapter.name: SlowAdapter})
    repository.load_all()
    db = tmp_path / "signals.db"
    runner = _LoopThread()
    server = runner.run(create_server("127.0.0.1:0", repository, signal_log=db))
    try:
        ticks = frame_to_protos(simulate(40, seed=66))
        for t in ticks:
            t.instrument = "CANCELLED"
        outbox: queue.Queue = queue.Queue()
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        call = pb_grpc.SignalServiceStub(channel).StreamSignals(iter(outbox.get, None), timeout=30)
        outbox.put(pb.StreamSignalsRequest(batch=pb.TickBatch(ticks=ticks[:20])))
        received = next(call)  # the first answer reached the client
        assert len(received.results) == 20
        outbox.put(pb.StreamSignalsRequest(batch=pb.TickBatch(ticks=ticks[20:])))
        time.sleep(0.1)  # the second answer is being built (the adapter takes 0.25 s)
        call.cancel()
        time.sleep(0.6)  # ... and is built, then dropped, after the cancel
        channel.close()
        server.signal_log.flush()
        logged = query_signals(db, instrument="CANCELLED", limit=1000)
        assert [r["timestamp_ns"] for r in logged] == [t.timestamp_ns for t in ticks[:20]]
    finally:
        runner.run(server.stop(1.0))
        runner.close()


# --- the command line ------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_with_http_port_and_signal_log_then_query_with_tickserve_signals(model_repo, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    cli = [sys.executable, "-m", "tickserve.cli"]
    db, ready, http_port = tmp_path / "s.db", tmp_path / "port", _free_port()
    config = tmp_path / "tickserve.toml"
    config.write_text(f'[server]\nmodels = "{model_repo}"\ndefault_model = "{MODEL}"\nhttp_port = {http_port}\n')
    env = {**os.environ, "TICKSERVE_SIGNAL_LOG_PATH": str(db)}
    shown = subprocess.run(
        [*cli, "config", "show", "--config", str(config), "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"http_port = {http_port}" in shown.stdout and f"# file {config}" in shown.stdout
    assert "port = 0" in shown.stdout and "# flag" in shown.stdout
    assert f'path = "{db}"' in shown.stdout and "# env TICKSERVE_SIGNAL_LOG_PATH" in shown.stdout

    proc = subprocess.Popen(
        [
            *cli,
            "--log-level",
            "info",
            "serve",
            "--config",
            str(config),
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--log-format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 90
        while not (ready.exists() and ready.read_text().strip()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        address = f"127.0.0.1:{int(ready.read_text())}"
        streamed = subprocess.run(
            [*cli, "stream", "--server", address, "--samples", "300", "--batch", "50"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert streamed.returncode == 0 and "300 ticks answered" in streamed.stdout, streamed.stderr
        status, body = _http(http_port, "/metrics")
        assert status == 200 and _metric(body.decode(), "tickserve_ticks_total", model=MODEL) == 300
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    # with --log-format json every line serve writes is a JSON object, the start-up lines too
    lines = [json.loads(line) for line in (out + err).splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "message"} <= set(j) for j in lines)
    messages = [j["message"] for j in lines]
    assert any(m.startswith("tickserve signal log: ") for m in messages)
    assert f"tickserve HTTP/JSON gateway and /metrics on http://127.0.0.1:{http_port}" in messages
    assert any(m.startswith(f"model {MODEL}/1: READY") for m in messages)

    queried = subprocess.run(
        [*cli, "signals", "--db", str(db), "--limit", "1000", "--json"], capture_output=True, text=True, timeout=60
    )
    assert queried.returncode == 0, queried.stderr
    rows = [json.loads(line) for line in queried.stdout.splitlines()]
    assert len(rows) == 300 and {r["model"] for r in rows} == {MODEL}
    one = subprocess.run(
        [*cli, "signals", "--db", str(db), "--instrument", rows[0]["instrument"], "--limit", "5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert one.returncode == 0 and "5 signal(s)" in one.stdout
    # a log is read from its end: --limit N gives the latest N (oldest first), --start the first from there
    latest = subprocess.run(
        [*cli, "signals", "--db", str(db), "--limit", "3", "--json"], capture_output=True, text=True, timeout=60
    )
    assert [json.loads(line) for line in latest.stdout.splitlines()] == rows[-3:]
    first = subprocess.run(
        [*cli, "signals", "--db", str(db), "--limit", "3", "--json", "--start", str(rows[0]["timestamp_ns"])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert [json.loads(line) for line in first.stdout.splitlines()] == rows[:3]


def test_a_failed_start_leaves_nothing_running(model_repo, plugins, tmp_path):
    """The HTTP port is taken: create_server raises, and no gRPC port, writer thread or pool is left."""
    import socket
    import threading

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    repository = ModelRepository(model_repo, plugins.adapters, default_model=MODEL)
    runner = _LoopThread()
    threads_before = {t.name for t in threading.enumerate()}
    try:
        with pytest.raises(OSError):
            runner.run(
                create_server("127.0.0.1:0", repository, http_port=taken.getsockname()[1], signal_log=tmp_path / "s.db")
            )
        left = {t.name for t in threading.enumerate()} - threads_before
        assert not any(name.startswith(("tickserve-signal-log", "tickserve-worker")) for name in left), left
    finally:
        taken.close()
        runner.close()


def test_rest_odd_bodies_and_headers_get_json_errors_not_500(model_repo, plugins):
    repository = ModelRepository(model_repo, plugins.adapters, default_model=MODEL)
    repository.load_all()
    runner = _LoopThread()
    auth = TokenAuth(["s3cret-token-for-the-http-test"])
    from tickserve.serving.limits import ServerLimits

    server = runner.run(
        create_server("127.0.0.1:0", repository, http_port=0, auth=auth, limits=ServerLimits(max_message_bytes=4096))
    )
    try:
        status, body = _http(
            server.http_port, "/v1/models", headers={"Authorization": "Bearer caf\u00e9".encode().decode("latin-1")}
        )
        assert status == 401 and "malformed" in json.loads(body)["error"]["message"]
        ok = {"Authorization": "Bearer s3cret-token-for-the-http-test"}
        status, body = _http(server.http_port, f"/v1/models/{MODEL}/predict", b"{" + b" " * 10_000 + b"}", headers=ok)
        error = json.loads(body)["error"]
        assert status == 429 and error["code"] == "RESOURCE_EXHAUSTED" and "max_message_bytes=4096" in error["message"]
    finally:
        runner.run(server.stop(1.0))
        runner.close()


def test_a_durable_signal_log_keeps_every_answered_signal_through_kill_9(model_repo, tmp_path):
    """--signal-log-durable: an answer leaves the server only once its signals are committed, so
    after kill -9 in the middle of a stream every signal the client received is in the log."""
    import threading
    import time

    from tickserve.cli.launch import serve_command

    from .test_faults import kill, start_process

    db, ready = tmp_path / "durable.db", tmp_path / "port"
    proc, address = start_process(
        serve_command(model_repo, ready, "--default-model", MODEL, "--signal-log", str(db), "--signal-log-durable"),
        ready,
    )
    ticks = frame_to_protos(simulate(20_000, seed=66))
    received: list[tuple[str, int]] = []
    ended: list[grpc.RpcError] = []

    def requests():
        yield pb.StreamSignalsRequest(config=pb.StreamConfig(model=MODEL))
        for start in range(0, len(ticks), 3):
            yield pb.StreamSignalsRequest(batch=pb.TickBatch(ticks=ticks[start : start + 3]))

    def stream() -> None:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.SignalServiceStub(channel)
            try:
                for response in stub.StreamSignals(requests(), timeout=60):
                    received.extend((r.signal.instrument, r.signal.timestamp_ns) for r in response.results)
            except grpc.RpcError as exc:
                ended.append(exc)

    reader = threading.Thread(target=stream)
    try:
        reader.start()
        deadline = time.monotonic() + 60
        while len(received) < 1_500 and time.monotonic() < deadline and reader.is_alive():
            time.sleep(0.005)
        proc.kill()  # SIGKILL: no shutdown, no flush
        proc.wait(30)
        reader.join(30)
    finally:
        kill(proc)
        proc.stdout.close()
    assert ended and len(received) >= 1_500, (len(received), ended)
    logged = {(r["instrument"], r["timestamp_ns"]) for r in query_signals(db, limit=1_000_000)}
    missing = [key for key in received if key not in logged]
    assert not missing, f"{len(missing)} of {len(received)} answered signals are not in the log: {missing[:3]}"
