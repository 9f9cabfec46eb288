"""The API of a bridge transport: what the bridge needs from a message broker, and nothing more.

A transport plugin implements the hook `tickserve_bridge_transports` (plugins/hookspecs.py) and
returns `BridgeTransport` subclasses; `tickserve bridge` picks one by `[bridge] transport`. NATS
JetStream is built in (`nats_transport.py`, the reference implementation). The bridge's
guarantees (README, "The bridge") rest on five promises a transport keeps:

1. **Positions.** Every input message has a position in its input (JetStream: the stream
   sequence; Kafka: the offset of a one-partition topic) that is the same on every delivery,
   and `fetch` returns messages in position order (a redelivery of an older position may come
   later; the bridge acknowledges and skips it).
2. **A resume point.** `connect` returns the first position not yet acknowledged, and
   positions the consumer there, so that delivery restarts from it in order (JetStream: the
   durable consumer's ack floor + 1, the consumer recreated to start there; Kafka: the committed
   offset, the consumer seeking to it). Acknowledgements are in position order, so everything
   before the resume point has been answered and everything from it on has not been acknowledged.
3. **Replay.** `replay(start, stop)` reads the input's messages in [start, stop) again without
   consuming them: the bridge rebuilds its per-instrument state from them after a restart.
4. **Stored publishes, de-duplicated.** `publish` returns only once the broker has stored every
   message (JetStream: every PubAck; Kafka: every produce acknowledged with acks=all), and the
   broker drops a message whose `dedup_id` it has already stored within its window (JetStream:
   the `Nats-Msg-Id` header and the stream's duplicate window; Kafka has no such window: a Kafka
   transport gets the same effect by publishing a batch's outputs and committing its input
   offsets in one transaction, with an idempotent, transactional producer).
5. **Errors** are `tickserve.errors.TransportError`: the bridge then stops without acknowledging
   the input at hand, and the next start resumes from the resume point.

A Kafka transport (aiokafka or confluent-kafka) is one plugin: a subclass of `BridgeTransport`
with these six methods, returned by its `tickserve_bridge_transports` hook, and a test against a
real broker. Nothing here imports a broker's client: the server never needs one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..settings import BridgeSettings


@dataclass(frozen=True, slots=True)
class InMessage:
    """One input message as the broker delivered it."""

    position: int  # its place in the input, the same on every delivery
    payload: bytes
    headers: Mapping[str, str]
    deliveries: int = 1  # 1 on the first delivery, more on a redelivery
    lag: int = -1  # input messages after this one not yet delivered to the bridge (-1: unknown)
    handle: Any = field(default=None, compare=False)  # the transport's own object, for `ack`


@dataclass(frozen=True, slots=True)
class OutMessage:
    """One message to publish: a result, or a dead letter."""

    subject: str
    payload: bytes
    dedup_id: str  # the broker stores one message per id (within its window)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResumePoint:
    first: int  # the first position the broker still holds (older messages were removed)
    next: int  # the first position not acknowledged: the consumer delivers from here


class BridgeTransport(ABC):
    """A message broker as the bridge sees it; one instance per bridge process."""

    #: The name `[bridge] transport` selects it by.
    name: ClassVar[str] = ""

    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings

    @abstractmethod
    async def connect(self) -> ResumePoint:
        """Connect, create the input and output streams (topics) if missing, and position the
        consumer at the first unacknowledged input message (promise 2)."""

    @abstractmethod
    def replay(self, start: int, stop: int) -> AsyncIterator[list[InMessage]]:
        """The input messages at positions [start, stop), in order, in chunks, not consumed."""

    @abstractmethod
    async def fetch(self, max_messages: int, timeout: float) -> list[InMessage]:
        """Up to `max_messages` next input messages, in order; [] when none came within `timeout` s."""

    @abstractmethod
    async def publish(self, messages: list[OutMessage]) -> int:
        """Publish every message; return once the broker has stored all of them. The number the
        broker recognised as duplicates (already stored under their `dedup_id`)."""

    @abstractmethod
    async def ack(self, messages: list[InMessage]) -> None:
        """Acknowledge input messages, in the order given (their outputs are stored)."""

    @abstractmethod
    async def close(self) -> None:
        """Drain and disconnect (idempotent)."""
