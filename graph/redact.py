"""Keep API keys out of logs, traces, checkpoints and feedback records."""

from __future__ import annotations

import os
import re

from graph.registry import PROVIDER_KEY_ENV

_KEY_SHAPES = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|gsk_[A-Za-z0-9]{8,}|AIza[0-9A-Za-z_\-]{20,}|"
    r"(?i:bearer)\s+[A-Za-z0-9._\-]{8,}|(?i:api[_-]?key)[\"'=: ]+[A-Za-z0-9._\-]{8,})"
)


def redact(text: str) -> str:
    """Replace anything that looks like a key, and the value of every known key variable."""
    for env in PROVIDER_KEY_ENV.values():
        value = os.environ.get(env) if env else None
        if value and len(value) >= 6:
            text = text.replace(value, "[REDACTED]")
    return _KEY_SHAPES.sub("[REDACTED]", text)
