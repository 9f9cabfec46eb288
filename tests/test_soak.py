"""A short soak in the suite: 32 concurrent streams, 40,000 ticks, random client disconnects and
resumes against `tickserve serve` in its own process; every tick answered exactly once.

The same code as `benchmarks/soak.py` (run that for the 1,000,000-tick version; figures in
benchmarks/SOAK.md).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from benchmarks.soak import ServerProcess, SoakConfig, run_soak

from .conftest import MODEL

OUTPUT = Path(__file__).resolve().parent / "output"


def test_soak_with_random_disconnects_loses_and_duplicates_nothing(model_repo, tmp_path):
    # a disconnect after about one message in ten: ~1 per stream (each sends ~10 messages)
    cfg = SoakConfig(ticks=40_000, streams=32, model=MODEL, disconnect_rate=0.1, seed=7)
    with ServerProcess(model_repo, tmp_path) as server:
        result = asyncio.run(run_soak(server.address, cfg, server))
        exit_code = server.stop()
    report = f"soak (tests/test_soak.py): {cfg}\n{result.table()}\nserver exit code after SIGTERM: {exit_code}\n"
    print("\n" + report)
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "soak.txt").write_text(report)

    assert (result.lost, result.duplicated) == (0, 0)
    assert result.sent == result.answered == cfg.ticks and result.never_sent == 0
    assert result.unexpected == 0, "an answer carried another sequence number than the next one sent"
    assert result.tick_errors == 0 and result.unanswered_at_clean_end == 0
    assert result.warmup_mismatches == 0, "warmed_up is not false for exactly the first 49 ticks per instrument"
    assert not result.failures, result.failures
    disconnects = sum(result.disconnects.values())
    assert disconnects >= 10 and result.resent > 0, "the run did not exercise resuming"
    assert result.connections == cfg.streams + disconnects
    assert result.cold_answers > 0  # every resumed stream starts cold
    assert exit_code == 0
