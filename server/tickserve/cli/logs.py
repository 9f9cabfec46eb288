"""Logging set-up: human-readable lines, or one JSON object per line for log collectors."""

from __future__ import annotations

import json
import logging
import sys
import time

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "message"[, "exc"]} plus any `extra=` fields given to the log call."""

    converter = time.gmtime  # timestamps in UTC, as the "Z" says
    _STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


_format = "text"


def announce(message: str, *, file=None) -> None:
    """A line the operator always sees, whatever the log level (serving on..., model X: READY,
    stopping): plain text, or with --log-format json one JSON object like every log record, so a
    log collector parses every line `serve` writes."""
    if _format == "json":
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        message = json.dumps({"ts": stamp, "level": "INFO", "logger": "tickserve.serve", "message": message})
    print(message, file=file or sys.stdout, flush=True)


def configure_logging(level: str = "warning", fmt: str = "text") -> None:
    global _format
    _format = fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
