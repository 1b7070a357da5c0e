"""What the nodes work with: registry, shared store, feedback log, clock and sleeper.

Built once per graph (from the environment by default) and bound into the nodes, so a
test or an embedding application can hand the graph its own.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from graph import redis_conn, settings
from graph.feedback import FeedbackLog
from graph.registry import Registry, load_registry
from graph.store import Store


@dataclass
class Services:
    """Dependencies of the nodes."""

    registry: Registry
    store: Store
    feedback: FeedbackLog
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    """Backoff between retries; tests inject a recorder so nothing sleeps for real."""
    asleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    """The same under `ainvoke`."""
    rng: random.Random = field(default_factory=random.Random)
    """Jitter source for backoff."""
    include_prompt: bool = field(default_factory=settings.feedback_include_prompt)
    """Feedback records carry the prompt and the messages sent, keys redacted
    (`FEEDBACK_INCLUDE_PROMPT`)."""

    @classmethod
    def in_memory(cls, feedback_path: str | None = None) -> Services:
        """One process, no Redis: state lives in this process only (see `Store.in_memory`)."""
        return cls(registry=load_registry(), store=Store.in_memory(),
                   feedback=FeedbackLog(feedback_path or settings.feedback_log_path()))

    @classmethod
    def from_env(cls) -> Services:
        """Registry from `REGISTRY_PATH`, Redis from `REDIS_URL` (else embedded), log path."""
        client = redis_conn.target().client()
        return cls(
            registry=load_registry(),
            store=Store(client, prefix=settings.key_prefix(),
                        rating_window_s=settings.rating_window_s(),
                        rating_half_life_s=settings.rating_half_life_s()),
            feedback=FeedbackLog(settings.feedback_log_path()),
        )
