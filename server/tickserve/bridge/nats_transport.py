"""The built-in bridge transport: NATS JetStream through nats-py (the `bridge` extra).

A plugin like any other (registered by `plugins/manager.py` as a built-in): the module imports
`nats` only when a bridge connects, so the server, and `tickserve plugins`, never need it.

- Input: a stream holding `input_subject`, read by a durable pull consumer with explicit
  acknowledgements and at most `max_in_flight` unacknowledged messages (back-pressure: the
  broker delivers no more until some are acknowledged). Position = stream sequence.
- At connect, the durable consumer is recreated to deliver from its ack floor + 1. A durable
  consumer left as it was would, after a crash, deliver messages past the unacknowledged ones
  first and redeliver those only when their ack wait expires: out of order for the sessions'
  per-instrument state. Recreating it keeps its place (the ack floor) and the order.
- Output: a stream holding `output_subject` and `dead_letter_subject` with a duplicate window
  of `dedup_window_s`; every publish carries `Nats-Msg-Id` and is awaited to its PubAck.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from ..errors import TransportError
from ..plugin import hookimpl
from .transport import BridgeTransport, InMessage, OutMessage, ResumePoint

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 30.0  # every PubAck of one batch; longer means the broker is not storing
REPLAY_CHUNK = 500


def _nats():
    try:
        import nats
        import nats.js.api
        import nats.js.errors
    except ImportError as exc:  # the bridge extra is not installed
        raise TransportError(
            f"the NATS transport needs nats-py: pip install 'tickserve[bridge]' ({exc})", field="transport"
        ) from None
    return nats


class NatsTransport(BridgeTransport):
    name = "nats"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.nc = None
        self.js = None
        self.sub = None

    async def connect(self) -> ResumePoint:
        nats = _nats()
        api = nats.js.api
        s = self.settings

        async def on_error(exc: Exception) -> None:
            log.warning("nats: %s", exc)

        try:
            self.nc = await nats.connect(s.url, error_cb=on_error, connect_timeout=5, max_reconnect_attempts=5)
        except Exception as exc:
            raise TransportError(f"url: cannot connect to {s.url}: {exc}", field="url") from None
        self.js = js = self.nc.jetstream()
        try:
            await self._ensure_stream(s.input_stream, [s.input_subject], None)
            await self._ensure_stream(s.output_stream, [s.output_subject, s.dead_letter_subject], s.dedup_window_s)
            state = (await js.stream_info(s.input_stream)).state
            try:
                floor = (await js.consumer_info(s.input_stream, s.durable)).ack_floor.stream_seq
                await js.delete_consumer(s.input_stream, s.durable)
            except nats.js.errors.NotFoundError:
                floor = 0  # a new bridge: from the stream's first message
            resume = ResumePoint(first=max(state.first_seq, 1), next=max(floor + 1, state.first_seq, 1))
            await js.add_consumer(
                s.input_stream,
                api.ConsumerConfig(
                    durable_name=s.durable,
                    deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=resume.next,
                    ack_policy=api.AckPolicy.EXPLICIT,
                    ack_wait=s.ack_wait_s,
                    max_ack_pending=s.max_in_flight,
                    filter_subject=s.input_subject,
                ),
            )
            self.sub = await js.pull_subscribe_bind(durable=s.durable, stream=s.input_stream)
        except nats.errors.Error as exc:
            raise TransportError(f"JetStream: {exc}") from None
        return resume

    async def _ensure_stream(self, name: str, subjects: list[str], dedup_window_s: float | None) -> None:
        nats = _nats()
        try:
            await self.js.stream_info(name)
            return
        except nats.js.errors.NotFoundError:
            pass
        config = nats.js.api.StreamConfig(name=name, subjects=subjects)
        if dedup_window_s is not None:
            config.duplicate_window = dedup_window_s
        await self.js.add_stream(config)

    async def replay(self, start: int, stop: int) -> AsyncIterator[list[InMessage]]:
        if start >= stop:
            return
        nats = _nats()
        api = nats.js.api
        s = self.settings
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            ack_policy=api.AckPolicy.NONE,
            filter_subject=s.input_subject,
            inactive_threshold=60.0,
        )
        sub = await self.js.pull_subscribe(s.input_subject, stream=s.input_stream, config=config)
        try:
            while True:
                try:
                    msgs = await sub.fetch(REPLAY_CHUNK, timeout=2.0)
                except nats.errors.TimeoutError:
                    return  # nothing more before `stop` (removed messages): replayed all there is
                chunk = [_in(m) for m in msgs]
                chunk = [m for m in chunk if m.position < stop]
                if chunk:
                    yield chunk
                if len(chunk) < len(msgs) or (chunk and chunk[-1].position >= stop - 1):
                    return
        finally:
            await sub.unsubscribe()

    async def fetch(self, max_messages: int, timeout: float) -> list[InMessage]:
        nats = _nats()
        try:
            msgs = await self.sub.fetch(max_messages, timeout=timeout)
        except nats.errors.TimeoutError:
            return []
        except nats.errors.Error as exc:
            raise TransportError(f"fetch: {exc}") from None
        return [_in(m) for m in msgs]

    async def publish(self, messages: list[OutMessage]) -> int:
        nats = _nats()
        js = self.js
        try:
            futures = []
            for m in messages:
                headers = {"Nats-Msg-Id": m.dedup_id, **m.headers}
                futures.append(await js.publish_async(m.subject, m.payload, headers=headers))
            acks = await asyncio.wait_for(asyncio.gather(*futures), PUBLISH_TIMEOUT_S)
        except (TimeoutError, nats.errors.Error) as exc:
            raise TransportError(f"publish: not every output was stored ({type(exc).__name__}: {exc})") from None
        return sum(1 for a in acks if a.duplicate)

    async def ack(self, messages: list[InMessage]) -> None:
        nats = _nats()
        try:
            for m in messages:
                await m.handle.ack()
            await self.nc.flush()
        except nats.errors.Error as exc:
            raise TransportError(f"ack: {exc}") from None

    async def close(self) -> None:
        # acknowledgements are flushed as they are sent (`ack`), so nothing is left to drain; nats-py's
        # drain() waits on the pull subscription's pending fetch, which never ends
        if self.nc is not None and not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.flush(), 5)
            except Exception as exc:  # the broker went away: nothing more can reach it anyway
                log.warning("nats: flush at close: %s", exc)
            await self.nc.close()


def _in(msg) -> InMessage:
    meta = msg.metadata
    return InMessage(
        position=meta.sequence.stream,
        payload=msg.data,
        headers=msg.headers or {},
        deliveries=meta.num_delivered,
        lag=meta.num_pending,
        handle=msg,
    )


@hookimpl
def tickserve_bridge_transports() -> list[type[BridgeTransport]]:
    return [NatsTransport]
