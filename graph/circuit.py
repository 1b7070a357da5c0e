"""Per-model availability shared by every router process.

Three kinds of state: circuit breakers, rate-limit cooldowns and unusable marks.

`RedisCircuits` keeps one truth in Redis for N processes; `LocalCircuits` has the same
semantics in process memory and stands in while Redis is down (the Redis backend lets
`redis.ConnectionError` / `redis.TimeoutError` through unchanged so the caller can switch).

Time comes from the injected clock, never from Redis `TIME`: tests drive it, and the local
backend has no Redis to ask, so both backends read the same clock. Processes on different
hosts must therefore keep their clocks synchronised (NTP). Skew only moves the moment a
probe is allowed by the skew; that exactly one caller probes comes from each transition
being one atomic Lua script, not from the clocks.

Redis keys (`prefix` lets several deployments or tests share a server):

- `{prefix}model:circuit:{id}`: hash `state`, `failures`, `open_until`, `probe_until`
  (epoch milliseconds). Expires `KEY_GRACE_SECONDS` after the moment its state next matters
  (the end of the timeout or lease, or the last failure of a closed circuit), so a model
  dropped from the registry leaves nothing behind; a model nobody asked about for that long
  starts afresh.
- `{prefix}model:cooldown:{id}`: the cooldown's end (epoch ms), expiring (PX) at that end.
- `{prefix}model:unusable:{id}`: hash `fingerprint`, `reason`; no expiry, lifted by
  `clear_unusable`, `reset` or a changed fingerprint.
- `{prefix}model:availability`: hash model id -> JSON copy of the three keys above, rewritten
  in the same script as every change to them, so the per-request `snapshot` is one `HVALS`
  (reading the three keys of 5,000 models in Lua took ~25 ms).
- `{prefix}model:availability:refresh_at`: sorted set model id -> when the next of its keys
  expires; `snapshot` refreshes those rows first, so the copy follows Redis's expiry and
  rows of models with nothing left are removed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, Protocol, cast

import redis
from redis.commands.core import Script

from graph import circuit_lua
from graph.registry import CircuitBreakerPolicy

BreakerState = Literal["closed", "open", "half_open"]
Admission = Literal["clean", "closed", "probe", "open"]
"""clean: closed with no failures on record, so a success has nothing to reset."""
"""`admit`'s answer: call it, call it as the one probe, or do not call it."""
Clock = Callable[[], float]

KEY_GRACE_SECONDS = 3600
PROBE_LEASE_SECONDS = 30.0
READING_FRESH_S = 0.1
"""How long a snapshot with no record of a model answers `admit` (`_known_clean`)."""
_GRACE_MS = KEY_GRACE_SECONDS * 1000
_CIRCUIT, _COOLDOWN, _UNUSABLE = 1, 2, 3
"""Positions of a model's keys in the scripts' KEYS."""


class UnusableMark(NamedTuple):
    """Why a model cannot be used, valid only for the registry entry and key it was seen with."""

    fingerprint: str
    reason: str


@dataclass(frozen=True, slots=True)
class ModelAvailability:
    """One model's availability state as the selection step sees it (times: epoch seconds)."""

    state: BreakerState = "closed"
    failures: int = 0
    open_until: float | None = None
    probe_until: float | None = None
    """While half-open: when the probe's lease ends and another caller may probe."""
    cooling_until: float | None = None
    """Set only while the cooldown runs."""
    unusable: UnusableMark | None = None


AVAILABLE = ModelAvailability()


def circuit_now(a: ModelAvailability,
                now: float) -> Literal["closed", "open", "probing", "probe_due"]:
    """The circuit as routing treats it at `now`. The stored state changes only when a
    call is admitted, so an open circuit past its timeout (or a half-open one whose probe
    lease ran out) is still stored as it was: `probe_due`, the next call is the probe."""
    if a.state == "open" and a.open_until is not None and now < a.open_until:
        return "open"
    if a.state == "half_open" and a.probe_until is not None and now < a.probe_until:
        return "probing"
    return "closed" if a.state == "closed" else "probe_due"


def exclusion_reason(availability: ModelAvailability, fingerprint: str, now: float) -> str | None:
    """Why the selection step must skip this model now, or None if it may be chosen.

    An open circuit whose timeout has passed is not excluded: `admit` lets one probe through.
    """
    a = availability
    if a.unusable is not None and a.unusable.fingerprint == fingerprint:
        return f"unusable: {a.unusable.reason}"
    circuit = circuit_now(a, now)
    if circuit == "open":
        return f"circuit open until {_iso(a.open_until)}"
    if circuit == "probing":
        return f"circuit half-open, probe in flight until {_iso(a.probe_until)}"
    if a.cooling_until is not None and now < a.cooling_until:
        return f"cooling down (rate limited) until {_iso(a.cooling_until)}"
    return None


