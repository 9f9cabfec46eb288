"""The nginx configuration of a cluster: the template rendered once, the upstream rewritten.

The template (nginx.conf.template beside this module) holds every directive that matters for
all-day gRPC streams; only the listen address, the run directory and the upstream's file are
filled in. The upstream lists every replica, always: one whose gRPC health is not SERVING is
marked `down`, so an upstream with no replica up is still valid nginx (it answers 502, which a
gRPC client sees as UNAVAILABLE and a resuming stream retries) rather than a config error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = Path(__file__).with_name("nginx.conf.template")
UPSTREAM_NAME = "tickserve_replicas"


@dataclass(frozen=True)
class NginxSettings:
    listen: str  # "127.0.0.1:50051"
    prefix: Path  # the run directory: pid, logs, temp paths, the config files
    workers: int = 1
    # a reload's old workers keep their open streams this long at most (then the clients resume)
    worker_shutdown_timeout: str = "24h"

    @property
    def conf_file(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def upstream_file(self) -> Path:
        return self.prefix / "upstream.conf"

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"


@dataclass(frozen=True)
class UpstreamServer:
    address: str  # "127.0.0.1:41234"
    up: bool


def render_config(settings: NginxSettings, template: Path = TEMPLATE) -> str:
    values = {
        "LISTEN": settings.listen,
        "PREFIX": str(settings.prefix),
        "UPSTREAM_FILE": str(settings.upstream_file),
        "WORKERS": str(settings.workers),
        "WORKER_SHUTDOWN_TIMEOUT": settings.worker_shutdown_timeout,
    }
    text = template.read_text()
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    left = re.findall(r"\{\{\w+\}\}", text)
    if left:  # a placeholder added to the template but not here: nginx would fail on it obscurely
        raise ValueError(f"{template}: placeholders without a value: {', '.join(sorted(set(left)))}")
    return text


def render_upstream(servers: list[UpstreamServer], *, max_fails: int = 1, fail_timeout_s: int = 5) -> str:
    """least_conn: streams last for hours, so balancing open streams (not calls) is what evens
    the load. max_fails/fail_timeout: nginx's own passive check, which takes a replica out as
    soon as a connection to it fails, before the health supervisor's next poll notices."""
    lines = [f"upstream {UPSTREAM_NAME} {{", "    least_conn;"]
    for s in servers:
        state = f"max_fails={max_fails} fail_timeout={fail_timeout_s}s" if s.up else "down"
        lines.append(f"    server {s.address} {state};")
    lines += [
        "    keepalive 32;              # idle connections to replicas kept for the next calls",
        "    keepalive_timeout 3600s;",
        "}",
        "",
    ]
    return "\n".join(lines)


def write_files(settings: NginxSettings, servers: list[UpstreamServer]) -> None:
    settings.prefix.mkdir(parents=True, exist_ok=True)
    write_upstream(settings, servers)
    settings.conf_file.write_text(render_config(settings))


def write_upstream(settings: NginxSettings, servers: list[UpstreamServer]) -> None:
    tmp = settings.upstream_file.with_suffix(".tmp")
    tmp.write_text(render_upstream(servers))
    tmp.replace(settings.upstream_file)  # atomic: a reload never reads half a file
