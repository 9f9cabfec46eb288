"""`serve --processes N` (N > 1): a small supervisor of N child `serve` processes on one port.

Why: one process serves on one event loop and about one core (the GIL); N processes use N.

- The ports: the supervisor binds the gRPC port (and the HTTP one) itself with SO_REUSEPORT
  and holds them, without listening, for its lifetime; each child binds the same port with
  SO_REUSEPORT and the kernel spreads new connections over the children. So `--port 0` picks one
  free port for all, and a restarting child finds its port still held for the group. Only a
  socket that also sets SO_REUSEPORT (as the same user) can join the port: a second plain
  `tickserve serve` on it still fails to bind, but a foreign process that asks for
  SO_REUSEPORT could share it silently.
- The children: `tickserve <the same command line> --processes 1 --port P --http-port H
  --ready-file F` (argparse keeps the last value of a flag), with the group's control directory
  in the environment (serving/process_group.py). `--ready-file` is written once all serve.
- SIGTERM/SIGINT: forwarded to every child, each drains (`--drain`) and stops (`--grace`) as a
  single server does; exit 0 when every child exited 0.
- A child that exits when not asked to is logged (pid, exit code) and restarted after a backoff
  (0.5 s, doubling while it keeps dying within 10 s of its start, at most 30 s), so a crash loop
  does not spin. A child that fails before the group first serves stops the start instead.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .process_group import GROUP_ENV

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 10.0  # a child that lived this long resets the backoff
START_TIMEOUT_S = 120.0  # loading a big repository takes a while


@dataclass(frozen=True)
class GroupPlan:
    processes: int
    host: str
    port: int
    http_port: int | None  # None: no HTTP gateway
    stop_timeout_s: float  # drain + grace + a margin: then a child that has not exited is killed
    ready_file: Path | None
    argv: list[str]  # the `serve` command line, as given (its flags are overridden per child)


@dataclass
class Child:
    slot: int
    proc: subprocess.Popen
    ready_file: Path
    started: float = field(default_factory=time.monotonic)
    serving: bool = False


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT, not listening: it holds the port for
    the children (port 0: a free one) and takes no connections itself."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it (a graceful stop) if the supervisor dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"{code} ({signal.Signals(-code).name})"
        except ValueError:
            return str(code)
    return str(code)


class Supervisor:
    def __init__(self, plan: GroupPlan, announce: Callable[[str], None] = print) -> None:
        self.plan = plan
        self.announce = announce
        self.children: dict[int, Child] = {}
        self._restart_at: dict[int, float] = {}  # slot -> when its replacement starts
        self._failures: dict[int, int] = {}  # slot -> quick deaths in a row
        self._stopping = False
        self._serial = 0

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        sockets = [reserve_port(self.plan.host, self.plan.port)]
        self.port = sockets[0].getsockname()[1]
        self.http_port = None
        if self.plan.http_port is not None:
            sockets.append(reserve_port(self.plan.host, self.plan.http_port))
            self.http_port = sockets[1].getsockname()[1]
        self.dir = Path(tempfile.mkdtemp(prefix="tickserve-group-"))
        (self.dir / "metrics").mkdir()
        try:
            for slot in range(self.plan.processes):
                self._start(slot)
            code = self._wait_all_serving()
            if code is not None:
                self._stop_all()
                return code
            self._announce_serving()
            while not self._stopping:
                self._watch()
                time.sleep(0.1)
            return self._stop_all()
        finally:
            for sock in sockets:
                sock.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _on_signal(self, signum, frame) -> None:
        self._stopping = True

    def _start(self, slot: int) -> Child:
        self._serial += 1
        ready = self.dir / f"ready-{slot}-{self._serial}"
        command = [
            sys.executable,
            "-m",
            "tickserve.cli",
            *self.plan.argv,
            *("--processes", "1", "--port", str(self.port), "--ready-file", str(ready)),
            *("--http-port", str(self.http_port if self.http_port is not None else -1)),
        ]
        env = {**os.environ, GROUP_ENV: str(self.dir), "PROMETHEUS_MULTIPROC_DIR": str(self.dir / "metrics")}
        proc = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent)  # noqa: PLW1509 - no threads here
        child = self.children[slot] = Child(slot, proc, ready)
        return child

    def _wait_all_serving(self) -> int | None:
        """None once every child serves; else the exit code of the start that failed."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(self._check_serving(c) for c in self.children.values()):
            for child in self.children.values():
                code = child.proc.poll()
                if code is not None:
                    log.error("child process pid %d exited with code %s while starting", child.proc.pid, code)
                    return code or 1
            if self._stopping:
                return 0
            if time.monotonic() > deadline:
                log.error("the children did not all serve within %.0f s", START_TIMEOUT_S)
                return 1
            time.sleep(0.05)
        return None

    def _check_serving(self, child: Child) -> bool:
        if not child.serving and child.ready_file.exists() and child.ready_file.read_text().strip():
            child.serving = True
        return child.serving

    def _announce_serving(self) -> None:
        pids = ", ".join(str(c.proc.pid) for c in self.children.values())
        line = (
            f"tickserve process group serving on {self.plan.host}:{self.port}: {len(self.children)} processes ({pids})"
        )
        self.announce(line + (f", HTTP on port {self.http_port}" if self.http_port is not None else ""))
        if self.plan.ready_file is not None:
            self.plan.ready_file.write_text(f"{self.port}\n")

    def _watch(self) -> None:
        now = time.monotonic()
        for slot, child in list(self.children.items()):
            if not child.serving and self._check_serving(child):
                log.warning("child process pid %d (slot %d) serving", child.proc.pid, slot)
            code = child.proc.poll()
            if code is None or slot in self._restart_at:
                continue
            lived = now - child.started
            failures = self._failures[slot] = 1 if lived >= STABLE_AFTER_S else self._failures.get(slot, 0) + 1
            delay = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (failures - 1))
            log.warning(
                "child process pid %d (slot %d) exited with code %s after %.1f s; restarting it in %.1f s",
                child.proc.pid,
                slot,
                _exit_text(code),
                lived,
                delay,
            )
            self._forget_metrics(child.proc.pid)
            self._restart_at[slot] = now + delay
        for slot, when in list(self._restart_at.items()):
            if now >= when:
                del self._restart_at[slot]
                child = self._start(slot)
                log.warning("child process pid %d started in slot %d", child.proc.pid, slot)

    def _forget_metrics(self, pid: int) -> None:
        """A dead child's live gauges (open streams) leave the sums; its counters stay counted."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(self.dir / "metrics"))

    def _stop_all(self) -> int:
        live = [c for c in self.children.values() if c.proc.poll() is None]
        self.announce(f"tickserve process group stopping: SIGTERM to {len(live)} processes")
        for child in live:
            child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.plan.stop_timeout_s
        codes = []
        for slot, child in self.children.items():
            if slot in self._restart_at:  # died before the stop, already logged
                continue
            try:
                codes.append(child.proc.wait(timeout=max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                log.error("child process pid %d did not stop in time: killed", child.proc.pid)
                child.proc.kill()
                codes.append(child.proc.wait())
        failed = [c for c in codes if c != 0]
        if failed:
            log.error("child processes exited with codes %s", ", ".join(_exit_text(c) for c in failed))
        return 0 if not failed else 1
