"""The command line that starts a `tickserve serve` process: one place for the demo, the
benchmarks and the tests that run a real server beside them."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

# this Python, this installation's command: what `tickserve` runs
TICKSERVE = (sys.executable, "-m", "tickserve.cli")


def serve_command(models: Path, ready_file: Path, *extra: str, launcher: Sequence[str] = TICKSERVE) -> list[str]:
    """`tickserve serve` on a free port that it writes to `ready_file` once it serves."""
    return [*launcher, "serve", "--models", str(models), "--port", "0", "--ready-file", str(ready_file), *extra]
