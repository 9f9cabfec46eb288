"""Input message bytes -> ticks, in the contract's encodings; a message that does not decode is a
`DeadLetter` with its reason (the bridge publishes it to the dead-letter subject and goes on).

The encoding is the message's `Tickserve-Encoding` header, else `[bridge] encoding`:

- `tick`, `batch`, `columns`: the bytes of a `tickserve.v1.Tick`, `TickBatch` or `TickColumns`;
- `request`: a `StreamSignalsRequest` (its tick, batch or columns; a config is refused: the
  bridge's model is `[bridge] model`);
- `json`: the protobuf JSON mapping of a `StreamSignalsRequest` (`{"columns": {...}}`,
  `{"batch": {"ticks": [...]}}`, `{"tick": {...}}`) or of a bare `Tick` (`{"instrument": ...}`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from tickserve_proto.v1 import tickserve_pb2 as pb

from ..core.columnar import TickBlock
from ..errors import InvalidArgument, TickserveError
from ..serving.tick_input import block_from_proto

ENCODING_HEADER = "Tickserve-Encoding"
ENCODINGS = ("tick", "batch", "columns", "request", "json")


@dataclass(frozen=True, slots=True)
class Decoded:
    """One input message's ticks: protobuf ticks (a Tick or TickBatch) or a block (TickColumns)."""

    ticks: list[pb.Tick] | None = None
    block: TickBlock | None = None

    def __len__(self) -> int:
        return len(self.block) if self.block is not None else len(self.ticks or ())


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str  # names the encoding and what is wrong, as an error message does


def decode(payload: bytes, headers: Mapping[str, str], default: str, max_ticks: int) -> Decoded | DeadLetter:
    """The ticks of one input message, or why it has none a session could take."""
    encoding = headers.get(ENCODING_HEADER, default)
    try:
        if encoding not in ENCODINGS:
            raise InvalidArgument(
                f"{ENCODING_HEADER}: must be one of {', '.join(ENCODINGS)}, got {encoding!r}", field=ENCODING_HEADER
            )
        decoded = _decode(payload, encoding)
    except TickserveError as exc:
        return DeadLetter(exc.message)
    if len(decoded) > max_ticks:
        return DeadLetter(
            f"{encoding}: {len(decoded)} ticks in one message, the limit is max_ticks_per_message={max_ticks}"
        )
    return decoded


def _decode(payload: bytes, encoding: str) -> Decoded:
    if encoding == "json":
        return _from_request(_json_request(payload), "json")
    kind = {"tick": pb.Tick, "batch": pb.TickBatch, "columns": pb.TickColumns, "request": pb.StreamSignalsRequest}
    msg = kind[encoding]()
    try:
        msg.ParseFromString(payload)
    except (DecodeError, ValueError) as exc:  # ValueError: a string field that is not UTF-8
        raise InvalidArgument(
            f"{encoding}: the bytes are not a valid {msg.DESCRIPTOR.full_name} message ({exc})", field=encoding
        ) from None
    if encoding == "tick":
        return Decoded(ticks=[msg])
    if encoding == "batch":
        return Decoded(ticks=list(msg.ticks))
    if encoding == "columns":
        return Decoded(block=block_from_proto(msg))  # InvalidArgument naming the array for a malformed one
    return _from_request(msg, "request")


def _json_request(payload: bytes) -> pb.StreamSignalsRequest:
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"json: not a JSON document ({exc})", field="json") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"json: must be an object, got {type(data).__name__}", field="json")
    request = pb.StreamSignalsRequest()
    try:
        if "instrument" in data:  # a bare Tick
            json_format.ParseDict(data, request.tick)
        else:
            json_format.ParseDict(data, request)
    except json_format.ParseError as exc:
        raise InvalidArgument(f"json: not a Tick or StreamSignalsRequest in the JSON mapping ({exc})") from None
    return request


def _from_request(request: pb.StreamSignalsRequest, encoding: str) -> Decoded:
    which = request.WhichOneof("payload")
    if which == "tick":
        return Decoded(ticks=[request.tick])
    if which == "batch":
        return Decoded(ticks=list(request.batch.ticks))
    if which == "columns":
        return Decoded(block=block_from_proto(request.columns))
    if which == "config":
        raise InvalidArgument(
            f"{encoding}: a StreamConfig is not taken here: the bridge's model is [bridge] model", field="config"
        )
    raise InvalidArgument(f"{encoding}: the message carries none of tick, batch or columns", field="payload")