_PASSING = ("circuit open until", "circuit half-open", "cooling down")


def passes_with_time(reason: str) -> bool:
    """Whether an `exclusion_reason` passes with time (a circuit, a cooldown), unlike an
    unusable mark, which waits for the registry entry or the key to change."""
    return reason.startswith(_PASSING)


def _iso(epoch: float) -> str:
    try:
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):  # past year 9999: a record no bound held
        return f"epoch {epoch:.0f} s"


class Circuits(Protocol):
    """What the router needs from an availability store; both backends provide it."""

    def admit(self, model_id: str) -> Admission:
        """May a call go to this model now? Moves an expired open circuit to half-open."""
        ...

    def record_failure(self, model_id: str, policy: CircuitBreakerPolicy) -> BreakerState:
        """Count a failed call; returns the circuit's state afterwards."""
        ...

    def record_success(self, model_id: str) -> None:
        """Close the circuit and forget its failures."""
        ...

    def cool_down(self, model_id: str, seconds: float) -> float:
        """Rest the model for `seconds` unless it already rests longer; returns the end."""
        ...

    def cooling_until(self, model_id: str) -> float | None:
        """When the model's cooldown ends, or None if it is not cooling down."""
        ...

    def mark_unusable(self, model_id: str, fingerprint: str, reason: str) -> None:
        """Mark the model unusable for as long as its fingerprint stays `fingerprint`."""
        ...

    def clear_unusable(self, model_id: str) -> None:
        """Lift the unusable mark."""
        ...

    def reset(self, model_id: str) -> None:
        """Forget everything about the model: circuit, cooldown and unusable mark."""
        ...

    def snapshot(self, model_ids: Iterable[str]) -> dict[str, ModelAvailability]:
        """Every listed model's availability, read at once."""
        ...


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisCircuits:
    """Availability shared through one Redis server; each operation is one round trip."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "",
        clock: Clock = time.time,
        probe_lease_seconds: float = PROBE_LEASE_SECONDS,
    ) -> None:
        self._r = client
        self._prefix = prefix
        self._clock = clock
        self._lease_ms = _ms(probe_lease_seconds)
        self._shared = [f"{prefix}model:availability", f"{prefix}model:availability:refresh_at"]
        self._admit = client.register_script(circuit_lua.ADMIT)
        self._failure = client.register_script(circuit_lua.RECORD_FAILURE)
        self._cool = client.register_script(circuit_lua.COOL_DOWN)
        self._mark = client.register_script(circuit_lua.MARK_UNUSABLE)
        self._delete = client.register_script(circuit_lua.DELETE)
        self._snapshot = client.register_script(circuit_lua.SNAPSHOT)
        self._rows: dict[str, tuple[str, ModelAvailability]] = {}
        """The last snapshot's rows, parsed: most rows do not change between requests."""
        self._reading: tuple[float, frozenset[str], int] | None = None
        """When the last snapshot was taken, which models it held any record of, and this
        process's write count then: any write since voids it."""
        self._writes = 0
        """Counted as each write starts and again as it ends (under `_count_lock`): a
        snapshot taken while a write of this process was in flight, or before it, cannot
        be read as newer than the write."""
        self._count_lock = threading.Lock()

    def _key(self, kind: str, model_id: str) -> str:
        return f"{self._prefix}model:{kind}:{model_id}"

    def _run(self, script: Script, model_id: str, *args: int | str) -> Any:
        # this process changes (or, admitting, may change) a record: before and after
        self._count_write()
        keys = [self._key(kind, model_id) for kind in ("circuit", "cooldown", "unusable")]
        try:
            return script(keys=keys + self._shared, args=[_ms(self._clock()), model_id, *args])
        finally:
            self._count_write()

    def _count_write(self) -> None:
        with self._count_lock:
            self._writes += 1

    def admit(self, model_id: str) -> Admission:
        """See `Circuits.admit`; answered without a round trip when `_known_clean`."""
        if self._known_clean(model_id, self._clock()):
            return "clean"
        answer = self._run(self._admit, model_id, self._lease_ms, _GRACE_MS)
        return cast(Admission, _text(answer))

    def record_failure(self, model_id: str, policy: CircuitBreakerPolicy) -> BreakerState:
        """See `Circuits.record_failure`."""
        threshold, timeout = policy.failure_threshold, _ms(policy.timeout_seconds)
        state = self._run(self._failure, model_id, threshold, timeout, _GRACE_MS)
        return cast(BreakerState, _text(state))

    def record_success(self, model_id: str) -> None:
        """See `Circuits.record_success`."""
        self._run(self._delete, model_id, _CIRCUIT)

    def cool_down(self, model_id: str, seconds: float) -> float:
        """See `Circuits.cool_down`; `seconds` must be positive."""
        _check_cooldown(seconds)
        until = _ms(self._clock() + seconds)
        return int(self._run(self._cool, model_id, until, max(_ms(seconds), 1))) / 1000

    def cooling_until(self, model_id: str) -> float | None:
        """See `Circuits.cooling_until`."""
        raw = self._r.get(self._key("cooldown", model_id))
        until = int(raw) / 1000 if raw else None
        return until if until is not None and until > self._clock() else None

    def mark_unusable(self, model_id: str, fingerprint: str, reason: str) -> None:
        """See `Circuits.mark_unusable`."""
        self._run(self._mark, model_id, fingerprint, reason)

    def clear_unusable(self, model_id: str) -> None:
        """See `Circuits.clear_unusable`."""
        self._run(self._delete, model_id, _UNUSABLE)

    def reset(self, model_id: str) -> None:
        """See `Circuits.reset`."""
        self._run(self._delete, model_id, _CIRCUIT, _COOLDOWN, _UNUSABLE)

    def snapshot(self, model_ids: Iterable[str]) -> dict[str, ModelAvailability]:
        """See `Circuits.snapshot`: one `HVALS` of the rows the write scripts keep current."""
        taken = (self._clock(), self._writes)
        blob = self._snapshot(keys=self._shared, args=[_ms(taken[0]), self._prefix])
        return self.read_snapshot(blob, model_ids, taken)

    def queue_snapshot(self, pipe: redis.client.Pipeline) -> tuple[float, int]:
        """Add the snapshot to `pipe`, to be read with `read_snapshot`; returns when it was
        taken (its time, and this process's writes by then).

        By SHA, not through the Script object: given a Script, a pipeline first asks Redis
        whether the script exists, one more round trip. A Redis that lost its scripts
        answers NoScriptError; `load_snapshot_script` then loads it.
        """
        now = self._clock()
        pipe.evalsha(self._snapshot.sha, len(self._shared), *self._shared, _ms(now),
                     self._prefix)
        return now, self._writes

    def load_snapshot_script(self) -> None:
        """Load the snapshot script (after a NoScriptError from a queued snapshot)."""
        self._r.script_load(self._snapshot.script)

    def read_snapshot(self, blob: bytes | str, model_ids: Iterable[str],
                      taken: tuple[float, int]) -> dict[str, ModelAvailability]:
        """Parse a snapshot (`taken` as `queue_snapshot` says); reuses the rows parsed last
        time. It is the latest reading, which `admit` trusts only while this process has
        made no write since it was taken (nor had one in flight then)."""
        now, writes = taken
        blob = _text(blob)
        known, rows, found = self._rows, {}, {}
        for line in blob.split("\n") if blob else ():
            model_id, availability = rows[line] = known.get(line) or _parse(line)
            found[model_id] = _as_of(availability, now)
        self._rows = rows
        self._reading = (now, frozenset(found), writes)
        return {model_id: found.get(model_id, AVAILABLE) for model_id in model_ids}

    def _known_clean(self, model_id: str, now: float) -> bool:
        """Whether `admit` could only answer "clean": the last snapshot, taken by any request
        of this process under READING_FRESH_S ago and with no write from it since, held no
        record of the model (no failures, circuit, cooldown or mark).

        The snapshot covers every model with a record, whichever models its request asked
        about. Under load it is a few milliseconds old; idle, it is the request's own, a
        fraction of a millisecond before its first call. A circuit another process opens in
        that window is missed, as one opening just after `admit` would be.
        """
        reading = self._reading
        return (reading is not None and reading[2] == self._writes
                and 0 <= now - reading[0] < READING_FRESH_S and model_id not in reading[1])


