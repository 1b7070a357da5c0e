"""Environment variables, read in one place. Each has a default that needs nothing set up."""

from __future__ import annotations

import math
import os
from pathlib import Path


def home() -> Path:
    """`MODEL_SELECTOR_HOME`: where the embedded Redis keeps its data file."""
    env = os.environ.get("MODEL_SELECTOR_HOME")
    return Path(env) if env else Path.home() / ".local" / "share" / "model-selector"


def redis_url() -> str | None:
    """`REDIS_URL` (the spec's variable); None starts the embedded Redis."""
    return os.environ.get("REDIS_URL") or None


def key_prefix() -> str:
    """`MODEL_SELECTOR_KEY_PREFIX`: prepended to every Redis key (tests, shared servers)."""
    return os.environ.get("MODEL_SELECTOR_KEY_PREFIX", "")


def feedback_log_path() -> Path:
    """`FEEDBACK_LOG_PATH`, default the spec's `logs/agents/model_feedback.jsonl`."""
    return Path(os.environ.get("FEEDBACK_LOG_PATH", "logs/agents/model_feedback.jsonl"))


DURABILITIES = ("exit", "async", "sync")


def checkpoint_ttl_seconds() -> int | None:
    """`CHECKPOINT_TTL_SECONDS` (default 7 days; 0 keeps checkpoints forever)."""
    return int(_number("CHECKPOINT_TTL_SECONDS", 7 * 24 * 3600, int, MAX_TTL_S)) or None


def rating_window_s() -> int:
    """`RATING_WINDOW_S`: how long a served request can be rated (default 7 days, as long
    as its checkpoints are kept; 0: no ratings)."""
    return int(_number("RATING_WINDOW_S", 7 * 24 * 3600, int, MAX_TTL_S))


RATING_HALF_LIFE_S = 30 * 24 * 3600
"""Default: a rating counts half after 30 days, a quarter after 60."""


def rating_half_life_s() -> float:
    """`RATING_HALF_LIFE_S`: after how long a rating counts half (default 30 days; 0: never
    fades)."""
    value = float(_number("RATING_HALF_LIFE_S", RATING_HALF_LIFE_S, float))
    if not math.isfinite(value):
        raise ValueError(f"RATING_HALF_LIFE_S={os.environ['RATING_HALF_LIFE_S']!r}: must be "
                         "a finite number of seconds (0: ratings never fade)")
    return value


def checkpoint_durability() -> str:
    """`CHECKPOINT_DURABILITY`: the LangGraph durability of the service's runs.

    Default `exit`: one checkpoint, of the final state, per run; `async` or `sync` keep
    every step (LangGraph's default is `async`), at several ms per request.
    """
    value = os.environ.get("CHECKPOINT_DURABILITY", "exit").strip().lower()
    if value not in DURABILITIES:
        raise ValueError(f"CHECKPOINT_DURABILITY={value!r}: must be one of "
                         + ", ".join(DURABILITIES))
    return value


def health_probe_interval_s() -> float:
    """`HEALTH_PROBE_INTERVAL_S`: how often the service probes health URLs (0: never)."""
    return float(_number("HEALTH_PROBE_INTERVAL_S", 30, float))  # nan, inf: refused


def max_request_bytes() -> int:
    """`MAX_REQUEST_BYTES`: the largest request body the service reads (default 16 MiB,
    about four times a million-token prompt; 0: no limit)."""
    return int(_number("MAX_REQUEST_BYTES", 16 * 1024 * 1024, int))


def gc_young_threshold() -> int:
    """`GC_YOUNG_THRESHOLD`: allocations between young-generation collections in the service
    (default 50,000; 0 keeps CPython's 700). See graph/gc_tuning.py."""
    return int(_number("GC_YOUNG_THRESHOLD", 50_000, int, 2**31 - 1))  # a C int


MAX_TTL_S = 10 * 365 * 24 * 3600
"""Ten years: a larger TTL failed in Redis's EXPIRE at the first write, after the model
was paid for, while the service reported ready."""


def _number(name: str, default: float, kind: type[int] | type[float],
            maximum: float = math.inf) -> float:
    """A finite, non-negative number from the environment, at most `maximum`; a bad value
    names its variable (float() also reads 'nan' and 'inf')."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    rule = f"must be a non-negative {kind.__name__}" + (
        f" <= {maximum:.0f}" if maximum < math.inf else "")
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: {rule}") from None
    if not (0 <= value <= maximum and math.isfinite(value)):
        raise ValueError(f"{name}={raw!r}: {rule}")
    return value


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def feedback_include_prompt() -> bool:
    """`FEEDBACK_INCLUDE_PROMPT`: feedback records carry the prompt and the messages sent."""
    raw = os.environ.get("FEEDBACK_INCLUDE_PROMPT", "")
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ValueError(f"FEEDBACK_INCLUDE_PROMPT={raw!r}: must be 1 or 0 (true/false, yes/no, "
                     "on/off)")
