"""Screenshots of the four tabs for the README, from a real server serving real models.

    .venv/bin/python clients/dashboard/screenshots.py                  # serves models/ itself
    .venv/bin/python clients/dashboard/screenshots.py --server 127.0.0.1:50051

Starts `tickserve serve --models models --port 0` (unless --server is given) and the dashboard
(`streamlit run`), drives headless Chromium (Debian's /usr/bin/chromium) through every tab — a live
stream, an evaluation, feature analysis, configuration — and writes docs/img/dashboard-*.png.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tickserve_dashboard import browser as br

ROOT = Path(__file__).resolve().parents[2]


def serve(models: Path, log: Path) -> tuple[subprocess.Popen, str]:
    ready = Path(tempfile.mkdtemp()) / "port"
    tickserve = Path(sys.executable).with_name("tickserve")
    cmd = [str(tickserve), "serve", "--models", str(models), "--port", "0", "--ready-file", str(ready)]
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tickserve serve exited with {proc.returncode}; see {log}")
        if ready.exists() and ready.read_text().strip():
            return proc, f"127.0.0.1:{ready.read_text().strip()}"
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError("tickserve serve did not become ready in 120 s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", help="use this running server instead of starting one")
    p.add_argument("--models", type=Path, default=ROOT / "models")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    p.add_argument("--live-ticks", type=int, default=1_500)
    p.add_argument("--eval-ticks", type=int, default=20_000)
    args = p.parse_args()

    chromium, reason = br.find_chromium(install=True)
    if chromium is None:
        print(f"no browser: {reason}", file=sys.stderr)
        return 2
    logs = Path(tempfile.mkdtemp(prefix="dashboard-shots-"))
    server_proc = None
    address = args.server
    if address is None:
        server_proc, address = serve(args.models, logs / "server.log")
    try:
        dash, url = br.start_dashboard(address, log=logs / "streamlit.log")
        try:
            with br.browser(chromium) as b:
                result = br.tour(b, url, args.out, live_ticks=args.live_ticks, eval_ticks=args.eval_ticks, timeout=120)
        finally:
            br.stop(dash)
    finally:
        if server_proc is not None:
            server_proc.send_signal(signal.SIGTERM)
            server_proc.wait(30)
    for tab, path in result.screenshots.items():
        print(f"{tab:18s} {os.path.relpath(path, ROOT)}")
    print("seconds:", {k: round(v, 1) for k, v in result.seconds.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
