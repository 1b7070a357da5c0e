"""The JSONL feedback log: the durable record of every request, whatever Redis is doing."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


class FeedbackLog:
    """Appends one JSON line per record; safe across threads and processes.

    Each record is written with a single `write` on an `O_APPEND` descriptor, so lines from
    concurrent writers never interleave, and it is flushed to the OS before returning.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def _descriptor(self) -> int:
        """The log's descriptor, opened once per process (opening per record cost ~1 ms)."""
        if self._fd is None or self._pid != os.getpid():  # a forked child opens its own
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._pid = os.getpid()
        return self._fd

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record as a line of JSON."""
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            os.write(self._descriptor(), line)

    def close(self) -> None:
        """Close the descriptor (the next append reopens it, e.g. after log rotation)."""
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None

    def read(self) -> Iterator[dict[str, Any]]:
        """Every record, oldest first; a damaged line raises with its line number."""
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{self.path}:{number}: not JSON: {exc}") from None
