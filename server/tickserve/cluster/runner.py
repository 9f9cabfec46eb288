"""A cluster on loopback: N `tickserve serve` replicas, nginx balancing gRPC over them, and the
health supervisor between the two. What `tickserve cluster` runs, and what its test runs.

Start: replicas (free ports, `--drain`), the nginx files with every replica up, nginx, then the
supervisor (whose first poll applies real health). Stop: the replicas are sent SIGTERM while
nginx still carries their open streams (each drains: NOT_SERVING, still serving, then its grace
stop), then nginx is stopped.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .health import HealthSupervisor
from .nginx import Nginx, require_nginx
from .nginx_config import NginxSettings, UpstreamServer, write_files, write_upstream
from .replicas import Replica, start_replicas, stop_replicas

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterConfig:
    models: Path
    replicas: int = 3
    host: str = "127.0.0.1"
    port: int = 50051
    drain: float = 5.0  # each replica's --drain: time for the supervisor to move new streams away
    grace: float = 5.0
    health_interval: float = 0.5
    run_dir: Path | None = None  # default: a new temporary directory
    serve_args: tuple[str, ...] = ()  # more `tickserve serve` flags for every replica
    install_nginx: bool = True


@dataclass
class Cluster:
    config: ClusterConfig
    announce: Callable[[str], None] = print
    replicas: list[Replica] = field(default_factory=list)
    nginx: Nginx | None = None
    supervisor: HealthSupervisor | None = None
    settings: NginxSettings | None = None

    @property
    def address(self) -> str:
        return self.settings.listen if self.settings else f"{self.config.host}:{self.config.port}"

    def start(self) -> Cluster:
        c = self.config
        if c.replicas < 1:
            raise ValueError(f"--replicas: at least 1, got {c.replicas}")
        executable = require_nginx(install=c.install_nginx)  # before any replica starts
        run_dir = Path(c.run_dir) if c.run_dir else Path(tempfile.mkdtemp(prefix="tickserve-cluster-"))
        run_dir.mkdir(parents=True, exist_ok=True)
        self.settings = NginxSettings(listen=f"{c.host}:{c.port}", prefix=run_dir.resolve())
        try:
            self.replicas = start_replicas(
                c.models, c.replicas, run_dir, drain=c.drain, grace=c.grace, serve_args=c.serve_args
            )
            write_files(self.settings, [UpstreamServer(r.address, True) for r in self.replicas])
            self.nginx = Nginx(executable, self.settings)
            self.nginx.start()
            self.supervisor = HealthSupervisor(
                [r.address for r in self.replicas],
                self._apply,
                interval=c.health_interval,
                on_change=lambda address, up: self.announce(
                    f"tickserve cluster: replica {address} "
                    + ("SERVING: back in the upstream" if up else "not SERVING: out of the upstream")
                ),
            )
            self.supervisor.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _apply(self, serving: dict[str, bool]) -> None:
        write_upstream(self.settings, [UpstreamServer(a, up) for a, up in serving.items()])
        if not self.nginx.reload():
            log.warning("nginx did not confirm its reload within 5 s (see %s)", self.settings.error_log)

    def replica_at(self, address: str) -> Replica:
        return next(r for r in self.replicas if r.address == address)

    def stop(self) -> None:
        """Drain and stop the replicas behind a running nginx and supervisor, then the rest."""
        if self.replicas:
            stop_replicas(self.replicas, timeout=self.config.drain + self.config.grace + 10)
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.nginx is not None:
            self.nginx.stop()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
