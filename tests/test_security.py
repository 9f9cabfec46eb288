"""Access control against real servers on loopback ports, through real channels: TLS, mutual TLS,
bearer tokens (unary and streaming calls, health, reflection), and the same from the command line."""

from __future__ import annotations

import datetime
import hmac
import ipaddress
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tickserve.models.repository import ModelRepository
from tickserve.serving import security
from tickserve.serving.app import create_server
from tickserve.serving.converters import frame_to_protos
from tickserve.serving.security import SecurityConfigError, TlsConfig, TokenAuth
from tickserve.simulate import simulate
from tickserve.training import train_model
from tickserve_client import TickserveClient
from tickserve_proto.v1 import tickserve_pb2 as pb
from tickserve_proto.v1 import tickserve_pb2_grpc as pb_grpc

from .conftest import MODEL, _LoopThread

TOKEN = "tok-right-4f0c1b7e9a2d6e3c"
OTHER_TOKEN = "tok-second-8b1d5e2f0a9c7d4e"
WRONG_TOKEN = "tok-WRONG-0000-please-do-not-echo"
TICKSERVE = [sys.executable, "-m", "tickserve.cli"]


# --- a throwaway PKI ----------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path
    rogue_client_cert: Path
    rogue_client_key: Path

    def read(self, name: str) -> bytes:
        return getattr(self, name).read_bytes()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject: str, key, issuer: x509.Name, issuer_key, *, ca: bool = False, usage=None, san=None):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        ).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert=None, key=None) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, rogue_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _issue("tickserve test CA", ca_key, _name("tickserve test CA"), ca_key, ca=True)
    rogue = _issue("rogue CA", rogue_key, _name("rogue CA"), rogue_key, ca=True)
    server_key, client_key, rogue_client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    server = _issue(
        "tickserve server",
        server_key,
        ca.subject,
        ca_key,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client = _issue("trading-client", client_key, ca.subject, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    rogue_client = _issue(
        "trading-client", rogue_client_key, rogue.subject, rogue_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    return Pki(
        ca=_write(d / "ca.pem", ca),
        server_cert=_write(d / "server.pem", server),
        server_key=_write(d / "server.key", key=server_key),
        client_cert=_write(d / "client.pem", client),
        client_key=_write(d / "client.key", key=client_key),
        rogue_ca=_write(d / "rogue-ca.pem", rogue),
        rogue_client_cert=_write(d / "rogue-client.pem", rogue_client),
        rogue_client_key=_write(d / "rogue-client.key", key=rogue_client_key),
    )


@pytest.fixture(scope="session")
def token_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens"
    path.write_text(f"# tickserve tokens, one per line\n\n  {TOKEN}  \n# retired: old-token-123456789\n{OTHER_TOKEN}\n")
    return path


# --- real servers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory, plugins) -> Path:
    """One small real LightGBM model (the shared `model_repo` takes far longer to train)."""
    root = tmp_path_factory.mktemp("secure-models")
    train_model(
        simulate(4_000, seed=3),
        adapter=plugins.adapters["lightgbm"],
        models_dir=root,
        name=MODEL,
        params={"num_boost_round": 8, "early_stopping_rounds": 4},
    )
    return root


@pytest.fixture(scope="module")
def launch(small_repo, plugins):
    """launch(tls=..., auth=...) -> "127.0.0.1:<port>": a real server in a background loop, stopped at the end."""
    repository = ModelRepository(small_repo, plugins.adapters, default_model=MODEL)
    repository.load_all()
    runner = _LoopThread()
    started = []

    def start(**security) -> str:
        tick_server = runner.run(create_server("127.0.0.1:0", repository, workers=2, **security))
        started.append(tick_server)
        return f"127.0.0.1:{tick_server.port}"

    yield start
    for tick_server in started:
        runner.run(tick_server.stop(0.5))
    runner.close()


@pytest.fixture(scope="module")
def tls_server(launch, pki) -> str:
    return launch(tls=TlsConfig(pki.server_cert, pki.server_key))


@pytest.fixture(scope="module")
def mtls_server(launch, pki) -> str:
    return launch(tls=TlsConfig(pki.server_cert, pki.server_key, client_ca_file=pki.ca))


@pytest.fixture(scope="module")
def token_server(launch, token_file) -> str:
    return launch(auth=TokenAuth.load(token_file, env={}))


@pytest.fixture(scope="module")
def closed_health_server(launch) -> str:
    return launch(auth=TokenAuth([TOKEN], health_requires_token=True))


@pytest.fixture(scope="module")
def tls_token_server(launch, pki) -> str:
    return launch(tls=TlsConfig(pki.server_cert, pki.server_key), auth=TokenAuth([TOKEN]))


@pytest.fixture(scope="module")
def ticks():
    return frame_to_protos(simulate(120, seed=7))


def assert_served(client: TickserveClient, ticks) -> None:
    """Real answers for a unary call (Predict, ListModels) and a streaming one (StreamSignals)."""
    names = {m.name for m in client.list_models().models}
    assert MODEL in names
    predicted = client.predict(ticks[:20], model=MODEL)
    assert len(predicted) == 20 and all(s.model == MODEL for s in predicted)
    streamed = list(client.stream_signals(ticks, model=MODEL))
    assert len(streamed) == len(ticks)
    assert all(r.WhichOneof("result") == "signal" for r in streamed)
    assert [r.signal.sequence for r in streamed] == [t.sequence for t in ticks]
    assert streamed[0].signal.p_buy + streamed[0].signal.p_hold + streamed[0].signal.p_sell == pytest.approx(1.0)


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        result = call()
        if not isinstance(result, (list, pb.ListModelsResponse, pb.ModelInfo, health_pb2.HealthCheckResponse)):
            list(result)  # a stream: its status arrives while iterating
    return info.value


# --- TLS ----------------------------------------------------------------------------------


def test_tls_server_serves_a_client_trusting_its_ca(tls_server, pki, ticks):
    with TickserveClient(tls_server, root_certificates=pki.read("ca"), timeout=30) as client:
        assert client.secure
        assert_served(client, ticks)


def test_tls_server_refuses_a_plaintext_client(tls_server, ticks):
    with TickserveClient(tls_server, timeout=10) as client:
        err = rpc_error(client.list_models)
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert "failed to connect" in err.details() and "Socket closed" in err.details(), err.details()
        err = rpc_error(lambda: client.stream_signals(ticks))
        assert err.code() == grpc.StatusCode.UNAVAILABLE and "Socket closed" in err.details()


def test_a_client_trusting_another_ca_refuses_the_server(tls_server, pki):
    with TickserveClient(tls_server, root_certificates=pki.read("rogue_ca"), timeout=10) as client:
        err = rpc_error(client.list_models)
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "handshake failed" in err.details().lower(), err.details()
    assert "CERTIFICATE_VERIFY_FAILED" in err.details(), err.details()


# --- mutual TLS ---------------------------------------------------------------------------


def test_mtls_serves_a_client_with_a_certificate_from_the_ca(mtls_server, pki, ticks):
    with TickserveClient(
        mtls_server,
        root_certificates=pki.read("ca"),
        certificate_chain=pki.read("client_cert"),
        private_key=pki.read("client_key"),
        timeout=30,
    ) as client:
        assert_served(client, ticks)


def test_mtls_refuses_a_client_without_a_certificate(mtls_server, pki, ticks):
    with TickserveClient(mtls_server, root_certificates=pki.read("ca"), timeout=10) as client:
        for call in (client.list_models, lambda: client.stream_signals(ticks)):
            err = rpc_error(call)  # the server ends the handshake: PEER_DID_NOT_RETURN_A_CERTIFICATE in its log
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err
            assert "failed to connect" in err.details() and "Socket closed" in err.details(), err.details()


def test_mtls_refuses_a_client_certificate_from_another_ca(mtls_server, pki, ticks):
    with TickserveClient(
        mtls_server,
        root_certificates=pki.read("ca"),
        timeout=10,
        certificate_chain=pki.read("rogue_client_cert"),
        private_key=pki.read("rogue_client_key"),
    ) as client:
        for call in (lambda: client.predict(ticks[:5]), lambda: client.stream_signals(ticks)):
            err = rpc_error(call)  # the server cannot verify the certificate and ends the handshake
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err
            assert "failed to connect" in err.details() and "Socket closed" in err.details(), err.details()


# --- bearer tokens ------------------------------------------------------------------------


def test_no_token_is_unauthenticated_for_unary_and_streaming_calls(token_server, ticks):
    with TickserveClient(token_server, timeout=10) as client:
        for call in (
            client.list_models,
            lambda: client.predict(ticks[:3]),
            lambda: client.stream_signals(ticks),
            lambda: client.evaluate(ticks),
            client.repository_index,
        ):
            err = rpc_error(call)
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
            assert err.details() == "missing bearer token: send metadata 'authorization: Bearer <token>'"
    with grpc.insecure_channel(token_server) as channel:  # an unknown method reveals nothing before authentication
        err = rpc_error(lambda: channel.unary_unary("/tickserve.v1.SignalService/NoSuchMethod")(b"", timeout=10))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED and err.details().startswith("missing bearer token")
        err = rpc_error(
            lambda: channel.unary_unary("/tickserve.v1.SignalService/NoSuchMethod")(
                b"", timeout=10, metadata=[("authorization", f"Bearer {TOKEN}")]
            )
        )
        assert err.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_wrong_token_is_unauthenticated_and_never_echoed(token_server, ticks):
    with TickserveClient(token_server, token=WRONG_TOKEN, timeout=10) as client:
        for call in (client.list_models, lambda: client.stream_signals(ticks)):
            err = rpc_error(call)
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
            assert err.details() == "invalid bearer token"
            assert WRONG_TOKEN not in err.details() and WRONG_TOKEN not in str(err.trailing_metadata())
    # a prefix of a valid token, and the valid token under another scheme, are refused too
    with TickserveClient(token_server, token=TOKEN[:-1], timeout=10) as client:
        assert rpc_error(client.list_models).details() == "invalid bearer token"
    stub = pb_grpc.SignalServiceStub(grpc.insecure_channel(token_server))
    err = rpc_error(lambda: stub.ListModels(pb.ListModelsRequest(), metadata=[("authorization", f"Basic {TOKEN}")]))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert err.details().startswith("malformed authorization metadata") and TOKEN not in err.details()


def test_the_right_token_is_served_for_unary_and_streaming_calls(token_server, ticks):
    for token in (TOKEN, OTHER_TOKEN):  # both tokens of the file; comments and blank lines were skipped
        with TickserveClient(token_server, token=token, timeout=30) as client:
            assert_served(client, ticks)
            responses = list(client.evaluate(ticks, model=MODEL))
            assert responses[-1].WhichOneof("payload") == "report"
            assert [m.name for m in client.repository_index()]


def test_health_is_open_without_a_token_by_default_but_reflection_is_not(token_server):
    with grpc.insecure_channel(token_server) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert (
            health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        )
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        err = rpc_error(lambda: reflection.ServerReflectionInfo(iter([request]), timeout=10))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        answer = next(
            reflection.ServerReflectionInfo(
                iter([request]), timeout=10, metadata=[("authorization", f"Bearer {TOKEN}")]
            )
        )
        assert "tickserve.v1.SignalService" in {s.name for s in answer.list_services_response.service}


def test_health_requires_the_token_when_configured(closed_health_server):
    request = health_pb2.HealthCheckRequest()
    with grpc.insecure_channel(closed_health_server) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        err = rpc_error(lambda: health.Check(request, timeout=10))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert err.details().startswith("missing bearer token")
        response = health.Check(request, timeout=10, metadata=[("authorization", f"Bearer {TOKEN}")])
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_tokens_come_from_the_file_and_from_the_environment(token_file, tmp_path, monkeypatch, launch, ticks):
    assert security.read_token_file(token_file) == [TOKEN, OTHER_TOKEN]
    assert security.tokens_from_env({"TICKSERVE_TOKENS": f" {OTHER_TOKEN} ,, env-token-2c9e1f4b7a "}) == [
        OTHER_TOKEN,
        "env-token-2c9e1f4b7a",
    ]
    monkeypatch.setenv("TICKSERVE_TOKENS", "env-token-2c9e1f4b7a")
    env_only = TokenAuth.load()  # $TICKSERVE_TOKENS alone
    both = TokenAuth.load(token_file)  # the file and $TICKSERVE_TOKENS together
    assert (env_only.token_count, both.token_count) == (1, 3)
    assert TOKEN not in repr(both) and "env-token" not in repr(both)
    address = launch(auth=both)
    for token in (TOKEN, OTHER_TOKEN, "env-token-2c9e1f4b7a"):
        with TickserveClient(address, token=token, timeout=30) as client:
            assert len(client.predict(ticks[:5], model=MODEL)) == 5
    with TickserveClient(address, token="env-token-2c9e1f4b7", timeout=10) as client:
        assert rpc_error(client.list_models).code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_presented_token_is_compared_with_every_token_in_constant_time(monkeypatch):
    auth = TokenAuth([TOKEN, OTHER_TOKEN, "third-token-6a1f0c3e9b"])
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(security.hmac, "compare_digest", lambda a, b: calls.append((len(a), len(b))) or real(a, b))
    assert auth.check([("authorization", f"Bearer {TOKEN}")]) is None  # matches the first: still compares all three
    assert auth.check([("authorization", f"bearer {OTHER_TOKEN}")]) is None  # the scheme is case-insensitive
    assert auth.check([("authorization", f"Bearer {WRONG_TOKEN}")]) == "invalid"
    assert calls == [(32, 32)] * 9  # digests: equal lengths whatever the presented token's length
    assert auth.check([]) == "missing"
    assert auth.check([("authorization", f"Bearer {TOKEN}")] * 2) == "malformed"
    assert auth.check([("authorization", "Bearer ")]) == "malformed"


def test_tls_and_token_together(tls_token_server, pki, ticks):
    ca = pki.read("ca")
    with TickserveClient(tls_token_server, root_certificates=ca, token=TOKEN, timeout=30) as client:
        assert_served(client, ticks)
    with TickserveClient(tls_token_server, root_certificates=ca, timeout=10) as client:
        err = rpc_error(lambda: client.stream_signals(ticks))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED and err.details().startswith("missing bearer token")
    with TickserveClient(tls_token_server, token=TOKEN, timeout=10) as client:  # plaintext: no handshake
        assert rpc_error(client.list_models).code() == grpc.StatusCode.UNAVAILABLE


# --- configuration errors -----------------------------------------------------------------


def test_configuration_errors_name_the_file_and_fail_at_startup(pki, tmp_path, launch):
    missing = tmp_path / "nope.pem"
    with pytest.raises(SecurityConfigError, match=f"TLS certificate {missing}: no such file"):
        TlsConfig(missing, pki.server_key).server_credentials()
    with pytest.raises(SecurityConfigError, match=f"TLS private key {pki.server_cert}: not a PEM file"):
        TlsConfig(pki.server_cert, pki.server_cert).server_credentials()
    with pytest.raises(SecurityConfigError, match=f"TLS client CA {tmp_path}: is a directory"):
        TlsConfig(pki.server_cert, pki.server_key, tmp_path).server_credentials()
    with pytest.raises(SecurityConfigError, match="TLS certificate .*nope.pem: no such file"):
        launch(tls=TlsConfig(missing, pki.server_key))
    mismatched = f"TLS certificate {pki.server_cert} and private key {pki.client_key}: gRPC cannot use them"
    with pytest.raises(SecurityConfigError, match=mismatched):  # not "Failed to bind"
        launch(tls=TlsConfig(pki.server_cert, pki.client_key))
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(SecurityConfigError, match=f"token file {empty}: no tokens"):
        TokenAuth.load(empty, env={})
    with pytest.raises(SecurityConfigError, match=f"token file {tmp_path / 'absent'}: no such file"):
        TokenAuth.load(tmp_path / "absent", env={})
    spaced = tmp_path / "spaced"
    spaced.write_text("a token with spaces\n")
    with pytest.raises(
        SecurityConfigError, match=f"token file {spaced}, line 1: a token must be non-empty printable ASCII"
    ):
        TokenAuth.load(spaced, env={})


# --- the command line ---------------------------------------------------------------------


def _cli(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*TICKSERVE, *args], capture_output=True, text=True, timeout=60, env=env)


def test_cli_serves_tls_and_tokens_to_the_cli_client(small_repo, pki, token_file, tmp_path):
    ready = tmp_path / "port"
    proc = subprocess.Popen(
        [
            *TICKSERVE,
            "serve",
            "--models",
            str(small_repo),
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--tls-cert",
            str(pki.server_cert),
            "--tls-key",
            str(pki.server_key),
            "--token-file",
            str(token_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (ready.exists() and ready.read_text().strip()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        address = f"127.0.0.1:{int(ready.read_text())}"
        secure = ("--server", address, "--tls-ca", str(pki.ca))

        models = _cli("models", *secure, "--token-file", str(token_file))
        assert models.returncode == 0, models.stderr
        assert MODEL in models.stdout and "READY" in models.stdout

        no_token = _cli("models", *secure)
        assert no_token.returncode == 1
        assert "UNAUTHENTICATED: missing bearer token" in no_token.stderr

        wrong = _cli("models", *secure, env={**os.environ, "TICKSERVE_TOKEN": WRONG_TOKEN})
        assert wrong.returncode == 1
        assert "UNAUTHENTICATED: invalid bearer token" in wrong.stderr and WRONG_TOKEN not in wrong.stderr
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"tickserve serving on {address} (TLS, bearer tokens: 2, health open)" in out


def test_cli_serve_refuses_a_missing_certificate_before_loading_models(tmp_path, pki):
    missing = tmp_path / "server.pem"
    result = _cli(
        "serve", "--models", str(tmp_path), "--port", "0", "--tls-cert", str(missing), "--tls-key", str(pki.server_key)
    )
    assert result.returncode == 2
    assert f"tickserve: error: TLS certificate {missing}: no such file" in result.stderr
    result = _cli("serve", "--models", str(tmp_path), "--port", "0", "--tls-cert", str(pki.server_cert))
    assert result.returncode == 2 and "--tls-cert and --tls-key go together" in result.stderr
