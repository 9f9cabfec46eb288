"""The bridge's loop: rebuild state, then fetch -> answer -> publish (stored) -> acknowledge.

At-least-once by construction, exactly-once downstream by de-duplication:

1. `connect` gives the resume point R: every input before R was answered and its outputs stored.
2. The session's state is rebuilt by replaying input messages before R through `warm` (the
   admission and feature updates of `answer`, no model call), from the stream's first retained
   message or the last `replay_messages` of them. Each instrument's features look back at most
   `MAX_LOOKBACK` ticks, so the state is exact when the replay holds each instrument's last
   `MAX_LOOKBACK` ticks before R (all of them with the default, replay_messages = 0).
3. Then, per fetched batch (at most `max_in_flight` messages): answer each message in order,
   publish every output (one per tick, each with its de-duplication id), wait until the broker
   has stored all of them, and only then acknowledge the batch's inputs, in order. A crash
   anywhere in between leaves the batch unacknowledged: the next start answers it again with
   the same state, so its outputs are the same bytes under the same ids and the broker drops
   the ones it already holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import TransportError
from ..settings import BridgeSettings
from .codec import DeadLetter, decode
from .engine import BridgeEngine
from .metrics import BridgeMetrics
from .transport import BridgeTransport, InMessage, OutMessage

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    """What one run did (the CLI reports it at exit; tests and the benchmark read it)."""

    replayed: int = 0
    resumed_at: int = 0
    messages: int = 0
    ticks: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    stale: list[int] = field(default_factory=list)  # positions redelivered after they were answered


class Bridge:
    def __init__(
        self,
        transport: BridgeTransport,
        engine: BridgeEngine,
        settings: BridgeSettings,
        metrics: BridgeMetrics | None = None,
    ) -> None:
        self.transport = transport
        self.engine = engine
        self.settings = settings
        self.metrics = metrics or BridgeMetrics()
        self.stats = RunStats()
        self._stop = asyncio.Event()
        self._next = 0  # the position the next new input message must have (or more: removed ones)

    def stop(self) -> None:
        """Finish the batch at hand (publish, acknowledge), then return from `run`."""
        self._stop.set()

    async def start(self) -> None:
        """Connect and rebuild the state; after it, `run` consumes."""
        resume = await self.transport.connect()
        self.stats.resumed_at = self._next = resume.next
        window = self.settings.replay_messages
        start = resume.first if window <= 0 else max(resume.first, resume.next - window)
        s = self.settings
        async for chunk in self.transport.replay(start, resume.next):
            for m in chunk:
                decoded = decode(m.payload, m.headers, s.encoding, s.max_ticks_per_message)
                if not isinstance(decoded, DeadLetter):  # a dead letter never reached the state
                    self.engine.warm(decoded)
            self.stats.replayed += len(chunk)
            self.metrics.replayed.inc(len(chunk))

    async def run(self, on_batch: Callable[[RunStats], None] | None = None) -> RunStats:
        s = self.settings
        while not self._stop.is_set():
            batch = await self.transport.fetch(s.max_in_flight, timeout=0.5)
            if not batch:
                continue
            self.metrics.in_flight.set(len(batch))
            await self._answer(batch)
            self.metrics.in_flight.set(0)
            if on_batch is not None:
                on_batch(self.stats)
        return self.stats

    async def _answer(self, batch: list[InMessage]) -> None:
        s, m, stats = self.settings, self.metrics, self.stats
        outputs: list[OutMessage] = []
        ticks = errors = dead = 0
        for msg in batch:
            if msg.deliveries > 1:
                m.redeliveries.inc()
            if msg.position < self._next:
                # answered before (its acknowledgement was lost or came late): its outputs are
                # stored, and the state already holds its ticks; acknowledging it is all that is left
                stats.stale.append(msg.position)
                continue
            self._next = msg.position + 1
            decoded = decode(msg.payload, msg.headers, s.encoding, s.max_ticks_per_message)
            if isinstance(decoded, DeadLetter):
                outputs.append(self.engine.dead_letter(decoded, msg.payload, msg.position))
                dead += 1
                continue
            answer = self.engine.answer(decoded, msg.position)
            outputs += answer.messages
            ticks += answer.ticks
            errors += answer.errors
        duplicates = await self.transport.publish(outputs) if outputs else 0
        await self.transport.ack(batch)
        stats.messages += len(batch)
        stats.ticks += ticks
        stats.dead_letters += dead
        stats.duplicates += duplicates
        m.messages.inc(len(batch))
        m.acks.inc(len(batch))
        m.ticks.inc(ticks)
        m.tick_errors.inc(errors)
        m.dead_letters.inc(dead)
        m.published.inc(len(outputs))
        m.duplicates.inc(duplicates)
        if batch[-1].lag >= 0:
            m.lag.set(batch[-1].lag)

    async def close(self) -> None:
        try:
            await self.transport.close()
        except TransportError as exc:
            log.warning("bridge: closing the transport: %s", exc)
