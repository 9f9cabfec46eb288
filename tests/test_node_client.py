"""The Node.js client (clients/node) against a real server: its signals, errors and evaluation
must equal the Python client's for the same ticks.

The ticks go to Node through the wide CSV layout that `tickserve-node` reads
(`instrument,timestamp_ns,last_price,last_size,bid_px_1,bid_qty_1,...,ask_px_N,ask_qty_N,sequence,aggressor`),
written by the supported writer, `tickserve.core.tick_csv` (behind `tickserve simulate --out x.csv`),
with `repr` floats, so Node parses back the very doubles Python sends. `--json` prints every double at full (shortest round-trip) precision and
64-bit integers as strings, so the comparison is exact, field by field.

Skipped when `node` is not on PATH, or when clients/node has no node_modules and `npm ci`
cannot install them (e.g. offline).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from tickserve.core.tick_csv import csv_header, write_ticks_csv
from tickserve.core.ticks import Tick
from tickserve.simulate import simulate
from tickserve_client import tick_message
from tickserve_proto.v1 import tickserve_pb2 as pb

from .conftest import MODEL, _LoopThread

NODE_DIR = Path(__file__).resolve().parents[1] / "clients" / "node"
CLI = NODE_DIR / "bin" / "tickserve-node.js"
U64_MAX = 2**64 - 1
# Above 2^53 (a double cannot hold it) and within int64: see test_node_stream_uint64_sequence.
BIG_SEQ = 2**63 - 1


def to_proto(t: Tick) -> pb.Tick:
    return tick_message(t)


# --- the Python client's answers in the Node CLI's JSON shape ----------------------------------


def _name(enum, value: int, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix)


def result_json(result: pb.TickResult) -> dict:
    if result.WhichOneof("result") == "error":
        e = result.error
        return {
            "error": {
                "code": e.code,
                "status": STATUS_NAMES[e.code],
                "message": e.message,
                "field": e.field,
                "instrument": e.instrument,
                "timestamp_ns": str(e.timestamp_ns),
                "sequence": str(e.sequence) if e.HasField("sequence") else None,
            }
        }
    s = result.signal
    return {
        "action": _name(pb.Action, s.action, "ACTION_"),
        "p_buy": s.p_buy,
        "p_hold": s.p_hold,
        "p_sell": s.p_sell,
        "confidence": s.confidence,
        "edge_score": s.edge_score,
        "strength": _name(pb.Strength, s.strength, "STRENGTH_"),
        "urgency": _name(pb.Urgency, s.urgency, "URGENCY_"),
        "risk": _name(pb.Risk, s.risk, "RISK_"),
        "instrument": s.instrument,
        "timestamp_ns": str(s.timestamp_ns),
        "sequence": str(s.sequence) if s.HasField("sequence") else None,
        "model": s.model,
        "model_version": s.model_version,
        "warmed_up": s.warmed_up,
    }


STATUS_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}


# --- node ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.skip("node is not on PATH: the Node.js client (clients/node) needs Node.js >= 18")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 18:
        pytest.skip(f"the Node.js client needs Node.js >= 18, found {version}")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("clients/node/node_modules is missing and npm is not on PATH to install it")
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--fetch-retries=1", "--fetch-timeout=30000"],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=240,
            )
        except subprocess.TimeoutExpired:
            pytest.skip("npm ci in clients/node timed out (offline?)")
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            pytest.skip(f"npm ci in clients/node failed (offline?):\n{tail}")
    return exe


def run_node(node: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([node, str(CLI), *args], capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        pytest.fail(f"tickserve-node {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done


def node_stream(node: str, server, path: Path, batch: int) -> list[dict]:
    done = run_node(
        node,
        "stream",
        "--server",
        server.address,
        "--csv",
        str(path),
        "--model",
        MODEL,
        "--batch",
        str(batch),
        "--json",
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


# --- the ticks -------------------------------------------------------------------------------


def mixed_ticks() -> list[Tick]:
    """600 simulated ticks over the default instruments, with invalid ticks and edge cases in
    between: each invalid one on an instrument that is streaming (it must not touch its state)."""
    ticks = list(simulate(600, seed=23).ticks())
    base = ticks[100]

    def bad(**changes) -> Tick:  # the next tick of a streaming instrument, changed
        return replace(base, **{"timestamp_ns": base.timestamp_ns + 1, "sequence": 10_000, **changes})

    top_ask = base.ask_price[0]
    specials = [
        bad(bid_price=(top_ask + 1.0,) + base.bid_price[1:]),  # crossed book
        bad(bid_size=(-5.0,) + base.bid_size[1:]),
        bad(ask_price=(top_ask, top_ask - 0.01), ask_size=base.ask_size[:2]),  # asks descend
        bad(instrument=""),
        bad(timestamp_ns=0),
        bad(last_price=math.nan),
        bad(last_size=math.inf),
        bad(bid_price=(), bid_size=()),  # an empty side
        bad(bid_size=base.bid_size[:1]),  # sizes and prices differ in number
        bad(ask_price=(1e13,), ask_size=(1.0,)),
        bad(timestamp_ns=-7, sequence=None),
        bad(last_size=0.0, aggressor=1),  # a side on a tick without a trade
        # 64-bit values above 2^53 echoed exactly, in an error and in a signal
        bad(sequence=BIG_SEQ, bid_price=(top_ask + 0.5,), bid_size=(1.0,)),
        replace(base, instrument="BIGSEQ", timestamp_ns=7_258_118_399_999_999_999, sequence=BIG_SEQ),
        replace(base, instrument='ODD, "QUOTED" NAME', sequence=None),  # CSV quoting
        replace(
            base,
            instrument="SHALLOW",
            bid_price=base.bid_price[:1],
            bid_size=base.bid_size[:1],
            ask_price=base.ask_price[:3],
            ask_size=base.ask_size[:3],
        ),
        replace(
            base,
            instrument="TINY",
            last_price=1e-05,
            bid_price=(2e-05,),
            bid_size=(1e-07,),
            ask_price=(3.0000000000000004e-05,),
            ask_size=(123456789.123,),
        ),
        replace(base, instrument="SOLD", last_size=3.0, aggressor=-1),  # a trade with its side
    ]
    out = ticks[:150]
    for i, special in enumerate(specials):  # spread through the stream, also across batch edges
        out.append(special)
        out.extend(ticks[150 + 28 * i : 150 + 28 * (i + 1)])
    out.extend(ticks[150 + 28 * len(specials) :])
    assert len(out) == len(ticks) + len(specials)
    return out


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[list[Tick], Path]:
    ticks = mixed_ticks()
    return ticks, write_ticks_csv(ticks, tmp_path_factory.mktemp("node") / "mixed.csv")


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 100])
def test_node_stream_equals_python(node, server, client, mixed, batch):
    ticks, path = mixed
    expected = [result_json(r) for r in client.stream_signals(map(to_proto, ticks), model=MODEL, batch_size=batch)]
    got = node_stream(node, server, path, batch)
    assert len(got) == len(expected) == len(ticks)
    errors = [e for e in expected if "error" in e]
    assert len(errors) == 13 and all(e["error"]["status"] == "INVALID_ARGUMENT" for e in errors)
    # the sides went through the CSV: the side given without a trade was rejected the same way
    assert (
        sum(
            e["error"]["message"] == "aggressor: SIDE_BUY given but last_size is 0: no trade on this tick"
            for e in errors
        )
        == 1
    )
    assert {t.aggressor for t in ticks} == {-1, 0, 1}
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"result {i} (tick {ticks[i]}) differs:\n node:   {g}\n python: {e}"
    # the 64-bit values came through exactly, and the odd instrument name through the CSV
    bigseq = next(g for g in got if g.get("instrument") == "BIGSEQ")
    assert bigseq["sequence"] == str(BIG_SEQ) and bigseq["timestamp_ns"] == "7258118399999999999"
    assert any(g.get("instrument") == 'ODD, "QUOTED" NAME' for g in got)
    assert any("error" in g and g["error"]["sequence"] == str(BIG_SEQ) for g in got)


@pytest.mark.parametrize("batch", [1, 40])
def test_node_stream_uint64_sequence(node, server, client, tmp_path, batch):
    """sequence is uint64 on the wire; the server takes up to 2^63-1 and answers larger ones
    with a per-tick INVALID_ARGUMENT that echoes the exact value, in Node as in Python."""
    frame = simulate(60, seed=25)
    ticks = [replace(t, sequence=U64_MAX - len(frame) + 1 + i) for i, t in enumerate(frame.ticks())]
    path = write_ticks_csv(ticks, tmp_path / "u64.csv")
    expected = [result_json(r) for r in client.stream_signals(map(to_proto, ticks), model=MODEL, batch_size=batch)]
    got = node_stream(node, server, path, batch)
    assert got == expected
    assert all(
        g["error"]["status"] == "INVALID_ARGUMENT" and "sequence: at most 2^63-1" in g["error"]["message"] for g in got
    )
    assert [g["error"]["sequence"] for g in got] == [str(t.sequence) for t in ticks]
    assert got[-1]["error"]["sequence"] == "18446744073709551615"


def test_node_sends_the_aggressor_column(node, server, client, tmp_path):
    """An aggressor column (buy, sell in any case, or empty) reaches the server as Tick.aggressor:
    the same answers as the Python client sending the sides, for ticks where the side decides
    between a signal and an error; a cell that is no side is a CSV error naming the column."""
    base = list(simulate(40, seed=26).ticks())
    assert {t.aggressor for t in base} == {-1, 0, 1}
    # after each tick, the same tick as a buy: an error where there was no trade
    flipped = [replace(t, timestamp_ns=t.timestamp_ns + 1, sequence=None, aggressor=1) for t in base]
    ticks = [t for pair in zip(base, flipped) for t in pair]
    path = write_ticks_csv(ticks, tmp_path / "sides.csv")
    text = path.read_text().replace(",buy\n", ",BUY\n", 3).replace(",sell\n", ",Sell\n", 3)
    path.write_text(text)  # any case
    for batch in (1, 40):
        expected = [result_json(r) for r in client.stream_signals(map(to_proto, ticks), model=MODEL, batch_size=batch)]
        got = node_stream(node, server, path, batch)
        assert got == expected
        rejected = [g["error"]["message"] for g in got if "error" in g]
        no_trade = sum(t.last_size == 0 for t in flipped)
        message = "aggressor: SIDE_BUY given but last_size is 0: no trade on this tick"
        assert no_trade > 10 and rejected == [message] * no_trade
    bad = tmp_path / "bad-side.csv"
    lines = path.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",up"
    bad.write_text("\n".join(lines) + "\n")
    done = run_node(node, "stream", "--server", server.address, "--csv", str(bad), "--model", MODEL, check=False)
    assert done.returncode == 2
    assert 'bad-side.csv:6: aggressor: expected buy, sell or an empty cell, got "up"' in done.stderr


def test_node_stream_text_output(node, server, mixed):
    _, path = mixed
    done = run_node(node, "stream", "--server", server.address, "--csv", str(path), "--model", MODEL)
    lines = done.stdout.splitlines()
    assert lines[0].split()[:4] == ["TIME", "(UTC)", "INSTR", "SEQ"]
    assert sum("rejected (code 3 INVALID_ARGUMENT)" in line for line in lines) == 13
    assert lines[-1].startswith(f"{len(lines) - 2} ticks answered") and "error 13" in lines[-1]


def test_node_evaluate_equals_python(node, server, client, tmp_path):
    # the file as a user makes it (clients/node/README.md): `tickserve simulate --out eval.csv`
    path = tmp_path / "eval.csv"
    subprocess.run(
        [sys.executable, "-m", "tickserve.cli", "simulate", "--ticks", "600", "--seed", "24", "--out", path],
        capture_output=True,
        timeout=120,
        check=True,
    )
    frame = simulate(600, seed=24)
    *_, last = client.evaluate((to_proto(t) for t in frame.ticks()), model=MODEL)
    expected = last.report
    done = run_node(node, "evaluate", "--server", server.address, "--csv", str(path), "--model", MODEL, "--json")
    got = json.loads(done.stdout)
    assert got["labeled"] == str(expected.labeled) and int(got["labeled"]) > 0
    assert got["ticks"] == str(expected.ticks) == str(len(frame))
    for key in ("accuracy", "macro_f1", "log_loss", "majority_baseline_accuracy", "brier_score"):
        assert got[key] == getattr(expected, key), key
    assert got["model"] == MODEL and got["model_version"] == expected.model_version
    assert got["confusion_matrix"] == [str(v) for v in expected.confusion_matrix]
    assert got["action_counts"] == {k: str(v) for k, v in expected.action_counts.items()}

    text = run_node(node, "evaluate", "--server", server.address, "--csv", str(path), "--model", MODEL).stdout
    assert f"accuracy {expected.accuracy:.4f}   macro-F1 {expected.macro_f1:.4f}" in text
    assert (
        f"majority-class baseline ({expected.majority_class}) accuracy {expected.majority_baseline_accuracy:.4f}"
        in text
    )
    assert "confusion (rows true, columns predicted)" in text


def test_node_models(node, server, client):
    listing = client.list_models()
    done = run_node(node, "models", "--server", server.address, "--json")
    got = json.loads(done.stdout)
    assert got["default_model"] == listing.default_model
    assert sorted((m["name"], m["version"], m["state"]) for m in got["models"]) == sorted(
        (m.name, m.version, pb.ModelState.Name(m.state)) for m in listing.models
    )
    table = run_node(node, "models", "--server", server.address).stdout
    assert any(line.split()[:2] == [MODEL, "2"] for line in table.splitlines())
    info = json.loads(run_node(node, "models", "--server", server.address, "--model", MODEL, "--json").stdout)
    assert info["feature_names"] == list(client.get_model(MODEL).feature_names)


def test_node_reports_errors(node, server, tmp_path):
    missing = run_node(node, "models", "--server", server.address, "--model", "no-such-model", check=False)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    bad = tmp_path / "bad.csv"
    write_ticks_csv(list(simulate(30, seed=5).ticks()), bad)
    with open(bad, "a", encoding="utf-8") as f:
        f.write("SIMA,1,abc\n")
    done = run_node(
        node, "stream", "--server", server.address, "--csv", str(bad), "--model", MODEL, "--json", check=False
    )
    assert done.returncode == 2 and "bad.csv:32" in done.stderr
    assert len(done.stdout.splitlines()) == 30  # the rows before the bad one were answered

    gap = tmp_path / "gap.csv"  # a level after an empty one is ambiguous: refused, not guessed
    header = csv_header(3)
    row = dict.fromkeys(header, "")
    row.update(
        instrument="SIMA",
        timestamp_ns="1",
        last_price="0",
        last_size="0",
        bid_px_1="10.0",
        bid_qty_1="1",
        bid_px_3="9.0",
        bid_qty_3="1",
        ask_px_1="10.1",
        ask_qty_1="1",
    )
    gap.write_text(",".join(header) + "\n" + ",".join(row[c] for c in header) + "\n")
    done = run_node(node, "stream", "--server", server.address, "--csv", str(gap), check=False)
    assert done.returncode == 2 and "gap.csv:2: bid_px_3: a value after the empty bid_px_2" in done.stderr


# --- TLS and bearer tokens -----------------------------------------------------------------------

TOKEN = "node-client-token-5c1e7a9d2b"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (its own CA) and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tickserve node test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture(scope="module")
def secure_server(model_repo, plugins, tmp_path_factory):
    """The same models behind TLS and a bearer token: (address, CA file)."""
    pytest.importorskip("cryptography")
    from tickserve.models.repository import ModelRepository
    from tickserve.serving.app import create_server
    from tickserve.serving.security import TlsConfig, TokenAuth

    cert_file, key_file = _self_signed(tmp_path_factory.mktemp("node-tls"))
    repository = ModelRepository(model_repo, plugins.adapters, default_model=MODEL)
    repository.load_all()
    runner = _LoopThread()
    tick_server = runner.run(
        create_server("127.0.0.1:0", repository, workers=2, tls=TlsConfig(cert_file, key_file), auth=TokenAuth([TOKEN]))
    )
    yield f"127.0.0.1:{tick_server.port}", cert_file
    runner.run(tick_server.stop(0.5))
    runner.close()


def test_node_tls_and_token(node, secure_server, mixed, tmp_path):
    address, ca = secure_server
    no_token = run_node(node, "models", "--server", address, "--tls-ca", str(ca), "--json", check=False)
    assert no_token.returncode == 1 and "UNAUTHENTICATED" in no_token.stderr

    token_file = tmp_path / "token"
    token_file.write_text(f"# the client's token\n\n{TOKEN}\n")
    listing = json.loads(
        run_node(
            node, "models", "--server", address, "--tls-ca", str(ca), "--token-file", str(token_file), "--json"
        ).stdout
    )
    assert listing["default_model"] == MODEL

    _, path = mixed  # $TICKSERVE_TOKEN, as the Python CLI
    done = subprocess.run(
        [
            node,
            str(CLI),
            "stream",
            "--server",
            address,
            "--tls-ca",
            str(ca),
            "--csv",
            str(path),
            "--batch",
            "100",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TICKSERVE_TOKEN": TOKEN},
    )
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == len(mixed[0]) and sum("error" in r for r in results) == 13

    plaintext = run_node(
        node, "models", "--server", address, "--token-file", str(token_file), "--timeout", "5", check=False
    )
    assert plaintext.returncode == 1 and "UNAVAILABLE" in plaintext.stderr


def test_node_stream_resumes_across_a_killed_server_with_the_same_signals(node, model_repo, tmp_path):
    """`tickserve-node stream --resume`: the server SIGKILLed mid-stream and another started on its
    port; every tick answered once, in order, with the signals of an unbroken stream."""
    import signal as signals
    import threading

    from tickserve_client import TickserveClient

    from .test_failover import _free_port, _serve

    ticks = [
        replace(t, instrument="AAA" if i % 3 else "BBB", sequence=1000 + i)
        for i, t in enumerate(simulate(700, seed=71).ticks())
    ]
    path = write_ticks_csv(ticks, tmp_path / "ticks.csv")
    port = _free_port()
    procs = [_serve(model_repo, port)]
    try:
        with TickserveClient(f"127.0.0.1:{port}", timeout=60) as client:
            expected = [result_json(r) for r in client.stream_signals(map(to_proto, ticks), model=MODEL)]
        cli = subprocess.Popen(
            [node, str(CLI), "stream", "--server", f"127.0.0.1:{port}", "--csv", str(path), "--model", MODEL]
            + ["--json", "--resume"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        got, killer = [], None

        def kill_and_restart() -> None:
            procs[0].send_signal(signals.SIGKILL)
            procs[0].wait(10)
            procs.append(_serve(model_repo, port))

        for line in cli.stdout:
            got.append(json.loads(line))
            if len(got) == 300:
                killer = threading.Thread(target=kill_and_restart)
                killer.start()
        cli.wait(60)
        killer.join()
        assert cli.returncode == 0, cli.stderr.read()
        assert "stream broken after" in cli.stderr.read()
        assert got == expected
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
