"""The dashboard in a real browser: `streamlit run` as a subprocess against the real test server, driven
in headless Chromium (Debian's /usr/bin/chromium, through Playwright's Python package).

When chromium is missing the test installs it with apt-get (only as root); it skips, saying why, only
where the browser cannot be had. Screenshots of every tab go to tests/output/dashboard/.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tickserve_dashboard import browser as br

OUT = Path(__file__).parent / "output" / "dashboard"
BUDGET_S = 90.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium() -> str:
    path, reason = br.find_chromium(install=True)
    if path is None:
        pytest.skip(f"no headless browser: {reason}")
    return path


def test_every_tab_in_headless_chromium(server, chromium):
    start = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    proc, url = br.start_dashboard(server.address, log=OUT / "streamlit.log")
    try:
        with br.browser(chromium) as b:
            result = br.tour(b, url, OUT, live_ticks=300, eval_ticks=2_000)
    finally:
        br.stop(proc)
    elapsed = time.perf_counter() - start
    checks = result.checks

    # Live Inference: a stream ran; the price chart, the three count charts and the signals table are on the page
    assert checks["live_metrics"]["Ticks answered"] == "300"
    assert checks["live_metrics"]["Signals"] == "300" and checks["live_metrics"]["Tick errors"] == "0"
    assert checks["live_charts"] >= 4 and checks["live_tables"] >= 1
    assert any("mid, microprice and signals" in t for t in checks["live_titles"])
    assert {"Signals by action", "Signals by strength", "Signals by risk"} <= set(checks["live_titles"])

    # Model Performance: Evaluate ran; the confusion-matrix heatmap and the per-class chart are drawn
    assert any(t.startswith("Confusion matrix") for t in checks["performance_titles"])
    assert checks["confusion_cells"] == 1
    assert "Per-class precision, recall and F1" in checks["performance_titles"]
    assert {"Accuracy", "Macro F1", "Log loss"} <= set(checks["performance_metrics"])

    # Feature Analysis: importance bars, feature values over time, distributions per class
    titles = checks["feature_titles"]
    assert any(t.startswith("Feature importance") for t in titles)
    assert any("feature values over time" in t for t in titles)
    assert any(t.startswith("Distribution of") for t in titles)

    # Configuration: health, repository and the repository buttons
    assert any("SERVING" in t for t in checks["config_health"])
    assert {"Load", "Reload", "Unload"} <= set(checks["config_buttons"])
    assert checks["config_tables"] >= 3  # health, repository index, signal rules

    for name in br.SHOTS.values():
        shot = OUT / name
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000, shot
    assert elapsed < BUDGET_S, f"browser test took {elapsed:.1f} s ({result.seconds})"


def test_without_chromium_and_without_root_it_says_why(monkeypatch):
    monkeypatch.setattr(br, "DEBIAN_CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setattr(br.shutil, "which", lambda name: "/usr/bin/apt-get" if name == "apt-get" else None)
    monkeypatch.setattr(br.os, "geteuid", lambda: 1000)
    path, reason = br.find_chromium(install=True)
    assert path is None and "needs root" in reason
    assert br.find_chromium(install=False) == (None, "chromium is not installed")
