"""One input message's ticks -> the messages to publish, through the functions StreamSignals uses.

The bridge serves one stream: a `SignalSession` whose per-instrument state lives as long as the
bridge. A Tick or TickBatch goes through `routes.run_ticks` (the columnar route of a big
message, the per-tick path for a small one) and a TickColumns through `process_columns`, then
the converters: the same bits as a StreamSignals stream that was sent the same messages.

De-duplication ids (`Nats-Msg-Id`): a tick's result is named by the tick, so that the one
answer to a redelivered tick is stored once:

- a signal: `<sequence>@<instrument>`;
- a per-tick error: `<sequence>!<code>@<instrument>` (a resent tick answered ALREADY_EXISTS is
  another answer than the original's signal; a rejected tick may be resent corrected);
- a tick without a sequence (or with an instrument a header cannot carry): `#<position>.<i>`,
  the input message's position and the tick's index in it, the same on every delivery;
- a SignalColumns (`[bridge] output = "columns"`): `#<position>`; a dead letter `dead#<position>`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from google.protobuf import json_format

from tickserve_proto.v1 import tickserve_pb2 as pb

from ..core.columnar import TickBlock, prepare_columns, process_columns
from ..core.session import SignalSession
from ..core.validation import MAX_INSTRUMENT_LENGTH
from ..serving import converters, routes, tick_input
from .codec import DeadLetter, Decoded
from .transport import OutMessage

POSITION_HEADER = "Tickserve-Input-Position"
REASON_HEADER = "Tickserve-Reason"


@dataclass(frozen=True, slots=True)
class Answer:
    """What one input message produced: the messages to publish and how many ticks it held."""

    messages: list[OutMessage]
    ticks: int
    errors: int  # ticks answered with a per-tick error


class BridgeEngine:
    def __init__(self, session: SignalSession, *, subject: str, dead_subject: str, output: str, fmt: str) -> None:
        self.session = session
        self.subject = subject
        self.dead_subject = dead_subject
        self.columns_out = output == "columns"
        self.json_out = fmt == "json"
        self.name, self.version = session.model.name, session.model.version

    def warm(self, decoded: Decoded) -> None:
        """Take a message's ticks into the state without answering them (the replay at start):
        the same admission and feature updates as `answer`, no model call."""
        session = self.session
        if decoded.block is not None:
            prepare_columns(session, decoded.block)
            return
        for _, part in tick_input.blocks_from_ticks(decoded.ticks):
            if isinstance(part, TickBlock):
                prepare_columns(session, part)
            else:
                session.prepare([part])

    def answer(self, decoded: Decoded, position: int) -> Answer:
        if decoded.block is not None:
            block = decoded.block
            results = process_columns(self.session, block)
            if self.columns_out:
                msg = converters.columns_to_proto(results, block, self.name, self.version)
                out = OutMessage(self.subject, self._encode(msg), f"#{position}", {POSITION_HEADER: str(position)})
                return Answer([out], len(block), len(results.rejections))
            answers = converters.tick_results_to_proto(results, block, self.name, self.version)
        else:
            answers, _, _ = routes.run_ticks(self.session, decoded.ticks)
        messages = [OutMessage(self.subject, self._encode(r), dedup_id(r, position, i)) for i, r in enumerate(answers)]
        errors = sum(1 for r in answers if r.HasField("error"))
        return Answer(messages, len(answers), errors)

    def dead_letter(self, letter: DeadLetter, payload: bytes, position: int) -> OutMessage:
        # a header value is one line: the reason's line breaks (e.g. protobuf's) become spaces
        reason = " ".join(letter.reason.split())
        headers = {REASON_HEADER: reason, POSITION_HEADER: str(position)}
        return OutMessage(self.dead_subject, payload, f"dead#{position}", headers)

    def _encode(self, msg) -> bytes:
        if self.json_out:
            return json.dumps(json_format.MessageToDict(msg), separators=(",", ":")).encode()
        return msg.SerializeToString()


def dedup_id(result: pb.TickResult, position: int, index: int) -> str:
    """The de-duplication id of one tick's result (module docstring)."""
    if result.HasField("signal"):
        item, code = result.signal, ""
    else:
        item, code = result.error, f"!{result.error.code}"
    name = item.instrument
    if not item.HasField("sequence") or not name or len(name) > MAX_INSTRUMENT_LENGTH or not name.isprintable():
        return f"#{position}.{index}"
    return f"{item.sequence}{code}@{name}"
