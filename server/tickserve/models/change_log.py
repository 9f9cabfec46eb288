"""Repository changes shared by the processes of one `serve --processes N` group.

Each process has its own `ModelRepository`. So that LoadModel, ReloadModel and UnloadModel
sent to any of them reach all, every change goes through one append-only file in the
group's control directory, a JSON line per change: {"gen", "op", "model", "version", "pid"}.

- The process that got the RPC appends its record (under an exclusive `flock`, so records
  get one order), then applies every record up to and including its own, in file order, and
  answers with its own record's result (or error).
- Every process polls the file's size (every `poll_s`, no inotify) and applies records it has
  not applied yet, in the same order.

So every process applies the same changes in the same order (a load and an unload racing
on two processes end the same way everywhere); siblings follow within the poll interval.
A process started later (a restarted child) loads the repository from disk and then applies
the whole file, which brings it to the group's state. A failed change (NOT_FOUND, a load that
FAILED) fails the same way everywhere: its record is replayed, its error logged.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CHANGES_FILE = "repository-changes.jsonl"
OPS = ("load", "reload", "unload")


@dataclass(frozen=True)
class ChangeRecord:
    gen: int  # 1, 2, ...: the record's line number, its place in the one order
    op: str  # load | reload | unload
    model: str
    version: str
    pid: int  # the process that got the RPC

    def to_line(self) -> bytes:
        return (json.dumps(self.__dict__, separators=(",", ":")) + "\n").encode()


class SharedChanges:
    """The group's change file, as one process reads and writes it.

    `apply(op, model, version)` is the repository's own (local) change; it is called from the
    thread that submits a change or from the poll thread, never two at once (`_applying`)."""

    def __init__(self, control_dir: Path, apply: Callable[[str, str, str], object], poll_s: float = 0.25) -> None:
        self.path = Path(control_dir) / CHANGES_FILE
        self.path.touch(exist_ok=True)
        self._apply = apply
        self._poll_s = poll_s
        self._offset = 0  # bytes of the file applied here
        self._applying = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, op: str, model: str, version: str) -> object:
        """Record a change for every process, apply it here (after any earlier record) and return
        its result, or raise its error."""
        with self._applying:
            with open(self.path, "ab") as f:
                fcntl.flock(f, fcntl.LOCK_EX)  # one writer at a time: the line count is the generation
                try:
                    end = os.fstat(f.fileno()).st_size
                    gen = self.path.read_bytes()[:end].count(b"\n") + 1
                    line = ChangeRecord(gen, op, model, version, os.getpid()).to_line()
                    f.write(line)
                    f.flush()
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
            mine = end + len(line)
            self._catch_up(until=end)  # the records before ours, in order
            self._offset = mine
            return self._apply(op, model, version)  # ours: its result or its error is the RPC's

    def catch_up(self) -> int:
        """Apply the records not applied here yet; how many were."""
        with self._applying:
            return self._catch_up()

    def _catch_up(self, until: int | None = None) -> int:
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read() if until is None else f.read(max(0, until - self._offset))
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next poll
        applied = 0
        for raw in complete.splitlines(keepends=True):
            self._offset += len(raw)
            try:
                record = ChangeRecord(**json.loads(raw))
            except (ValueError, TypeError) as exc:
                log.error("%s: unreadable change record skipped (%s): %r", self.path, exc, raw[:200])
                continue
            if record.op not in OPS:
                log.error("%s: unknown change %r skipped", self.path, record.op)
                continue
            try:
                self._apply(record.op, record.model, record.version)
                log.info("repository change %d from pid %d applied: %s %s/%s", *_fields(record))
            except Exception as exc:  # noqa: BLE001 - it failed in the process that took the RPC too
                log.info("repository change %d from pid %d failed here as there: %s %s/%s: %s", *_fields(record), exc)
            applied += 1
        return applied

    def start(self) -> None:
        """Poll for the siblings' changes in a daemon thread (loads block: not on the event loop)."""
        self._thread = threading.Thread(target=self._poll, name="tickserve-shared-changes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                if self.path.stat().st_size > self._offset:
                    self.catch_up()
            except OSError as exc:  # the control directory went away: the supervisor is gone
                log.warning("shared repository changes: %s", exc)


def _fields(record: ChangeRecord) -> tuple:
    return record.gen, record.pid, record.op, record.model, record.version or "*"
