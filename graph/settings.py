"""Environment variables, read in one place. Each has a default that needs nothing set up."""

from __future__ import annotations

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


def checkpoint_ttl_seconds() -> int | None:
    """`CHECKPOINT_TTL_SECONDS` (default 7 days; 0 keeps checkpoints forever)."""
    ttl = int(os.environ.get("CHECKPOINT_TTL_SECONDS", str(7 * 24 * 3600)))
    return ttl or None


def health_probe_interval_s() -> float:
    """`HEALTH_PROBE_INTERVAL_S`: how often the service probes health URLs (0: never)."""
    return float(os.environ.get("HEALTH_PROBE_INTERVAL_S", "30"))
