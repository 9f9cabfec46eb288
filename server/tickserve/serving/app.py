"""Server assembly: `create_server(address, ...) -> (server, port)` and `serve(...)` for the CLI.

Registers SignalService, gRPC health checking and server reflection. `serve`
stops gracefully on SIGINT/SIGTERM: health turns NOT_SERVING, new calls are
refused, in-flight calls get `grace` seconds to finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tickserve_proto.v1 import tickserve_pb2 as pb
from tickserve_proto.v1 import tickserve_pb2_grpc as pb_grpc

from ..repository import ModelRepository
from .repository_servicer import ModelRepositoryServicer
from .servicer import ServerLimits, SignalServicer

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SignalService"].full_name
REPOSITORY_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ModelRepositoryService"].full_name
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class TickServer:
    """A running (or ready to start) server and what it owns."""

    def __init__(self, server: grpc.aio.Server, port: int, health_servicer, executor: ThreadPoolExecutor, signals):
        self.server = server
        self.port = port
        self.health = health_servicer
        self.executor = executor
        self.signals = signals  # the SignalServicer (its batcher's stats are read by benchmarks and tests)

    async def stop(self, grace: float | None = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        self.executor.shutdown(wait=False, cancel_futures=True)


async def create_server(
    address: str,
    repository: ModelRepository,
    *,
    limits: ServerLimits = ServerLimits(),
    workers: int = 4,
) -> TickServer:
    """Build and start a server bound to `address` ("host:port"; port 0 picks a free one)."""
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tickserve-worker")
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ]
    )
    signals = SignalServicer(repository, executor, limits)
    pb_grpc.add_SignalServiceServicer_to_server(signals, server)
    pb_grpc.add_ModelRepositoryServiceServicer_to_server(ModelRepositoryServicer(repository, executor), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, REPOSITORY_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    await server.start()
    serving = health_pb2.HealthCheckResponse.SERVING
    await health_servicer.set("", serving)
    await health_servicer.set(SERVICE_NAME, serving)
    await health_servicer.set(REPOSITORY_SERVICE_NAME, serving)
    return TickServer(server, port, health_servicer, executor, signals)


async def serve(
    repository: ModelRepository,
    host: str = "127.0.0.1",
    port: int = 50051,
    *,
    grace: float = 5.0,
    ready_file: Path | None = None,
    limits: ServerLimits = ServerLimits(),
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before announcing readiness: a SIGTERM right after is graceful
        loop.add_signal_handler(sig, stop.set)
    tick_server = await create_server(f"{host}:{port}", repository, limits=limits)
    log.info("tickserve serving %d model version(s) on %s:%d", len(repository.entries()), host, tick_server.port)
    print(f"tickserve serving on {host}:{tick_server.port}", flush=True)
    if ready_file is not None:
        ready_file.write_text(f"{tick_server.port}\n")
    await stop.wait()
    log.info("shutting down: %.1f s grace for in-flight calls", grace)
    print("tickserve stopping", flush=True)
    await tick_server.stop(grace)
