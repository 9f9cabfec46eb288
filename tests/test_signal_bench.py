"""`make signal-bench` (benchmarks/signals.py) on a small slice, so the scoreboard cannot rot.

A benchmark, not a test of scores: this checks that it imports a data directory laid out
like ../shared/data, trains with walk-forward and writes every section of SIGNALS.md.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest

from tickserve.simulate import InstrumentSpec, simulate

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "benchmarks"))

import signals  # noqa: E402


def write_shared_layout(directory: Path, ticks: int, seed: int) -> None:
    """One simulated instrument as book10.csv.gz + trades.csv.gz + README, the shared data's layout."""
    frame = simulate(ticks, seed=seed, instruments=(InstrumentSpec("ONE", 250.0, 0.05),))
    directory.mkdir(parents=True)
    header = ["local_ts_ns"] + [
        f"{side}_{kind}_{n}" for side in ("bid", "ask") for n in range(1, 11) for kind in ("px", "qty")
    ]
    with gzip.open(directory / "book10.csv.gz", "wt") as f:
        f.write(",".join(header) + "\n")
        for i in range(len(frame)):
            cells = [str(frame.timestamp_ns[i])]
            for side in ("bid", "ask"):
                prices, sizes = getattr(frame, f"{side}_price")[i], getattr(frame, f"{side}_size")[i]
                for p, q in zip(prices, sizes):
                    cells += ["" if np.isnan(p) else repr(float(p)), "" if np.isnan(q) else repr(float(q))]
            f.write(",".join(cells) + "\n")
    trades = np.flatnonzero(frame.last_size > 0)
    with gzip.open(directory / "trades.csv.gz", "wt") as f:
        f.write("local_ts_ns,price,qty,aggressor\n")
        for i in trades:
            side = {1: "buy", -1: "sell"}.get(int(frame.aggressor[i]), "")
            f.write(f"{frame.timestamp_ns[i] - 1},{frame.last_price[i]!r},{frame.last_size[i]!r},{side}\n")
    (directory / "README.md").write_text("# ONE, simulated\n\nPrice tick size is 0.05.\n")


def test_the_scoreboard_writes_every_section(tmp_path):
    data = tmp_path / "data"
    write_shared_layout(data / "sim-one", 5_000, seed=3)
    (data / "empty-dir").mkdir()
    out = tmp_path / "SIGNALS.md"
    assert signals.main(["--data", str(data), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Signal scoreboard")
    rows = [line for line in text.splitlines() if line.startswith("| sim-one |")]
    assert len(rows) == 3 + 1  # three folds, and the instrument's row in the targets table
    assert "(test span)" in rows[2]
    for section in ("## Targets", "## Per instrument", "### sim-one", "## Skipped", "top ten features"):
        assert section in text
    assert "tick size 0.05 (README)" in text
    assert "empty-dir: no book file" in text
    assert "benchmarks/signals.py --data" in text  # the command that produced it


@pytest.mark.skipif(not (SHARED / "binance-btcusdt-usdm").is_dir(), reason="the shared real data is not here")
def test_the_scoreboard_on_a_slice_of_real_data(tmp_path):
    out = tmp_path / "SIGNALS.md"
    signals.main(["--data", str(SHARED), "--only", "binance-btcusdt-usdm", "--max-ticks", "8000", "--out", str(out)])
    text = out.read_text()
    assert len([line for line in text.splitlines() if line.startswith("| binance-btcusdt-usdm |")]) == 4
    assert "tick size 0.1 (README)" in text
