"""The JSONL feedback log: the durable record of every request, whatever Redis is doing."""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import logging
import os
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class FeedbackLog:
    """Appends one JSON line per record; safe across threads and processes.

    Each record is written with a single `write` on an `O_APPEND` descriptor, so lines from
    concurrent writers never interleave, and it is flushed to the OS before returning.
    Writes hold a shared `flock`, the check for a torn last line an exclusive one, so a
    process opening the log never takes another's write in progress for a torn line.

    A log that cannot be written (full disk, lost permission, a bad `FEEDBACK_LOG_PATH`)
    never fails the request whose model has already answered and been paid for: its
    records queue in memory (the newest `QUEUE_LIMIT`; older ones go to the error log
    rather than nowhere) and are written, in order, by the first append that succeeds, or
    by `close` (the service's shutdown, or the process's exit), which logs what it cannot.
    """

    QUEUE_LIMIT = 50_000

    def __init__(self, path: str | Path, source: str = "FEEDBACK_LOG_PATH") -> None:
        self.path = Path(path)
        self.source = source
        """Where the path was set, named when it cannot be written."""
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0
        self._queued: deque[bytes] = deque()
        self._at_exit = False
        self._said = False
        """Whether the log's failure was said (once per failure, until a write succeeds)."""
        self._inode: tuple[int, int] = (0, 0)

    def _descriptor(self) -> int:
        """The log's descriptor, opened once per process (opening per record cost ~1 ms)
        and again when the file was moved or deleted (log rotation), as the standard
        library's `WatchedFileHandler` does: one `stat` per record.

        A last line left without its newline (a write cut short by a full disk or a crash)
        is ended first, so the next record starts a line of its own.
        """
        if self._fd is not None and self._pid == os.getpid() and not self._replaced():
            return self._fd
        self._drop()  # a forked child opens its own
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd, readable = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644), True
        except PermissionError:  # a write-only log: appended to without the check
            fd, readable = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), False
        try:
            with _flocked(fd, fcntl.LOCK_EX):
                opened = os.fstat(fd)
                if readable and opened.st_size and os.pread(fd, 1, opened.st_size - 1) != b"\n":
                    os.write(fd, b"\n")
        except OSError:
            os.close(fd)
            raise
        self._fd, self._pid, self._inode = fd, os.getpid(), (opened.st_dev, opened.st_ino)
        return fd

    def _drop(self) -> None:
        """Forget the descriptor, closing it if this process opened it."""
        if self._fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None

    def _replaced(self) -> bool:
        """Whether the path no longer names the file we hold open."""
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (now.st_dev, now.st_ino) != self._inode

    def check(self) -> None:
        """Open the log now: a path that cannot be written raises, naming it (for start-up)."""
        with self._lock:
            try:
                self._descriptor()
            except OSError as exc:
                raise OSError(exc.errno, f"feedback log {self.path} ({self.source}) "
                                         f"cannot be written: {exc.strerror or exc}") from None

    @property
    def queued(self) -> int:
        """Records waiting for the log to be writable again."""
        return len(self._queued)

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record as a line of JSON (after any queued ones)."""
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            self._queued.append(line)
            self._write_queued()

    def _write_queued(self) -> bool:
        """One write of every queued line; on failure they stay queued. Under the lock."""
        batch = self._queued[0] if len(self._queued) == 1 else b"".join(self._queued)
        try:
            fd = self._descriptor()
            with _flocked(fd, fcntl.LOCK_SH):
                written = os.write(fd, batch)
            if written != len(batch):  # a full disk: keep what did not land whole
                while self._queued and len(self._queued[0]) <= written:
                    written -= len(self._queued.popleft())
                raise OSError(errno.ENOSPC, "short write")
        except OSError as exc:
            self._failed(exc)
            return False
        if len(self._queued) > 1:
            log.warning("feedback log %s writable again: wrote %d queued records",
                        self.path, len(self._queued))
        self._queued.clear()
        self._said = False
        return True

    def _failed(self, exc: OSError) -> None:
        """Drop the descriptor (the next try reopens and ends any torn line); say it once;
        past QUEUE_LIMIT, the oldest record goes to the error log instead of nowhere."""
        self._drop()
        if not self._said:
            self._said = True
            log.error("feedback log %s (%s) cannot be written: %s; records "
                      "are queued in memory until it can", self.path, self.source, exc)
            if not self._at_exit:  # a process that ends first tries once more, then logs them
                atexit.register(self.close)
                self._at_exit = True
        if len(self._queued) > self.QUEUE_LIMIT:
            log.error("feedback queue full; record not written to %s: %s",
                      self.path, self._queued.popleft().decode().rstrip())

    def close(self) -> None:
        """Write what is queued and close the descriptor (the next append reopens it, e.g.
        after log rotation). Records that still cannot be written go to the error log."""
        with self._lock:
            if self._queued and not self._write_queued():
                for line in self._queued:
                    log.error("feedback record not written to %s: %s",
                              self.path, line.decode().rstrip())
                self._queued.clear()
            self._drop()


@contextlib.contextmanager
def _flocked(fd: int, kind: int) -> Iterator[None]:
    """Hold an advisory lock on the log (a filesystem without locks: none; the write is
    still one `O_APPEND` write)."""
    try:
        fcntl.flock(fd, kind)
        locked = True
    except OSError:
        locked = False
    try:
        yield
    finally:
        if locked:
            fcntl.flock(fd, fcntl.LOCK_UN)
