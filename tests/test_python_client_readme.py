"""The Python client's README quick start runs as written against a real server."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from tickserve_client import signal_dict
from tickserve_proto.v1 import tickserve_pb2 as pb

README = Path(__file__).resolve().parent.parent / "clients" / "python" / "README.md"


def test_the_quick_start_streams_and_prints_named_actions(server):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    code = code.replace("127.0.0.1:50051", server.address)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    lines = out.getvalue().splitlines()
    assert len(lines) == 100
    assert all(line.split()[2] in {"BUY", "HOLD", "SELL"} for line in lines), lines[:3]
    assert [int(line.split()[1]) for line in lines] == list(range(100))  # one answer per tick, in order


def test_signal_dict_names_every_enum_and_keeps_an_absent_sequence_absent():
    s = signal_dict(pb.Signal(action=pb.ACTION_SELL, strength=pb.STRENGTH_STRONG, risk=pb.RISK_HIGH, features=[1.5]))
    assert (s["action"], s["strength"], s["risk"], s["urgency"]) == ("SELL", "STRONG", "HIGH", "UNSPECIFIED")
    assert s["sequence"] is None and s["features"] == [1.5]
    assert signal_dict(pb.Signal(sequence=0))["sequence"] == 0