def _parse(line: str) -> tuple[str, ModelAvailability]:
    """One row of `circuit_lua.SNAPSHOT`, a JSON array where `false` stands for absent."""
    row = json.loads(line)
    model_id, state, failures, open_until, probe_until, cooling, fingerprint, reason = row
    return model_id, ModelAvailability(
        state=state or "closed",
        failures=int(failures or 0),
        open_until=int(open_until) / 1000 if open_until else None,
        probe_until=int(probe_until) / 1000 if probe_until else None,
        cooling_until=int(cooling) / 1000 if cooling else None,
        unusable=UnusableMark(fingerprint, reason or "") if fingerprint else None,
    )


class LocalCircuits:
    """The same semantics in this process's memory, thread-safe: the stand-in while Redis is down.

    It keeps no key expiries, as it lives only as long as the outage.
    """

    def __init__(
        self, clock: Clock = time.time, probe_lease_seconds: float = PROBE_LEASE_SECONDS
    ) -> None:
        self._clock = clock
        self._lease = probe_lease_seconds
        self._lock = threading.Lock()
        self._models: dict[str, ModelAvailability] = {}
        """Only models with some state; the others are `AVAILABLE`."""

    def _get(self, model_id: str) -> ModelAvailability:
        return self._models.get(model_id, AVAILABLE)

    def _put(self, model_id: str, availability: ModelAvailability) -> None:
        if availability == AVAILABLE:
            self._models.pop(model_id, None)
        else:
            self._models[model_id] = availability

    def admit(self, model_id: str) -> Admission:
        """See `Circuits.admit`."""
        with self._lock:
            current = self._get(model_id)
            if current.state == "closed":
                return "closed" if current.failures else "clean"
            now = self._clock()
            ends = current.open_until if current.state == "open" else current.probe_until
            if ends is not None and now < ends:
                return "open"
            self._put(model_id, replace(current, state="half_open", probe_until=now + self._lease))
            return "probe"

    def record_failure(self, model_id: str, policy: CircuitBreakerPolicy) -> BreakerState:
        """See `Circuits.record_failure`."""
        with self._lock:
            current = self._get(model_id)
            failures = current.failures + 1
            if current.state == "half_open" or (
                current.state == "closed" and failures >= policy.failure_threshold
            ):
                open_until = self._clock() + policy.timeout_seconds
                current = replace(current, state="open", open_until=open_until, probe_until=None)
            self._put(model_id, replace(current, failures=failures))
            return current.state

    def record_success(self, model_id: str) -> None:
        """See `Circuits.record_success`."""
        with self._lock:
            closed = replace(
                self._get(model_id), state="closed", failures=0, open_until=None, probe_until=None
            )
            self._put(model_id, closed)

    def cool_down(self, model_id: str, seconds: float) -> float:
        """See `Circuits.cool_down`; `seconds` must be positive."""
        _check_cooldown(seconds)
        with self._lock:
            current = self._get(model_id)
            until = max(self._clock() + seconds, current.cooling_until or 0.0)
            self._put(model_id, replace(current, cooling_until=until))
            return until

    def cooling_until(self, model_id: str) -> float | None:
        """See `Circuits.cooling_until`."""
        with self._lock:
            return _as_of(self._get(model_id), self._clock()).cooling_until

    def mark_unusable(self, model_id: str, fingerprint: str, reason: str) -> None:
        """See `Circuits.mark_unusable`."""
        with self._lock:
            mark = UnusableMark(fingerprint, reason)
            self._put(model_id, replace(self._get(model_id), unusable=mark))

    def clear_unusable(self, model_id: str) -> None:
        """See `Circuits.clear_unusable`."""
        with self._lock:
            self._put(model_id, replace(self._get(model_id), unusable=None))

    def reset(self, model_id: str) -> None:
        """See `Circuits.reset`."""
        with self._lock:
            self._models.pop(model_id, None)

    def snapshot(self, model_ids: Iterable[str]) -> dict[str, ModelAvailability]:
        """See `Circuits.snapshot`."""
        with self._lock:
            now, models = self._clock(), self._models
            return {
                model_id: _as_of(models.get(model_id, AVAILABLE), now) for model_id in model_ids
            }


def _as_of(availability: ModelAvailability, now: float) -> ModelAvailability:
    """Without a cooldown that has ended (a stored copy may still hold it)."""
    cooling = availability.cooling_until
    if cooling is None or cooling > now:
        return availability
    return replace(availability, cooling_until=None)


def _check_cooldown(seconds: float) -> None:
    if seconds <= 0:
        raise ValueError(f"cooldown must be positive, got {seconds}")
