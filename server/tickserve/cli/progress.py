"""A one-line progress bar on stderr (enough for training and evaluation; no dependency)."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    def __init__(self, label: str, *, width: int = 30, stream=None, enabled: bool = True) -> None:
        self.label = label
        self.width = width
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._last = 0.0
        self._tty = self.stream.isatty()
        self._last_decile = -1

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        finished = bool(total) and done >= total
        frac = min(1.0, done / total) if total else 0.0
        if not self._tty:  # a log, not a terminal: one line per 10%
            decile = int(frac * 10)
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self.stream.write(f"{self.label} {done}/{total} {message}\n")
            self.stream.flush()
            return
        if not finished and now - self._last < 0.1:
            return
        self._last = now
        filled = int(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {message}".ljust(100))
        if finished:
            self.stream.write("\n")
        self.stream.flush()

    def close(self, message: str = "") -> None:
        if self.enabled:
            self.stream.write(f"\r{self.label} done {message}".ljust(100) + "\n")
            self.stream.flush()
