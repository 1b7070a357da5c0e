"""Shared state in Redis (health cache, usage log, circuits), and what happens when Redis is down.

Redis is the one truth for N replicas. When it stops answering, requests keep being served:
health and circuits are kept in-process, usage entries queue in memory (the JSONL feedback
log already holds every record durably) and are written to Redis when it answers again.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar, cast

import redis

from graph.circuit import Circuits, LocalCircuits, ModelAvailability, RedisCircuits
from graph.outage import RETRY_INTERVAL_S, Outage
from graph.settings import RATING_HALF_LIFE_S

log = logging.getLogger(__name__)
T = TypeVar("T")

HEALTH_TTL_S = 60
"""The spec's health cache TTL."""
USAGE_KEEP = 1000
"""The spec keeps the last 1000 usage entries per model."""
PENDING_LIMIT = 50_000
"""Usage entries (each with its ratable mark) queued while Redis is down, at most; past it
the oldest are dropped, said in the error log (what an outage of hours would queue)."""
FLUSH_BATCH = 200
"""Queued entries written per Redis call (one transaction, about 7 ms): a long backlog is
written over many calls rather than in one that stalls the process (50,000 entries took
1.8 s)."""
LOCAL_RATABLE = 100_000
"""Without Redis: how many served requests stay ratable (oldest forgotten first)."""


class Served(NamedTuple):
    """Who answered a request, kept so a later rating can be credited to them."""

    model_id: str
    domain: str
    task_type: str


class Live(NamedTuple):
    """What `Store.live` read: health and availability per model, and when."""

    health: dict[str, str]
    availability: dict[str, ModelAvailability]
    at: float


