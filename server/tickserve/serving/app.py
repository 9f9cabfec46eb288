"""Server assembly: `create_server(address, ...) -> (server, port)` and `serve(...)` for the CLI.

Registers SignalService, gRPC health checking and server reflection. `serve`
stops gracefully on SIGINT/SIGTERM: health turns NOT_SERVING, new calls are
refused, in-flight calls get `grace` seconds to finish.

Beside gRPC, optionally: an HTTP/JSON gateway with Prometheus /metrics on its
own port (serving/http_gateway.py, same handlers), and the signal log
(serving/signal_log.py) that records every served signal in SQLite.

Access control (serving/security.py, docs/security.md): `tls=TlsConfig(...)` serves
TLS (mutual TLS with a client CA), `auth=TokenAuth(...)` requires a bearer token on
every call. Without them the server is plaintext and open, so it binds loopback
(127.0.0.1) unless told otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tickserve_proto.contract import MAX_MESSAGE_BYTES, server_keepalive_options
from tickserve_proto.v1 import tickserve_pb2 as pb
from tickserve_proto.v1 import tickserve_pb2_grpc as pb_grpc

from ..models.repository import ModelRepository
from . import kserve
from .decoding import MalformedRequests
from .http_gateway import HttpGateway, build_app
from .limits import ServerLimits
from .process_group import ProcessHeader
from .recorder import Recorder
from .repository_servicer import ModelRepositoryServicer
from .security import TlsConfig, TokenAuth
from .servicer import SignalServicer
from .signal_log import DEFAULT_MAX_QUEUED_ROWS, SignalLog
from .telemetry import Telemetry

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SignalService"].full_name
REPOSITORY_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ModelRepositoryService"].full_name


class HealthService(health.aio.HealthServicer):
    """grpcio's health service, with `List` (the health proto has it, reflection advertises it,
    and grpcio-health-checking answers it UNIMPLEMENTED): every service's status at once."""

    async def List(self, request: health_pb2.HealthListRequest, context) -> health_pb2.HealthListResponse:
        statuses = dict(self._server_status)  # a snapshot: List is non-atomic by the proto's contract
        return health_pb2.HealthListResponse(
            statuses={name: health_pb2.HealthCheckResponse(status=status) for name, status in statuses.items()}
        )


class TickServer:
    """A running (or ready to start) server and what it owns."""

    def __init__(self, server: grpc.aio.Server, port: int, health_servicer, executor: ThreadPoolExecutor, signals):
        self.server = server
        self.port = port
        self.health = health_servicer
        self.executor = executor
        self.signals = signals  # the SignalServicer (its predictors' batch stats are read by benchmarks and tests)
        self.http: HttpGateway | None = None
        self.http_port: int | None = None
        self.signal_log: SignalLog | None = None
        self.telemetry: Telemetry | None = None

    async def drain(self, seconds: float) -> None:
        """Before a stop: health turns NOT_SERVING (gRPC health and HTTP /ready) while every call,
        new ones included, is still served for `seconds`, so a load balancer health-checking this
        replica moves new streams elsewhere before any is refused."""
        self.signals.draining = True
        await self.health.enter_graceful_shutdown()
        await asyncio.sleep(seconds)

    async def stop(self, grace: float | None = 5.0) -> None:
        """Refuse new calls, give in-flight ones `grace` s, then write out the signal log.

        Streams still open near the end of the grace period (the last second of it, or its
        second half when shorter) are ended with UNAVAILABLE saying how many of their messages
        were answered, rather than cancelled in silence when it runs out."""
        await self.health.enter_graceful_shutdown()
        # HTTP and gRPC drain together, each within the grace period
        stopping = asyncio.ensure_future(
            asyncio.gather(
                self.http.stop(grace) if self.http is not None else asyncio.sleep(0),
                self.server.stop(grace),
            )
        )
        if grace is not None:
            try:
                await asyncio.wait_for(asyncio.shield(stopping), timeout=max(0.0, grace - min(1.0, grace / 2)))
            except TimeoutError:
                await self.signals.open_streams.end_all()
        await stopping
        if self.signal_log is not None:  # after the last answer: every signal served is written
            await asyncio.get_running_loop().run_in_executor(None, self.signal_log.close)
        self.executor.shutdown(wait=False, cancel_futures=True)


