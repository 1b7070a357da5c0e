"""One view of whether Redis answers, shared by everything that talks to it.

The store and the checkpointer share it, so when one of them finds Redis down (or hung) the
other does not pay a socket timeout to find out again; Redis is retried once per interval.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis

log = logging.getLogger(__name__)
T = TypeVar("T")

OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError,
                 redis.exceptions.OutOfMemoryError)
"""Redis unreachable, or answering but refusing writes: a replica after a failover
(READONLY), out of memory under `noeviction` (OOM). Either way the request is served from
process memory, as in an outage, rather than failed after its model was paid for."""


_REFUSED = re.compile(r"(?:^|[-\s:])(?:READONLY|OOM|MISCONF) ")
"""The same refusals as redis-py reports them from inside a Lua script (a plain
ResponseError, 'Error running script ...: -OOM command not allowed ...') or a pipeline
('... of pipeline caused error: MISCONF ...'), and MISCONF (a server whose last save
failed), which it never maps to a class of its own."""


def is_outage(exc: BaseException) -> bool:
    """Whether Redis is unreachable or refusing writes, rather than refusing this call."""
    return isinstance(exc, OUTAGE_ERRORS) or (
        isinstance(exc, redis.ResponseError) and _REFUSED.search(str(exc)) is not None)


POOL_EXHAUSTED = "No connection available."
"""redis-py's word (a plain ConnectionError, sync and asyncio alike) when every connection
of a blocking pool stayed busy for its whole wait: this process is overloaded, Redis is not
down."""


def pool_exhausted(exc: BaseException) -> bool:
    """Whether the call never reached Redis because the pool had no connection to spare."""
    return isinstance(exc, redis.ConnectionError) and str(exc) == POOL_EXHAUSTED


SHED_S = 1.0
"""After a call found the pool exhausted, calls skip Redis this long: under a sustained
overload each would otherwise wait the pool's full 5 s, several times a request."""

RETRY_INTERVAL_S = 5.0
"""How long Redis is left alone after a failure. A hung Redis costs one socket timeout
(1 s) per interval, so the interval is several times that."""


class Outage:
    """Down-until bookkeeping: warn once per outage, retry once per interval."""

    def __init__(self, retry_interval_s: float = RETRY_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.retry_interval_s = retry_interval_s
        self.clock = clock
        self._down_until: float | None = None
        self._failed_at: float | None = None
        self._busy_said_at: float | None = None
        self._shed_until = 0.0

    @property
    def resting(self) -> bool:
        """True while Redis is left alone after a failure."""
        return self._down_until is not None and self.clock() < self._down_until

    @property
    def down(self) -> bool:
        """True from a failure until Redis answers again."""
        return self._down_until is not None

    def failed(self, exc: Exception) -> None:
        """Record a failed call."""
        if self._down_until is None:
            log.warning("redis unavailable (%s): serving from process memory, retrying "
                        "every %.0f s", exc, self.retry_interval_s)
        self._failed_at = self.clock()
        self._down_until = self._failed_at + self.retry_interval_s

    def busy(self, exc: Exception) -> None:
        """A call the pool could not serve: it falls back, and so do the calls of the next
        `SHED_S`, without waiting on the pool; Redis is not taken for down (under a burst,
        250 concurrent runs, treating it as an outage switched the whole process to its own
        state for 5 s, skipping checkpoints, while Redis was fine). Said once per interval."""
        now = self.clock()
        self._shed_until = now + SHED_S
        if self._busy_said_at is None or now - self._busy_said_at >= self.retry_interval_s:
            self._busy_said_at = now
            log.warning("redis connection pool exhausted (%s): this process is overloaded; "
                        "calls that found no connection were served from process memory "
                        "(usage queued, checkpoints skipped). Add replicas, or raise "
                        "graph.redis_conn.MAX_CONNECTIONS", exc)

    def retry_now(self) -> None:
        """End the rest: the next call tries Redis (a last flush at shutdown)."""
        if self._down_until is not None:
            self._down_until = self.clock()

    def answered(self, started: float | None = None) -> None:
        """Record a successful call (begun at `started`, by this clock). A call begun
        before the last failure, on another thread or task, ends no outage: its answer is
        older news than the failure."""
        if self._down_until is None:
            return
        if started is not None and self._failed_at is not None and started < self._failed_at:
            return
        log.info("redis answers again")
        self._down_until = None

    def _skipped(self, now: float) -> bool:
        """Whether a call begun now goes to process memory without trying Redis."""
        return self.resting or now < self._shed_until

    def _absorbed(self, exc: redis.RedisError) -> bool:
        """Record a failed call; False when it is this call's own error, to re-raise."""
        if pool_exhausted(exc):
            self.busy(exc)
        elif is_outage(exc):
            self.failed(exc)
        else:
            return False
        return True

    async def aguard(self, call: Callable[[], Awaitable[T]], fallback: T) -> T:
        """`guard` for an awaited call, with a value to fall back on."""
        started = self.clock()
        if self._skipped(started):
            return fallback
        try:
            result = await call()
        except redis.RedisError as exc:
            if not self._absorbed(exc):
                raise
            return fallback
        self.answered(started)
        return result

    def guard(self, call: Callable[[], T], fallback: Callable[[], T]) -> T:
        """`call()` unless Redis is resting or fails now; else `fallback()`."""
        started = self.clock()
        if self._skipped(started):
            return fallback()
        try:
            result = call()
        except redis.RedisError as exc:
            if not self._absorbed(exc):
                raise
            return fallback()
        self.answered(started)
        return result
