"""What the .proto files cannot say, in one place for the client and the server.

- `MAX_MESSAGE_BYTES`: the largest message either side sends or accepts by default
  (the server's `max_message_bytes` setting may raise what it accepts);
- the mapping of a tick's aggressor (+1 buy, -1 sell, 0 unknown or no trade) to the `Side` enum;
- `tick_message`: any tick-like object as a `Tick` message.

Only grpcio and protobuf are needed, as for the rest of the client.
"""

from __future__ import annotations

from tickserve_proto.v1 import tickserve_pb2 as pb

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
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