async def create_server(
    address: str,
    repository: ModelRepository,
    *,
    limits: ServerLimits = ServerLimits(),
    workers: int = 4,
    tls: TlsConfig | None = None,
    auth: TokenAuth | None = None,
    http_port: int | None = None,
    signal_log: Path | None = None,
    signal_log_max_rows: int = DEFAULT_MAX_QUEUED_ROWS,
    signal_log_durable: bool = False,
    process_group: bool = False,
) -> TickServer:
    """Build and start a server bound to `address` ("host:port"; port 0 picks a free one).

    `process_group`: one of `serve --processes N`'s children (serving/process_group.py): the
    ports are bound with SO_REUSEPORT, /metrics sums the group, unary answers name the process.

    `tls`: serve TLS (mutual TLS if it names a client CA) instead of plaintext.
    `auth`: require a bearer token on every call (health checks may stay open).
    `http_port`: also serve the HTTP/JSON gateway and /metrics there (0: a free port; None: off).
    `signal_log`: record every served signal in this SQLite file.
    """
    credentials = tls.server_credentials() if tls is not None else None  # file errors before anything starts
    log_writer = (
        SignalLog(signal_log, max_queued_rows=signal_log_max_rows, durable=signal_log_durable)
        if signal_log is not None
        else None
    )
    telemetry = Telemetry(repository, log_writer, multiprocess=process_group) if http_port is not None else None
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tickserve-worker")
    server = grpc.aio.server(
        options=[
            # an incoming message above the limit ends its call with RESOURCE_EXHAUSTED (gRPC itself)
            ("grpc.max_receive_message_length", limits.max_message_bytes),
            ("grpc.max_send_message_length", max(limits.max_message_bytes, MAX_MESSAGE_BYTES)),
            # off: two servers must not share a port silently; on only among a group's children,
            # whose supervisor holds the port (serving/supervisor.py)
            ("grpc.so_reuseport", 1 if process_group else 0),
            ("grpc.max_concurrent_streams", limits.max_streams_per_connection),
            *server_keepalive_options(),  # all-day streams: tickserve_proto/contract.py says why
        ],
        # auth first (an unauthenticated call is refused before its bytes matter), then
        # undecodable request bytes -> INVALID_ARGUMENT on every method (decoding.py)
        interceptors=[
            *([auth] if auth is not None else []),
            MalformedRequests(),
            *([ProcessHeader()] if process_group else []),
        ],
    )
    signals = SignalServicer(repository, executor, limits, Recorder(telemetry, log_writer))
    pb_grpc.add_SignalServiceServicer_to_server(signals, server)
    pb_grpc.add_ModelRepositoryServiceServicer_to_server(ModelRepositoryServicer(repository, executor), server)
    inference = kserve.add_to_server(  # KServe V2, docs/kserve.md; `M.ticks` runs through `signals`
        server, repository, executor, signals, max_rows=limits.max_ticks_per_message
    )
    health_servicer = HealthService()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, REPOSITORY_SERVICE_NAME, kserve.SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME),
        server,
        pool=kserve.REFLECTION_POOL,  # the default pool, then the V2 stubs' own (kserve.py)
    )
    tick_server = TickServer(server, 0, health_servicer, executor, signals)
    tick_server.signal_log, tick_server.telemetry = log_writer, telemetry
    try:  # a failure past this point (a port taken...) must not leave a server, thread or pool running
        port = (
            server.add_secure_port(address, credentials)
            if credentials is not None
            else server.add_insecure_port(address)
        )
        if port == 0:
            raise OSError(f"could not bind {address}")
        tick_server.port = port
        await server.start()
        if http_port is not None:
            host = address.rsplit(":", 1)[0].strip("[]")
            app = build_app(signals, telemetry, auth, max_body_bytes=limits.max_message_bytes, inference=inference)
            tick_server.http = HttpGateway(app)
            tick_server.http_port = await tick_server.http.start(
                host, http_port, _ssl_context(tls), reuse_port=process_group
            )
    except BaseException:
        await tick_server.stop(None)
        raise
    serving = health_pb2.HealthCheckResponse.SERVING
    await health_servicer.set("", serving)
    await health_servicer.set(SERVICE_NAME, serving)
    await health_servicer.set(REPOSITORY_SERVICE_NAME, serving)
    await health_servicer.set(kserve.SERVICE_NAME, serving)
    return tick_server


