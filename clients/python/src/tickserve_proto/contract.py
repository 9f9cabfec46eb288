"""What the .proto files cannot say, in one place for the client and the server.

- `MAX_MESSAGE_BYTES`: the largest message either side sends or accepts by default
  (the server's `max_message_bytes` setting may raise what it accepts);
- the mapping of a tick's aggressor (+1 buy, -1 sell, 0 unknown or no trade) to the `Side` enum;
- `tick_message`: any tick-like object as a `Tick` message;
- keepalive for all-day streams, the client's and the server's halves of one agreement.

Only grpcio and protobuf are needed, as for the rest of the client.
"""

from __future__ import annotations

from tickserve_proto.v1 import tickserve_pb2 as pb

MAX_MESSAGE_BYTES = 16 * 1024 * 1024

# Keepalive. A stream can sit idle for minutes (a quiet market, a weekend), and a peer that dies
# without closing its TCP connection, or a NAT or load balancer that silently forgets it, is
# found by TCP alone only after hours. So a client pings an idle connection every
# CLIENT_KEEPALIVE_MS and gives it up when no answer comes within KEEPALIVE_TIMEOUT_MS (its call
# ends UNAVAILABLE: a resuming stream reconnects); the server accepts pings that often
# (SERVER_MIN_PING_INTERVAL_MS; gRPC's default refuses more than one per 5 minutes with a
# GOAWAY) and pings its own clients every SERVER_KEEPALIVE_MS to free the slots of dead ones.
CLIENT_KEEPALIVE_MS = 30_000
SERVER_KEEPALIVE_MS = 60_000
KEEPALIVE_TIMEOUT_MS = 10_000
SERVER_MIN_PING_INTERVAL_MS = 10_000
# A client reconnects at most this long after its server came back (gRPC's default: 120 s).
MAX_RECONNECT_BACKOFF_MS = 5_000


def client_channel_options(keepalive_ms: int = CLIENT_KEEPALIVE_MS) -> list[tuple[str, int]]:
    """The channel options every tickserve client uses (message size, keepalive, reconnection)."""
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", max(keepalive_ms, SERVER_MIN_PING_INTERVAL_MS)),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ]


def server_keepalive_options() -> list[tuple[str, int]]:
    """The server's half: accept the clients' pings, ping idle clients."""
    return [
        ("grpc.keepalive_time_ms", SERVER_KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS * 2),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", SERVER_MIN_PING_INTERVAL_MS),
        ("grpc.http2.max_pings_without_data", 0),
    ]
# The trade's aggressor as the project's ticks carry it (+1 buy, -1 sell, 0 unknown or no trade)
# -> the Side enum on the wire.
SIDES = {1: pb.SIDE_BUY, -1: pb.SIDE_SELL, 0: pb.SIDE_UNSPECIFIED}


def side_value(aggressor) -> int:
    """+1 (a buyer lifted the ask) -> SIDE_BUY, -1 (a seller hit the bid) -> SIDE_SELL, 0 or None
    (unknown, or no trade) -> SIDE_UNSPECIFIED; anything else is a ValueError."""
    if aggressor is None:
        return pb.SIDE_UNSPECIFIED
    try:
        return SIDES[aggressor]
    except (KeyError, TypeError):
        message = f"aggressor: must be +1 (buy), -1 (sell) or 0 (unknown or no trade), got {aggressor!r}"
        raise ValueError(message) from None


def tick_message(tick) -> pb.Tick:
    """A Tick message from any tick-like object (attributes instrument, timestamp_ns, last_price,
    last_size, bid_price, bid_size, ask_price, ask_size, sequence, and optionally aggressor: +1 buy,
    -1 sell, 0 unknown), e.g. tickserve.core.ticks.Tick."""
    msg = pb.Tick(
        instrument=tick.instrument,
        timestamp_ns=tick.timestamp_ns,
        last_price=tick.last_price,
        last_size=tick.last_size,
        bid_price=tick.bid_price,
        bid_size=tick.bid_size,
        ask_price=tick.ask_price,
        ask_size=tick.ask_size,
    )
    if tick.sequence is not None:
        msg.sequence = tick.sequence
    aggressor = getattr(tick, "aggressor", 0)
    if aggressor:
        msg.aggressor = side_value(aggressor)
    return msg
