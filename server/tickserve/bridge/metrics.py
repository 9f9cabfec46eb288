"""The bridge's Prometheus metrics, in its own registry, and the /metrics endpoint that serves them.

Counted per input message or per batch, never per tick, as the server's telemetry is."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class BridgeMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.messages = Counter(
            "tickserve_bridge_messages", "Input messages answered (their outputs stored)", registry=r
        )
        self.ticks = Counter("tickserve_bridge_ticks", "Ticks answered, signal or per-tick error", registry=r)
        self.tick_errors = Counter("tickserve_bridge_tick_errors", "Ticks answered with a per-tick error", registry=r)
        self.published = Counter("tickserve_bridge_published", "Output messages stored by the broker", registry=r)
        self.duplicates = Counter(
            "tickserve_bridge_duplicates",
            "Outputs the broker already held under their de-duplication id (answers repeated after a restart)",
            registry=r,
        )
        self.acks = Counter("tickserve_bridge_acks", "Input messages acknowledged", registry=r)
        self.redeliveries = Counter(
            "tickserve_bridge_redeliveries", "Input messages delivered more than once", registry=r
        )
        self.dead_letters = Counter(
            "tickserve_bridge_dead_letters", "Input messages sent to the dead-letter subject", registry=r
        )
        self.replayed = Counter(
            "tickserve_bridge_replayed_messages", "Input messages replayed at start to rebuild state", registry=r
        )
        self.lag = Gauge(
            "tickserve_bridge_consumer_lag",
            "Input messages not yet delivered to the bridge (as of the last fetch)",
            registry=r,
        )
        self.in_flight = Gauge(
            "tickserve_bridge_in_flight", "Input messages delivered and not yet acknowledged", registry=r
        )

    def scrape(self) -> bytes:
        return generate_latest(self.registry)


async def start_metrics(metrics: BridgeMetrics, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve GET /metrics on host:port (0: a free one); (the runner to clean up, the bound port)."""

    async def handle(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.scrape(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # aiohttp keeps the listening socket there
    return runner, bound
