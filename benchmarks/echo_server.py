"""The gRPC floor: a bare grpc.aio bidirectional echo with tickserve's server options.

Answers each request with a fixed payload of a typical StreamSignalsResponse's
size, doing no work, so its latency is what gRPC itself costs.
Usage: python echo_server.py PORT_FILE RESPONSE_BYTES
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc

from tickserve_proto.contract import MAX_MESSAGE_BYTES

METHOD = "/bench.Echo/Stream"


async def main(port_file: Path, response_bytes: int) -> None:
    payload = b"x" * response_bytes

    async def stream(request_iterator, context):
        async for _ in request_iterator:
            yield payload

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Stream": grpc.stream_stream_rpc_method_handler(stream)}
    )
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    port_file.write_text(f"{port}\n")
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
