"""The health supervisor: nginx open source has no active health checks, so this polls each
replica's `grpc.health.v1.Health/Check` and, when the set of SERVING replicas changes, rewrites
the upstream (the others marked `down`) and reloads nginx. A draining replica (`serve --drain`,
NOT_SERVING while still serving) so stops getting new streams before it refuses any."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING


@dataclass
class HealthState:
    """What the supervisor last applied to nginx: address -> SERVING, and how many reloads."""

    serving: dict[str, bool] = field(default_factory=dict)
    reloads: int = 0
    applied_at: float = 0.0


class HealthSupervisor:
    """A thread: poll every `interval` s, call `apply(serving)` on a change (and once at start)."""

    def __init__(
        self,
        addresses: list[str],
        apply: Callable[[dict[str, bool]], None],
        *,
        interval: float = 0.5,
        timeout: float = 1.0,
        on_change: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.addresses = list(addresses)
        self.apply = apply
        self.interval = interval
        self.timeout = timeout
        self.on_change = on_change
        self.state = HealthState()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._channels = {a: grpc.insecure_channel(a) for a in self.addresses}
        self._stubs = {a: health_pb2_grpc.HealthStub(c) for a, c in self._channels.items()}
        self._thread = threading.Thread(target=self._run, name="tickserve-health", daemon=True)

    def check(self, address: str) -> bool:
        """SERVING on the server's overall status (""): anything else, or no answer, is down."""
        try:
            reply = self._stubs[address].Check(health_pb2.HealthCheckRequest(service=""), timeout=self.timeout)
        except grpc.RpcError:
            return False
        return reply.status == SERVING

    def poll_once(self) -> bool:
        """Check every replica; apply a changed set. True when it changed."""
        now = {a: self.check(a) for a in self.addresses}
        with self._cond:
            if now == self.state.serving:
                return False
        before = self.state.serving
        self.apply(now)
        with self._cond:
            self.state = HealthState(dict(now), self.state.reloads + 1, time.monotonic())
            self._cond.notify_all()
        if self.on_change is not None and before:  # changes, not the first look
            for address, up in now.items():
                if before.get(address) != up:
                    self.on_change(address, up)
        return True

    def start(self) -> None:
        self.poll_once()  # the first upstream reflects real health before anyone connects
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll_once()
            except Exception:  # a failed reload must not end supervision: retried on the next poll
                log.exception("health supervisor: applying the replicas' health failed")

    def wait_for(self, predicate: Callable[[HealthState], bool], timeout: float) -> HealthState:
        """Block until the applied state satisfies `predicate` (tests, and stop's ordering)."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.state), timeout):
                raise TimeoutError(f"health supervisor: state {self.state.serving} after {timeout:g} s")
            return self.state

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for channel in self._channels.values():
            channel.close()
