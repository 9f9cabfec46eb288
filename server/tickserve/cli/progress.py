"""Progress on stderr for training and evaluation: a tqdm bar with rate and ETA on a terminal,
one line per 10% in a log (a file or CI output, where a redrawn bar is noise).

The callers report `(done, total, message)`; `total` may change between calls (each walk-forward
fold starts its own count, early stopping ends one before its planned total): a new total starts
a new bar.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


class ProgressBar:
    def __init__(self, label: str, *, stream=None, enabled: bool = True) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._tty = self.stream.isatty()
        self._bar: tqdm | None = None
        self._last_decile = -1

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if not self.enabled:
            return
        if not self._tty:  # a log, not a terminal: one line per 10%
            decile = int(min(1.0, done / total) * 10) if total else 0
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(f"{self.label} {done}/{total} {message}\n")
                self.stream.flush()
            return
        if self._bar is None or self._bar.total != total:
            self._close_bar()
            self._bar = tqdm(total=total, desc=self.label, file=self.stream, mininterval=0.1, leave=True)
        self._bar.set_postfix_str(message, refresh=False)
        self._bar.update(done - self._bar.n)  # redraws at most every mininterval
        if total and done >= total:
            self._close_bar()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self, message: str = "") -> None:
        if self.enabled:
            self._close_bar()
            self.stream.write(f"{self.label} done {message}\n")
            self.stream.flush()