async def serve(
    repository: ModelRepository,
    host: str = "127.0.0.1",
    port: int = 50051,
    *,
    grace: float = 5.0,
    drain: float = 0.0,
    ready_file: Path | None = None,
    limits: ServerLimits = ServerLimits(),
    tls: TlsConfig | None = None,
    auth: TokenAuth | None = None,
    workers: int = 4,
    http_port: int | None = None,
    signal_log: Path | None = None,
    signal_log_max_rows: int = DEFAULT_MAX_QUEUED_ROWS,
    signal_log_durable: bool = False,
    process_group: bool = False,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve until SIGINT/SIGTERM. `announce` writes the lines an operator always sees (the
    command line's formats them as its --log-format says)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before announcing readiness: a SIGTERM right after is graceful
        loop.add_signal_handler(sig, stop.set)
    tick_server = await create_server(
        f"{host}:{port}",
        repository,
        limits=limits,
        tls=tls,
        auth=auth,
        workers=workers,
        http_port=http_port,
        signal_log=signal_log,
        signal_log_max_rows=signal_log_max_rows,
        signal_log_durable=signal_log_durable,
        process_group=process_group,
    )
    log.info("tickserve serving %d model version(s) on %s:%d", len(repository.entries()), host, tick_server.port)
    security = _describe_security(tls, auth)
    if not security and host not in _LOOPBACK:
        log.warning(
            "serving on %s without TLS or token authentication: anyone who can reach it can call it "
            "(see docs/security.md)",
            host,
        )
    announce(f"tickserve serving on {host}:{tick_server.port}" + (f" ({security})" if security else ""))
    if tick_server.http_port is not None:
        scheme = "https" if tls is not None else "http"
        announce(f"tickserve HTTP/JSON gateway and /metrics on {scheme}://{host}:{tick_server.http_port}")
    if signal_log is not None:
        announce(f"tickserve signal log: {signal_log}" + (" (durable)" if signal_log_durable else ""))
    try:
        if ready_file is not None:
            ready_file.write_text(f"{tick_server.port}\n")
        await stop.wait()
        if drain > 0:
            announce(f"tickserve draining: health NOT_SERVING, still serving for {drain:g} s")
            await tick_server.drain(drain)
        log.info("shutting down: %.1f s grace for in-flight calls", grace)
        announce("tickserve stopping")
    finally:
        await tick_server.stop(grace)


def _ssl_context(tls: TlsConfig | None) -> ssl.SSLContext | None:
    """The gRPC port's TLS settings for the HTTP gateway too (HTTPS, client certificates when mutual)."""
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.client_ca_file is not None:
        context.load_verify_locations(cafile=str(tls.client_ca_file))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


_LOOPBACK = ("127.0.0.1", "::1", "[::1]", "localhost")


def _describe_security(tls: TlsConfig | None, auth: TokenAuth | None) -> str:
    parts = []
    if tls is not None:
        parts.append("mutual TLS" if tls.mutual else "TLS")
    if auth is not None:
        parts.append(f"bearer tokens: {auth.token_count}" + ("" if auth.health_requires_token else ", health open"))
    return ", ".join(parts)
