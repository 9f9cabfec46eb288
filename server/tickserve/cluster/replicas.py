"""`tickserve serve` replicas on free loopback ports, each with `--drain`: started together,
stopped together (SIGTERM: health NOT_SERVING for the drain, then the grace stop)."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..cli.launch import serve_command
from ..errors import FailedPrecondition


@dataclass
class Replica:
    index: int
    proc: subprocess.Popen
    ready_file: Path
    log_file: Path
    port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


def start_replicas(
    models: Path, count: int, run_dir: Path, *, drain: float, grace: float, serve_args: tuple[str, ...] = ()
) -> list[Replica]:
    """Start `count` replicas at once (each loads the models in its own process) and wait for all."""
    replicas = []
    for i in range(count):
        ready = run_dir / f"replica-{i}.port"
        ready.unlink(missing_ok=True)
        log_file = run_dir / f"replica-{i}.log"
        cmd = serve_command(models, ready, "--drain", f"{drain:g}", "--grace", f"{grace:g}", *serve_args)
        with open(log_file, "ab") as out:
            # its own session: a Ctrl-C at the terminal reaches `tickserve cluster` alone, which
            # then drains the replicas in order instead of all of them dying at once
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        replicas.append(Replica(i, proc, ready, log_file))
    try:
        for r in replicas:
            r.port = _wait_ready(r, timeout=120.0)
    except BaseException:
        stop_replicas(replicas, timeout=5.0)
        raise
    return replicas


def _wait_ready(replica: Replica, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if replica.ready_file.exists():
            text = replica.ready_file.read_text().strip()
            if text:
                return int(text)
        if not replica.alive:
            tail = replica.log_file.read_text(errors="replace").strip().splitlines()[-3:]
            raise FailedPrecondition(
                f"replica {replica.index} exited with {replica.proc.returncode}: {' / '.join(tail)}"
            )
        time.sleep(0.05)
    raise FailedPrecondition(f"replica {replica.index} did not start serving within {timeout:g} s")


def stop_replicas(replicas: list[Replica], timeout: float) -> None:
    """SIGTERM to all at once (each drains, then stops), then wait; SIGKILL what outlives `timeout`."""
    for r in replicas:
        if r.alive:
            r.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for r in replicas:
        try:
            r.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            r.proc.kill()
            r.proc.wait(5)
