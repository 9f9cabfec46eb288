"""Drive the running dashboard in headless Chromium (Playwright): used by the browser test and by
`clients/dashboard/screenshots.py`. Playwright is imported only inside these functions, so the
dashboard itself never needs it.

    proc, url = start_dashboard("127.0.0.1:50051")
    with browser() as b: checks = tour(b, url, out_dir)   # visits every tab, streams, evaluates
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

APP = Path(__file__).with_name("app.py")
DEBIAN_CHROMIUM = "/usr/bin/chromium"
SHOTS = {
    "Live Inference": "dashboard-live.png",
    "Model Performance": "dashboard-performance.png",
    "Feature Analysis": "dashboard-features.png",
    "Configuration": "dashboard-config.png",
}


# --- the browser ------------------------------------------------------------------------------


def find_chromium(install: bool = True) -> tuple[str | None, str]:
    """(path, "") to Debian's chromium, installing it with apt-get when missing and allowed
    (root, apt-get present); (None, reason) when it cannot be had."""
    for candidate in (DEBIAN_CHROMIUM, shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate, ""
    if not install:
        return None, "chromium is not installed"
    if shutil.which("apt-get") is None:
        return None, "chromium is not installed and there is no apt-get to install it"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return None, "chromium is not installed and installing it needs root (apt-get install -y chromium)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return None, f"`{' '.join(cmd)}` failed: {' / '.join(tail)}"
    if os.access(DEBIAN_CHROMIUM, os.X_OK):
        return DEBIAN_CHROMIUM, ""
    return None, "apt-get installed chromium but /usr/bin/chromium is missing"


@contextlib.contextmanager
def browser(executable_path: str = DEBIAN_CHROMIUM):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=executable_path,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield b
        finally:
            b.close()


# --- the dashboard process -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dashboard(
    server: str, *, port: int | None = None, env: dict | None = None, log: Path | None = None, timeout: float = 60.0
) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py --server.headless true` on a free loopback port, pointed at `server`."""
    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "viewer",
    ]
    child_env = {**os.environ, **(env or {}), "TICKSERVE_SERVER": server}
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 (kept open for the child's life)
    proc = subprocess.Popen(cmd, env=child_env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}" + (f" (log: {log})" if log else ""))
        try:
            with urllib.request.urlopen(url + "_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.3)
    stop(proc)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --- the tour --------------------------------------------------------------------------------


@dataclass
class TourResult:
    screenshots: dict[str, Path] = field(default_factory=dict)
    checks: dict[str, object] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _visible(page, selector: str):
    return page.locator(f"{selector} >> visible=true")


def wait_idle(page, timeout: float = 60.0) -> None:
    """Until the script run the last interaction started has finished (no "Running" indicator)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=timeout * 1000)


def set_number(page, label: str, value: float) -> None:
    field_ = _visible(page, f'input[aria-label="{label}"]').first
    field_.fill(str(value))
    field_.press("Enter")
    wait_idle(page)


def click(page, name: str) -> None:
    _visible(page, "button").filter(has_text=name).first.click()


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(300)


def screenshot(page, path: Path, max_height: int = 4400) -> Path:
    """The whole scrolled content of the main area (Streamlit scrolls inside it), up to max_height."""
    height = page.evaluate(
        "() => { const m = document.querySelector('[data-testid=\"stMain\"]') || document.scrollingElement;"
        " return m.scrollHeight; }"
    )
    width = page.viewport_size["width"]
    page.set_viewport_size({"width": width, "height": int(min(max(height + 40, 900), max_height))})
    page.wait_for_timeout(700)  # plotly re-lays out on resize
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": width, "height": 1000})
    return path


def _one(locator, text: str, timeout: float) -> None:
    """Wait until exactly one of these visible elements contains `text`."""
    from playwright.sync_api import expect

    expect(locator.filter(has_text=text)).to_have_count(1, timeout=timeout * 1000)


def plot_titles(page) -> list[str]:
    return [t.strip() for t in _visible(page, ".js-plotly-plot .gtitle").all_text_contents()]


def tour(
    b,
    url: str,
    out_dir: Path | None,
    *,
    live_ticks: int = 600,
    eval_ticks: int = 3_000,
    names: dict[str, str] = SHOTS,
    timeout: float = 60.0,
) -> TourResult:
    """Open the dashboard, run a short stream and an evaluation, visit every tab; screenshots if out_dir."""
    result = TourResult()
    page = b.new_page(viewport={"width": 1440, "height": 1000})
    page.set_default_timeout(timeout * 1000)
    t0 = time.perf_counter()
    page.goto(url)
    _visible(page, 'input[aria-label="Ticks"]').first.wait_for()
    wait_idle(page)
    result.seconds["load"] = time.perf_counter() - t0

    # Live Inference: a short stream
    t = time.perf_counter()
    open_tab(page, "Live Inference")
    set_number(page, "Ticks", live_ticks)
    click(page, "Start stream")
    _one(_visible(page, '[data-testid="stAlertContentSuccess"]'), "ticks from", timeout)
    wait_idle(page)
    _one(_visible(page, ".js-plotly-plot .gtitle"), "mid, microprice", timeout)
    metrics = dict(
        zip(
            _visible(page, '[data-testid="stMetricLabel"]').all_inner_texts(),
            _visible(page, '[data-testid="stMetricValue"]').all_inner_texts(),
        )
    )
    result.checks["live_metrics"] = metrics
    result.checks["live_tables"] = _visible(page, '[data-testid="stDataFrame"]').count()
    result.checks["live_charts"] = _visible(page, ".js-plotly-plot").count()
    result.checks["live_titles"] = plot_titles(page)
    result.seconds["live"] = time.perf_counter() - t
    if out_dir is not None:
        result.screenshots["Live Inference"] = screenshot(page, out_dir / names["Live Inference"])

    # Model Performance: an evaluation with its progress bar
    t = time.perf_counter()
    open_tab(page, "Model Performance")
    set_number(page, "Ticks", eval_ticks)
    click(page, "Run evaluation")
    _one(_visible(page, '[data-testid="stAlertContentSuccess"]'), "labeled", timeout)
    wait_idle(page)
    _one(_visible(page, ".js-plotly-plot .gtitle"), "Confusion matrix", timeout)
    result.checks["performance_titles"] = plot_titles(page)
    result.checks["confusion_cells"] = _visible(page, ".js-plotly-plot .heatmaplayer").count()
    result.checks["performance_metrics"] = dict(
        zip(
            _visible(page, '[data-testid="stMetricLabel"]').all_inner_texts(),
            _visible(page, '[data-testid="stMetricValue"]').all_inner_texts(),
        )
    )
    result.seconds["performance"] = time.perf_counter() - t
    if out_dir is not None:
        result.screenshots["Model Performance"] = screenshot(page, out_dir / names["Model Performance"])

    # Feature Analysis: importance (from the evaluation's report) and feature values (from the stream)
    t = time.perf_counter()
    open_tab(page, "Feature Analysis")
    titles = _visible(page, ".js-plotly-plot .gtitle")
    if titles.filter(has_text="Feature importance").count() == 0:  # a different model: fetch it here
        click(page, "Fetch importance")
        wait_idle(page)
    _one(_visible(page, ".js-plotly-plot .gtitle"), "Feature importance", timeout)
    result.checks["feature_titles"] = plot_titles(page)
    result.seconds["features"] = time.perf_counter() - t
    if out_dir is not None:
        result.screenshots["Feature Analysis"] = screenshot(page, out_dir / names["Feature Analysis"])

    # Configuration: health, repository, signal rules
    t = time.perf_counter()
    open_tab(page, "Configuration")
    _one(_visible(page, '[data-testid="stAlertContentSuccess"]'), "SERVING", timeout)
    _one(_visible(page, "p"), "Signal-rule thresholds", timeout)
    result.checks["config_tables"] = _visible(page, '[data-testid="stDataFrame"]').count()
    result.checks["config_health"] = _visible(page, '[data-testid="stAlertContentSuccess"]').all_inner_texts()
    result.checks["config_buttons"] = [x.strip() for x in _visible(page, "button").all_inner_texts() if x.strip()]
    result.seconds["config"] = time.perf_counter() - t
    if out_dir is not None:
        result.screenshots["Configuration"] = screenshot(page, out_dir / names["Configuration"])
    page.close()
    return result
