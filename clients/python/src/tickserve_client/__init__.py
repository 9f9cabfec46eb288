"""Python client for tickserve. Needs only grpcio and protobuf.

from tickserve_client import TickserveClient, make_tick, signal_dict

with TickserveClient("127.0.0.1:50051") as client:
    for result in client.stream_signals(ticks, model="signal-lgbm"):
        s = signal_dict(result.signal)  # enums by name: s["action"] == "BUY"
        print(s["action"], s["edge_score"])

README.md beside pyproject.toml has a quick start.
"""

from tickserve_proto.contract import MAX_MESSAGE_BYTES, side_value, tick_message

from .client import (
    TickserveClient,
    columns_from_ticks,
    columns_message,
    frame_columns,
    make_tick,
    signal_dict,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "TickserveClient",
    "columns_from_ticks",
    "columns_message",
    "frame_columns",
    "make_tick",
    "side_value",
    "signal_dict",
    "tick_message",
]