class Store:
    """Health cache, usage log and circuits, on Redis with an in-process stand-in."""

    def __init__(
        self,
        client: redis.Redis | None,
        prefix: str = "",
        clock: Callable[[], float] = time.time,
        retry_interval_s: float = RETRY_INTERVAL_S,
        rating_window_s: int = 7 * 24 * 3600,
        rating_half_life_s: float = RATING_HALF_LIFE_S,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.clock = clock
        self.outage = Outage(retry_interval_s)
        self._remote = RedisCircuits(client, prefix=prefix, clock=clock) if client else None
        self._local = LocalCircuits(clock=clock)
        self._local_health: dict[str, tuple[str, float]] = {}
        self.rating_window_s = rating_window_s
        """How long a served request can be rated (0: not at all)."""
        self.rating_half_life_s = rating_half_life_s
        """After how long a rating counts half (0: ratings never fade)."""
        self._pending: deque[tuple[str, str, tuple[str, Served | None] | None]] = deque()
        self._local_usage: dict[str, deque[str]] = {}
        """Without Redis (client None): the last 1000 usage entries per model, in-process."""
        self._local_served: dict[str, tuple[Served, float | None, float]] = {}
        """Without Redis: served request id -> (who served, its rating, when), newest last."""
        self._local_tallies: dict[tuple[str, str], dict[str, Credit]] = {}
        self._lock = threading.Lock()
        self._at_exit = False
        self._dropped = 0

    # ------------------------------------------------------------------ plumbing
    def key(self, kind: str, model_id: str) -> str:
        """The spec's key names (`model:health:{id}`, `model:usage:{id}`) under the prefix."""
        return f"{self.prefix}model:{kind}:{model_id}"

    @classmethod
    def in_memory(cls, clock: Callable[[], float] = time.time) -> Store:
        """No Redis at all: one process's own state (health, circuits, usage), shared with
        nobody. For a single embedded process, and for measuring the graph without Redis."""
        return cls(None, clock=clock)

    @property
    def online(self) -> bool:
        """False while Redis is left alone after a failure (and always without Redis)."""
        return self.client is not None and not self.outage.resting

    def _run(self, remote: Callable[[], T], local: Callable[[], T]) -> T:
        if self.client is None:
            return local()

        def call() -> T:
            if self._pending:
                self._flush()
            return remote()

        return self.outage.guard(call, local)

    def _flush(self) -> None:
        """Write the oldest usage entries queued during an outage (FLUSH_BATCH of them), in
        one transaction: a batch Redis refuses (out of memory, read-only) is written not at
        all and sent again whole later, so it is not written twice. (A reply lost after
        Redis ran it would be; Redis offers no idempotent LPUSH to rule that out.)"""
        with self._lock:
            batch = list(itertools.islice(self._pending, FLUSH_BATCH))
            pipe = self.client.pipeline(transaction=True)
            for model_id, entry, served in batch:
                self._queue_usage(pipe, model_id, entry, served)
            pipe.execute()
            for _ in batch:
                self._pending.popleft()
            left = len(self._pending)
            if not left:
                self._dropped = 0  # the next outage's first drop is said again
        log.info("redis back: wrote %d queued usage entries (%d still queued)", len(batch), left)

    def flush_pending(self, max_batches: int | None = None) -> int:
        """Try to write queued usage entries now (all, or `max_batches` batches of them);
        returns how many are still queued."""
        batches = 0
        while self._pending and self.online and (max_batches is None or batches < max_batches):
            before, batches = len(self._pending), batches + 1
            self._run(lambda: None, lambda: None)
            if len(self._pending) >= before:
                break
        return len(self._pending)

    def queued_request(self, request_id: str) -> bool:
        """Whether a served mark of this request waits in this process's queue (served
        while Redis was down or refusing writes): not ratable yet, rather than unknown."""
        with self._lock:
            for item in reversed(self._pending):  # the latest mark of the id decides
                if item[2] is not None and item[2][0] == request_id:
                    return item[2][1] is not None
            return False

    def check_writable(self) -> None:
        """Raise what Redis raises for a write (readiness); a success ends an outage."""
        self.client.set(f"{self.prefix}model-selector:ready", "1", ex=60)
        self.outage.answered()

    def _queue_pending(self, item: tuple[str, str, tuple[str, Served | None] | None]) -> None:
        """Keep a usage entry for when Redis is back; the first one also arranges a last
        try at exit, which says what it could not write."""
        with self._lock:
            if not self._pending and not self._at_exit:
                atexit.register(self.last_flush)
                self._at_exit = True
            self._pending.append(item)
            if len(self._pending) > PENDING_LIMIT:
                model_id, _, served = self._pending.popleft()
                self._dropped += 1
                if self._dropped == 1:
                    log.error("usage queue full (%d entries while Redis is down): dropping "
                              "the oldest, starting with one of %s%s", PENDING_LIMIT, model_id,
                              f" (request {served[0]}, no longer ratable)" if served else "")

    def last_flush(self) -> None:
        """At exit or shutdown (once): write what is queued, or say what is lost."""
        if self._at_exit:
            atexit.unregister(self.last_flush)
            self._at_exit = False
        if not self._pending:
            return
        self.outage.retry_now()
        if left := self.flush_pending():
            log.error("%d usage entries (and the marks that make their requests ratable) "
                      "were not written: Redis did not answer", left)
            self._pending.clear()

    @property
    def circuits(self) -> Circuits:
        """Redis circuits while Redis answers, in-process ones while it does not."""
        return self._remote if self.online and self._remote else self._local

    def with_circuits(self, action: Callable[[Circuits], T]) -> T:
        """Run a circuit operation on Redis, or in-process if Redis fails meanwhile."""
        return self._run(lambda: action(self._remote), lambda: action(self._local))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ health
    def statuses(self, defaults: Mapping[str, str]) -> dict[str, str]:
        """Live health per model: the Redis cache, else (and then cached) the YAML status."""

        def remote() -> dict[str, str]:
            ids = list(defaults)
            return self._merge_health(ids, self.client.mget(self._health_keys(ids)) if ids else [],
                                      defaults)

        return self._run(remote, lambda: self._local_statuses(defaults))

    def live(self, defaults: Mapping[str, str]) -> Live:
        """Health and availability of these models, as of one moment, in one round trip.

        Every request reads both before choosing; pipelined, they cost one round trip
        instead of two.
        """
        ids = list(defaults)
        circuits = cast(RedisCircuits, self._remote)  # None only without a client: then
        # only local() runs

        def read() -> Live:
            pipe = self.client.pipeline(transaction=False)
            if ids:
                pipe.mget(self._health_keys(ids))
            taken = circuits.queue_snapshot(pipe)
            replies = pipe.execute()
            health = self._merge_health(ids, replies[0] if ids else [], defaults)
            return Live(health, circuits.read_snapshot(replies[-1], ids, taken), taken[0])

        def remote() -> Live:
            try:
                return read()
            except redis.exceptions.NoScriptError:  # a restarted Redis forgot the script
                circuits.load_snapshot_script()
                return read()

        def local() -> Live:
            now = self.clock()
            return Live(self._local_statuses(defaults), self._local.snapshot(ids), now)

        return self._run(remote, local)

    def _health_keys(self, ids: list[str]) -> list[str]:
        return [self.key("health", m) for m in ids]

    def _merge_health(self, ids: list[str], cached: list[Any],
                      defaults: Mapping[str, str]) -> dict[str, str]:
        """Cached statuses over the defaults; models not cached get theirs cached (SET NX)."""
        found = {m: s for m, s in zip(ids, cached) if s}
        missing = [m for m in ids if m not in found]
        if missing:
            pipe = self.client.pipeline(transaction=False)
            for m in missing:
                pipe.set(self.key("health", m), defaults[m], ex=HEALTH_TTL_S, nx=True)
            pipe.execute()
        return {**defaults, **found}

    def _local_statuses(self, defaults: Mapping[str, str]) -> dict[str, str]:
        now = self.clock()
        live = {m: s for m, (s, exp) in self._local_health.items() if exp > now}
        return {**defaults, **{m: s for m, s in live.items() if m in defaults}}

    def reset_model(self, model_id: str) -> None:
        """Forget what the fleet learned about a model: its circuit, cooldown, unusable mark
        and cached health (back to the registry's status). For an operator: a model marked
        by mistake (a mocked failure, a key since fixed). Raises when Redis does not answer:
        a reset only this process saw would be none."""
        self._local.reset(model_id)
        self._local_health.pop(model_id, None)
        if self.client is not None:
            cast(RedisCircuits, self._remote).reset(model_id)
            self.client.delete(self.key("health", model_id))

    def update_health(self, model_id: str, status: str, ttl_s: int = HEALTH_TTL_S) -> None:
        """Cache a model's status for `ttl_s` seconds (the spec's `update_health`)."""
        self._local_health[model_id] = (status, self.clock() + ttl_s)
        self._run(
            lambda: self.client.set(self.key("health", model_id), status, ex=ttl_s), lambda: None
        )

    # ------------------------------------------------------------------ usage
    def log_usage(self, model_id: str, entry: Mapping[str, Any],
                  served: tuple[str, Served | None] | None = None) -> None:
        """Append a JSON usage entry, keeping the last 1000 (queued while Redis is down).

        `served` (request id, who served it) is kept in the same round trip for
        `rating_window_s`, so the request can be rated later; (request id, None) forgets
        who served an earlier request on a reused id, whose latest request served nothing.
        """
        line = json.dumps(entry, separators=(",", ":"), default=str)
        if not self.rating_window_s:
            served = None

        def remote() -> None:
            if self._pending:  # behind what an outage queued: a newer mark must land last
                self._queue_pending((model_id, line, served))
                return
            pipe = self.client.pipeline(transaction=True)
            self._queue_usage(pipe, model_id, line, served)
            pipe.execute()

        if self.client is None:
            self._local_usage.setdefault(model_id, deque(maxlen=USAGE_KEEP)).appendleft(line)
            if served:
                self._remember_locally(*served)
            return
        self._run(remote, lambda: self._queue_pending((model_id, line, served)))

    def _queue_usage(self, pipe: Any, model_id: str, line: str,
                     served: tuple[str, Served | None] | None) -> None:
        pipe.lpush(self.key("usage", model_id), line)
        pipe.ltrim(self.key("usage", model_id), 0, USAGE_KEEP - 1)
        if served:
            request_id, who = served  # one SET: a reused thread id starts unrated
            if who is None:
                pipe.delete(self.key("request", request_id))
            else:
                pipe.set(self.key("request", request_id), json.dumps(who._asdict()),
                         ex=self.rating_window_s)

    def _remember_locally(self, request_id: str, who: Served | None) -> None:
        with self._lock:
            if who is None:
                self._local_served.pop(request_id, None)
                return
            self._local_served[request_id] = (who, None, 0.0)
            while len(self._local_served) > LOCAL_RATABLE:
                del self._local_served[next(iter(self._local_served))]

    # ------------------------------------------------------------------ ratings
    def tally_key(self, domain: str, task_type: str) -> str:
        """The hash of a task kind's ratings: per model, the count (`n:<model>`) and the
        sum (`q:<model>`) as of the time in `t:<model>`, decaying from then on."""
        return f"{self.prefix}model:quality:{domain}:{task_type}"

    def ratings(self, domain: str, task_type: str) -> dict[str, tuple[float, float]]:
        """(count, sum) of ratings per model for this domain and task type, decayed to now."""
        def remote() -> dict[str, tuple[float, float]]:
            return parse_tally(self.client.hgetall(self.tally_key(domain, task_type)),
                               self.clock(), self.rating_half_life_s)

        def local() -> dict[str, tuple[float, float]]:
            now = self.clock()
            with self._lock:
                tally = dict(self._local_tallies.get((domain, task_type), {}))
            return {m: c.at_time(now, self.rating_half_life_s) for m, c in tally.items()}

        return local() if self.client is None else self._run(remote, local)

    def rate(self, request_id: str, quality: float) -> tuple[Served, float | None] | None:
        """Credit a rating to the model that served the request, atomically; a second
        rating of the same request replaces the first. Returns who served it and the
        rating replaced, or None when the request is unknown (never served, or older
        than the rating window).

        Raises:
            redis.RedisError: Redis did not answer (nothing was recorded).
        """
        if self.client is None:
            return self._rate_locally(request_id, quality)
        from graph.ratings import RATE  # graph.ratings imports this module

        key = self.key("request", request_id)
        for _ in range(3):
            raw = self.client.get(key)
            if raw is None:
                return None
            served = json.loads(raw)
            who = Served(served["model_id"], served["domain"], served["task_type"])
            previous = self.client.eval(RATE, 2, key, self.tally_key(who.domain, who.task_type),
                                        repr(float(quality)), who.model_id,
                                        repr(float(self.clock())),
                                        repr(float(self.rating_half_life_s)))
            if previous != -2:  # -2: served again by another model since the read
                break
        if previous == -1:  # expired between the two commands
            return None
        return who, (float(previous) if previous else None)

    def _rate_locally(self, request_id: str, quality: float) -> tuple[Served, float | None] | None:
        with self._lock:
            if request_id not in self._local_served:
                return None
            who, previous, rated_at = self._local_served[request_id]
            now = self.clock()
            tally = self._local_tallies.setdefault((who.domain, who.task_type), {})
            replaced = None if previous is None else (previous, rated_at)
            tally[who.model_id] = tally.get(who.model_id, Credit()).credit(
                quality, now, self.rating_half_life_s, replaced)
            self._local_served[request_id] = (who, quality, now)
            return who, previous

    def forget_ratings(self) -> int:
        """Delete every rating tally under this prefix (a fresh start for `evaluate`)."""
        if self.client is None:
            count = len(self._local_tallies)
            self._local_tallies.clear()
            return count
        keys = list(self.client.scan_iter(f"{self.prefix}model:quality:*", count=500))
        return int(self.client.delete(*keys)) if keys else 0

    def usage(self, model_id: str, last: int = 100) -> list[dict[str, Any]]:
        """The newest `last` usage entries of a model, newest first (parsed JSON, never eval)."""
        raw = self._run(lambda: self.client.lrange(self.key("usage", model_id), 0, last - 1),
                        lambda: list(self._local_usage.get(model_id, ()))[:last])
        return [json.loads(item) for item in raw]

    def init_statuses(self, statuses: Mapping[str, str]) -> None:
        """Load YAML statuses into the health cache (the spec's `--init`)."""
        pipe = self.client.pipeline(transaction=False)
        for model_id, status in statuses.items():
            pipe.set(self.key("health", model_id), status, ex=HEALTH_TTL_S)
        pipe.execute()


def weight(since: float | None, now: float, half_life_s: float) -> float:
    """What weighed 1 at `since` weighs now: halved per half-life (always 1 without one)."""
    if not half_life_s or since is None or now <= since:
        return 1.0
    return 0.5 ** ((now - since) / half_life_s)


class Credit(NamedTuple):
    """One model's ratings on one kind of task: their count and sum as of `at` (epoch s)."""

    n: float = 0.0
    total: float = 0.0
    at: float | None = None

    def at_time(self, now: float, half_life_s: float) -> tuple[float, float]:
        """(count, sum) decayed from `at` to `now`."""
        f = weight(self.at, now, half_life_s)
        return self.n * f, self.total * f

    def credit(self, quality: float, now: float, half_life_s: float,
               replaced: tuple[float, float] | None = None) -> Credit:
        """With a rating given `now`; `replaced`, (rating, when given), is taken out first
        at its decayed weight. The RATE script (graph/ratings.py) does the same in Redis."""
        n, total = self.at_time(now, half_life_s)
        if replaced is not None:
            w = weight(replaced[1], now, half_life_s)
            n, total = max(n - w, 0.0), max(total - replaced[0] * w, 0.0)
        return Credit(n + 1, total + quality, max(self.at or now, now))


def parse_tally(raw: Mapping[str, str], now: float,
                half_life_s: float) -> dict[str, tuple[float, float]]:
    """`{"n:m": "3", "q:m": "2.1", "t:m": "1.8e9"}` -> `{"m": (3.0, 2.1)}` decayed to now
    (a tally written before ratings decayed has no `t:` and is taken as of now)."""
    out: dict[str, tuple[float, float]] = {}
    for field_name, value in raw.items():
        kind, _, model_id = field_name.partition(":")
        if kind == "n":
            at = raw.get(f"t:{model_id}")
            credit = Credit(float(value), float(raw.get(f"q:{model_id}", 0.0)),
                            float(at) if at is not None else None)
            out[model_id] = credit.at_time(now, half_life_s)
    return out
