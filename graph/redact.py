"""Keep API keys out of logs, traces, checkpoints and feedback records."""

from __future__ import annotations

import os
import re
from typing import Any

from graph.registry import KEY_ENVS

# One alternation, so every error text costs a single regex pass. A URL's password is
# replaced alone (user, host and path stay, so the error still says where it failed); it
# runs to the authority's last '@', as urllib reads `u:p@ss@host`.
_KEY_SHAPES = re.compile(
    r"(?:"
    r"(?P<url>://[^\s/?#:@]*:)[^\s/?#]+(?=@)|"
    r"sk-[A-Za-z0-9_\-]{8,}|gsk_[A-Za-z0-9]{8,}|AIza[0-9A-Za-z_\-]{20,}|"
    r"gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|(?:AKIA|ASIA)[0-9A-Z]{16}|"
    r"(?i:bearer)\s+[A-Za-z0-9._\-]{8,}|(?i:api[_-]?key)[\"'=: ]+[A-Za-z0-9._\-]{8,})"
)
_REPLACEMENT = r"\g<url>[REDACTED]"  # an unmatched group is empty: other shapes go whole
_VENDOR_PREFIX = re.compile(r"^(?:[A-Za-z]{2,5}[-_]){1,2}")  # sk-, sk-proj-, gsk_, ...
_MIN_BODY = 12


def _known_keys() -> list[str]:
    """Each configured key, and its body without the vendor prefix: a provider or a proxy
    may echo the key without it, where no key shape matches."""
    found: list[str] = []
    for env in tuple(KEY_ENVS):  # a copy: another thread may load a registry meanwhile
        value = os.environ.get(env)
        if value and len(value) >= 6:
            body = _VENDOR_PREFIX.sub("", value)
            found += [value, body] if body != value and len(body) >= _MIN_BODY else [value]
    return found


def redact(text: str, known: list[str] | None = None) -> str:
    """Replace anything that looks like a key, and the value of every known key variable
    (`known`: those values, read once for many texts)."""
    for value in _known_keys() if known is None else known:
        text = text.replace(value, "[REDACTED]")
    return _KEY_SHAPES.sub(_REPLACEMENT, text)


def redact_all(value: Any, known: list[str] | None = None) -> Any:
    """`redact` on every string in a JSON-like value (a conversation's messages): the
    text of the whole, redacted at once, could lose a quote and stop being JSON."""
    known = _known_keys() if known is None else known
    if isinstance(value, str):
        return redact(value, known)
    if isinstance(value, list | tuple):
        return [redact_all(item, known) for item in value]
    if isinstance(value, dict):
        return {key: redact_all(item, known) for key, item in value.items()}
    return value
