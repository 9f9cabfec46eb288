"""nginx's access log of a cluster (the `grpc` format of nginx.conf.template), read back: which
replica each call went to, and when it began and ended. A call is logged once, when it ends."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_LINE = re.compile(
    r'^(?P<msec>[\d.]+) \S+ "(?P<method>\S+) (?P<path>\S+) [^"]*" (?P<status>\d+) '
    r"up=(?P<up>.*?) upstatus=(?P<upstatus>.*?) t=(?P<t>[\d.]+) grpc=(?P<grpc>\S*)$"
)


@dataclass(frozen=True)
class CallRecord:
    path: str  # "/tickserve.v1.SignalService/StreamSignals"
    status: int  # nginx's HTTP status to the client
    upstreams: tuple[str, ...]  # every replica tried, in order ("127.0.0.1:P"); the last one served
    started: float  # epoch seconds (time.time())
    ended: float

    @property
    def replica(self) -> str:
        return self.upstreams[-1] if self.upstreams else ""


def read_calls(path: Path, method: str = "") -> list[CallRecord]:
    """The calls logged so far, optionally only those whose path ends with `/method`."""
    records = []
    for line in path.read_text(errors="replace").splitlines():
        m = _LINE.match(line.strip())
        if m is None or (method and not m["path"].endswith("/" + method)):
            continue
        ups = tuple(u.strip() for u in re.split(r"[,:]\s", m["up"]) if u.strip() and u.strip() != "-")
        ended = float(m["msec"])
        records.append(CallRecord(m["path"], int(m["status"]), ups, ended - float(m["t"]), ended))
    return records
