"""Debian's nginx: found (installed with apt-get when missing and we are root), started in the
foreground on a run directory of its own, reloaded, stopped.

No root paths: `-p PREFIX -c PREFIX/nginx.conf -e PREFIX/error.log`, and the config puts the pid
file, the logs and every temp path under the prefix too. The master runs as our child (`daemon
off`), so a reload is a SIGHUP to the process we hold, not a pid-file lookup that could race.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from ..errors import FailedPrecondition
from .nginx_config import NginxSettings

DEBIAN_PACKAGE = "nginx-light"  # Debian 12: the small build, with the HTTP/2 and gRPC modules
CANDIDATES = ("/usr/sbin/nginx",)


def find_nginx(install: bool = True) -> tuple[str | None, str]:
    """(path, "") to nginx, installing Debian's package when missing and allowed (root, apt-get
    present); (None, reason) when it cannot be had. As find_chromium does for the dashboard."""
    for candidate in (shutil.which("nginx"), *CANDIDATES):
        if candidate and os.access(candidate, os.X_OK):
            return candidate, ""
    if not install:
        return None, "nginx is not installed"
    if shutil.which("apt-get") is None:
        return None, f"nginx is not installed and there is no apt-get to install it (package {DEBIAN_PACKAGE})"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return None, f"nginx is not installed and installing it needs root (apt-get install -y {DEBIAN_PACKAGE})"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", DEBIAN_PACKAGE]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return None, f"`{' '.join(cmd)}` failed: {' / '.join(tail)}"
    for candidate in (shutil.which("nginx"), *CANDIDATES):
        if candidate and os.access(candidate, os.X_OK):
            return candidate, ""
    return None, f"apt-get installed {DEBIAN_PACKAGE} but no nginx executable is on PATH or in /usr/sbin"


def require_nginx(install: bool = True) -> str:
    path, reason = find_nginx(install)
    if path is None:
        raise FailedPrecondition(f"tickserve cluster needs nginx: {reason}")
    return path


class Nginx:
    """One nginx master process on `settings` (its files written beforehand: nginx_config)."""

    def __init__(self, executable: str, settings: NginxSettings) -> None:
        self.executable = executable
        self.settings = settings
        self.proc: subprocess.Popen | None = None

    def _cmd(self, *extra: str) -> list[str]:
        s = self.settings
        return [self.executable, "-p", str(s.prefix), "-c", str(s.conf_file), "-e", str(s.error_log), *extra]

    def test_config(self) -> None:
        done = subprocess.run(self._cmd("-t", "-q"), capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise FailedPrecondition(f"nginx refused {self.settings.conf_file}: {done.stderr.strip()}")

    def start(self, timeout: float = 10.0) -> None:
        self.test_config()  # a bad config says why here, not as a port that never opens
        if os.geteuid() == 0:
            # a root master runs its workers as nobody: they must be able to enter the run directory
            self.settings.prefix.chmod(0o755)
        log = open(self.settings.prefix / "nginx.out", "ab")  # noqa: SIM115 (the child's for its life)
        self.proc = subprocess.Popen(self._cmd(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        host, port = self.settings.listen.rsplit(":", 1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise FailedPrecondition(f"nginx exited with {self.proc.returncode}: {self._error_tail()}")
            with socket.socket() as s:
                if s.connect_ex((host.strip("[]"), int(port))) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise FailedPrecondition(f"nginx did not listen on {self.settings.listen} within {timeout:g} s")

    def reload(self, timeout: float = 5.0) -> bool:
        """Re-read the config (the rewritten upstream): new workers take new connections; old
        ones finish the streams they hold (up to worker_shutdown_timeout).

        SIGHUP only asks; this returns once it is done (True): a new worker runs and every old
        one has said "gracefully shutting down" (closed its listening socket), so a stream
        opened after the return meets the new upstream. A drained replica must not get one
        more stream through a worker that has not heard yet. False: not seen within `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        before = self.workers()
        log_from = self._error_log_size()
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.workers()
            if now - before:
                said = self._error_log_since(log_from)
                if all(pid not in now or f"{pid}#{pid}: gracefully shutting down" in said for pid in before):
                    return True
            time.sleep(0.01)
        return False

    def workers(self) -> set[int]:
        """The master's child processes (Linux /proc): its workers."""
        master = self.proc.pid if self.proc is not None else -1
        found = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            if int(fields[1]) == master:
                found.add(int(stat.parent.name))
        return found

    def _error_log_size(self) -> int:
        try:
            return self.settings.error_log.stat().st_size
        except OSError:
            return 0

    def _error_log_since(self, offset: int) -> str:
        try:
            with open(self.settings.error_log, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGQUIT: graceful (open streams end first); SIGTERM, then SIGKILL, if it takes too long."""
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGQUIT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue

    def _error_tail(self, lines: int = 3) -> str:
        try:
            text = self.settings.error_log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no error log)"
        return " / ".join(text[-lines:])
