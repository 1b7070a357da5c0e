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

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record as a line of JSON."""
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)

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
