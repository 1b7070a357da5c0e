"""Circuit breakers, cooldowns and unusable marks, on a real Redis and in process.

Time is a fake clock injected into both backends; only the test of Redis's own key expiry
sleeps (0.15 s).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from graph.circuit import (
    AVAILABLE,
    KEY_GRACE_SECONDS,
    Circuits,
    LocalCircuits,
    ModelAvailability,
    RedisCircuits,
    UnusableMark,
    exclusion_reason,
)
from graph.registry import CircuitBreakerPolicy

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
POLICY = CircuitBreakerPolicy(failure_threshold=3, timeout_seconds=60)
LEASE = 30.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingConnection(redis.Connection):
    """Counts what goes over the wire: a pipeline or a script call is one send."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sent += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    pool = redis.ConnectionPool.from_url(REDIS_URL, connection_class=CountingConnection)
    client = redis.Redis(connection_pool=pool)
    yield client
    client.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    prefix = f"test:circuit:{uuid.uuid4().hex}:"
    yield prefix
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_redis(client: redis.Redis, prefix: str, clock: FakeClock) -> Callable[[], RedisCircuits]:
    return lambda: RedisCircuits(client, prefix, clock=clock, probe_lease_seconds=LEASE)


@pytest.fixture(params=["redis", "local"])
def circuits(
    request: pytest.FixtureRequest, make_redis: Callable[[], RedisCircuits], clock: FakeClock
) -> Circuits:
    if request.param == "redis":
        return make_redis()
    return LocalCircuits(clock=clock, probe_lease_seconds=LEASE)


def open_circuit(circuits: Circuits, model_id: str = "m") -> None:
    for _ in range(POLICY.failure_threshold):
        circuits.record_failure(model_id, POLICY)


def state(circuits: Circuits, model_id: str = "m") -> ModelAvailability:
    return circuits.snapshot([model_id])[model_id]


# --- breaker transitions, both backends ---


def test_closed_circuit_admits(circuits: Circuits) -> None:
    assert circuits.admit("m") == "clean"
    assert state(circuits) == AVAILABLE


def test_opens_at_threshold(circuits: Circuits) -> None:
    assert circuits.record_failure("m", POLICY) == "closed"
    assert circuits.record_failure("m", POLICY) == "closed"
    assert circuits.admit("m") == "closed"
    assert state(circuits) == ModelAvailability("closed", failures=2)

    assert circuits.record_failure("m", POLICY) == "open"
    assert state(circuits) == ModelAvailability("open", failures=3, open_until=T0 + 60)
    assert circuits.admit("m") == "open"


def test_stays_open_until_timeout(circuits: Circuits, clock: FakeClock) -> None:
    open_circuit(circuits)
    clock.advance(59.999)
    assert circuits.admit("m") == "open"
    clock.advance(0.001)
    assert circuits.admit("m") == "probe"


def test_failures_while_open_only_count(circuits: Circuits, clock: FakeClock) -> None:
    open_circuit(circuits)
    clock.advance(10)
    assert circuits.record_failure("m", POLICY) == "open"
    assert state(circuits) == ModelAvailability("open", failures=4, open_until=T0 + 60)


def test_expired_circuit_gives_exactly_one_probe(circuits: Circuits, clock: FakeClock) -> None:
    open_circuit(circuits)
    clock.advance(60)
    assert circuits.admit("m") == "probe"
    assert [circuits.admit("m") for _ in range(5)] == ["open"] * 5
    assert state(circuits) == ModelAvailability(
        "half_open", failures=3, open_until=T0 + 60, probe_until=T0 + 60 + LEASE
    )


def test_probe_success_closes(circuits: Circuits, clock: FakeClock) -> None:
    open_circuit(circuits)
    clock.advance(60)
    assert circuits.admit("m") == "probe"
    circuits.record_success("m")
    assert circuits.admit("m") == "clean"
    assert state(circuits) == AVAILABLE


def test_probe_failure_reopens_for_a_fresh_timeout(circuits: Circuits, clock: FakeClock) -> None:
    open_circuit(circuits)
    clock.advance(60)
    assert circuits.admit("m") == "probe"
    clock.advance(5)
    assert circuits.record_failure("m", POLICY) == "open"
    assert state(circuits) == ModelAvailability("open", failures=4, open_until=T0 + 125)
    clock.advance(59.999)
    assert circuits.admit("m") == "open"
    clock.advance(0.001)
    assert circuits.admit("m") == "probe"


def test_lease_expiry_lets_a_new_probe_through(circuits: Circuits, clock: FakeClock) -> None:
    open_circuit(circuits)
    clock.advance(60)
    assert circuits.admit("m") == "probe"
    clock.advance(LEASE - 0.001)
    assert circuits.admit("m") == "open"
    clock.advance(0.001)
    assert circuits.admit("m") == "probe"
    assert circuits.admit("m") == "open"
    assert state(circuits).probe_until == T0 + 60 + 2 * LEASE


def test_success_resets_the_failure_count(circuits: Circuits) -> None:
    circuits.record_failure("m", POLICY)
    circuits.record_failure("m", POLICY)
    circuits.record_success("m")
    assert state(circuits) == AVAILABLE
    assert circuits.record_failure("m", POLICY) == "closed"
    assert circuits.record_failure("m", POLICY) == "closed"
    assert state(circuits).failures == 2


def test_models_are_independent(circuits: Circuits) -> None:
    open_circuit(circuits, "a")
    assert circuits.admit("a") == "open"
    assert circuits.admit("b") == "clean"


def test_half_open_under_16_threads(circuits: Circuits, clock: FakeClock) -> None:
    open_circuit(circuits)
    circuits.admit("other")  # loads the script before the race
    clock.advance(60)
    barrier = threading.Barrier(16)
    answers: list[str] = []

    def race() -> None:
        barrier.wait()
        answers.append(circuits.admit("m"))

    threads = [threading.Thread(target=race) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(answers) == ["open"] * 15 + ["probe"]


def _admit_in_process(
    url: str, prefix: str, now: float, barrier: Any, answers: multiprocessing.Queue[str]
) -> None:
    client = redis.Redis.from_url(url)
    circuits = RedisCircuits(client, prefix, clock=lambda: now)
    client.ping()
    barrier.wait()
    answers.put(circuits.admit("m"))
    client.close()


@pytest.mark.slow
def test_half_open_under_4_processes(
    make_redis: Callable[[], RedisCircuits], prefix: str, clock: FakeClock
) -> None:
    circuits = make_redis()
    open_circuit(circuits)
    circuits.admit("other")
    ctx = multiprocessing.get_context("spawn")
    barrier, answers = ctx.Barrier(4), ctx.Queue()
    args = (REDIS_URL, prefix, T0 + 60, barrier, answers)
    processes = [ctx.Process(target=_admit_in_process, args=args) for _ in range(4)]
    for process in processes:
        process.start()
    results = sorted(answers.get(timeout=30) for _ in processes)
    for process in processes:
        process.join(timeout=10)
    assert results == ["open", "open", "open", "probe"]


# --- cooldowns ---


def test_cooldown_longer_wins_and_ends(circuits: Circuits, clock: FakeClock) -> None:
    assert circuits.cooling_until("m") is None
    assert circuits.cool_down("m", 30) == T0 + 30
    assert circuits.cool_down("m", 10) == T0 + 30
    assert circuits.cooling_until("m") == T0 + 30
    assert circuits.cool_down("m", 60) == T0 + 60
    assert state(circuits) == ModelAvailability(cooling_until=T0 + 60)
    clock.advance(59.999)
    assert circuits.cooling_until("m") == T0 + 60
    clock.advance(0.001)
    assert circuits.cooling_until("m") is None
    assert state(circuits) == AVAILABLE


def test_cooldown_must_be_positive(circuits: Circuits) -> None:
    with pytest.raises(ValueError, match="positive"):
        circuits.cool_down("m", 0)


def test_snapshot_follows_redis_key_expiry(client: redis.Redis, prefix: str) -> None:
    circuits = RedisCircuits(client, prefix)
    circuits.record_failure("a", POLICY)
    circuits.cool_down("a", 0.1)
    circuits.cool_down("b", 0.1)
    assert circuits.cooling_until("a") is not None
    assert 0 < client.pttl(f"{prefix}model:cooldown:a") <= 100
    time.sleep(0.15)
    assert circuits.cooling_until("a") is None
    assert circuits.snapshot(["a", "b"]) == {"a": ModelAvailability(failures=1), "b": AVAILABLE}
    assert client.hkeys(f"{prefix}model:availability") == [b"a"]
    refresh_at = client.zscore(f"{prefix}model:availability:refresh_at", "a")
    assert refresh_at is not None and refresh_at > (time.time() + KEY_GRACE_SECONDS - 5) * 1000


def test_circuit_keys_expire_after_their_state_stops_mattering(
    make_redis: Callable[[], RedisCircuits], client: redis.Redis, prefix: str, clock: FakeClock
) -> None:
    circuits, key = make_redis(), f"{prefix}model:circuit:m"
    grace_ms = KEY_GRACE_SECONDS * 1000
    circuits.record_failure("m", POLICY)
    assert grace_ms - 1000 < client.pttl(key) <= grace_ms
    open_circuit(circuits)
    assert grace_ms + 59_000 < client.pttl(key) <= grace_ms + 60_000
    clock.advance(60)
    circuits.admit("m")
    assert grace_ms + 29_000 < client.pttl(key) <= grace_ms + 30_000


# --- unusable marks ---


def test_unusable_only_while_the_fingerprint_matches(circuits: Circuits, clock: FakeClock) -> None:
    circuits.mark_unusable("m", "fp-1", "authentication failed (401)")
    mark = state(circuits).unusable
    assert mark == UnusableMark("fp-1", "authentication failed (401)")
    assert exclusion_reason(state(circuits), "fp-1", clock()) == (
        "unusable: authentication failed (401)"
    )
    assert exclusion_reason(state(circuits), "fp-2", clock()) is None
    circuits.clear_unusable("m")
    assert state(circuits) == AVAILABLE


def test_odd_characters_survive_the_snapshot(circuits: Circuits, clock: FakeClock) -> None:
    model_id, reason = 'openai/gpt-4o:"eu"\n', 'bad key\n"quoted" \x1f ünïcode / \\'
    circuits.mark_unusable(model_id, "fp\n1", reason)
    circuits.record_failure(model_id, POLICY)
    expected = ModelAvailability(failures=1, unusable=UnusableMark("fp\n1", reason))
    assert circuits.snapshot([model_id, "other"]) == {model_id: expected, "other": AVAILABLE}


def test_unusable_mark_stores_only_what_it_is_given(
    make_redis: Callable[[], RedisCircuits], client: redis.Redis, prefix: str
) -> None:
    make_redis().mark_unusable("m", "fp-1", "model not found")
    stored = client.hgetall(f"{prefix}model:unusable:m")
    assert stored == {b"fingerprint": b"fp-1", b"reason": b"model not found"}


def test_reset_forgets_everything(circuits: Circuits) -> None:
    open_circuit(circuits)
    circuits.cool_down("m", 30)
    circuits.mark_unusable("m", "fp", "gone")
    circuits.reset("m")
    assert state(circuits) == AVAILABLE
    assert circuits.admit("m") == "clean"


# --- snapshot ---


def scripted_history(circuits: Circuits, clock: FakeClock, models: int) -> None:
    """A mix of every kind of state over `models` models, the same for any backend."""
    for i in range(0, models, 7):
        open_circuit(circuits, f"m{i}")
    for i in range(1, models, 11):
        circuits.record_failure(f"m{i}", POLICY)
    for i in range(2, models, 13):
        circuits.cool_down(f"m{i}", 30 + i % 90)  # some end before the snapshot
    for i in range(3, models, 17):
        circuits.mark_unusable(f"m{i}", f"fp{i}", "model not found")
    clock.advance(60)
    for i in range(0, models, 14):
        circuits.admit(f"m{i}")


def test_backends_agree(make_redis: Callable[[], RedisCircuits], clock: FakeClock) -> None:
    ids = [f"m{i}" for i in range(500)]
    redis_circuits = make_redis()
    scripted_history(redis_circuits, clock, 500)
    clock.now = T0
    local = LocalCircuits(clock=clock, probe_lease_seconds=LEASE)
    scripted_history(local, clock, 500)
    snapshot = redis_circuits.snapshot(ids)
    assert snapshot == local.snapshot(ids)
    assert snapshot["m0"].state == "half_open"
    assert snapshot["m7"].state == "open"
    assert snapshot["m1"] == ModelAvailability(failures=1)
    assert snapshot["m3"].unusable == UnusableMark("fp3", "model not found")
    assert snapshot["m4"] == AVAILABLE
    assert snapshot["m41"] == ModelAvailability(cooling_until=T0 + 71)
    assert snapshot["m2"] == AVAILABLE


@pytest.mark.parametrize("models", [58, 5000])
def test_snapshot_is_one_round_trip(
    make_redis: Callable[[], RedisCircuits], clock: FakeClock, models: int
) -> None:
    circuits = make_redis()
    scripted_history(circuits, clock, min(models, 200))
    ids = [f"m{i}" for i in range(models)]
    circuits.snapshot(ids)  # loads the script
    before = CountingConnection.sent
    snapshot = circuits.snapshot(ids)
    assert CountingConnection.sent - before == 1
    assert list(snapshot) == ids
    assert snapshot["m7"].state == "open"
    assert snapshot[ids[-1]] == AVAILABLE


def test_every_operation_is_one_round_trip(make_redis: Callable[[], RedisCircuits]) -> None:
    circuits = make_redis()
    operations: list[Callable[[], object]] = [  # admit after a write: Redis must answer
        lambda: circuits.record_failure("m", POLICY),
        lambda: circuits.admit("m"),
        lambda: circuits.record_success("m"),
        lambda: circuits.cool_down("m", 5),
        lambda: circuits.cooling_until("m"),
        lambda: circuits.mark_unusable("m", "fp", "gone"),
        lambda: circuits.clear_unusable("m"),
        lambda: circuits.reset("m"),
        lambda: circuits.snapshot(["m"]),
    ]
    for operation in operations:
        operation()  # loads the scripts
    for operation in operations:
        before = CountingConnection.sent
        operation()
        assert CountingConnection.sent - before == 1


def test_instances_share_one_truth(make_redis: Callable[[], RedisCircuits]) -> None:
    first, second = make_redis(), make_redis()
    open_circuit(first)
    assert second.admit("m") == "open"
    assert second.snapshot(["m"]) == first.snapshot(["m"])
    second.record_success("m")
    assert first.snapshot(["m"]) == {"m": AVAILABLE}


def test_decoded_responses_work(prefix: str, clock: FakeClock) -> None:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    circuits = RedisCircuits(client, prefix, clock=clock)
    open_circuit(circuits)
    assert circuits.admit("m") == "open"
    assert state(circuits) == ModelAvailability("open", failures=3, open_until=T0 + 60)
    client.close()


def test_redis_errors_propagate_unchanged() -> None:
    no_retry = Retry(NoBackoff(), retries=0)
    circuits = RedisCircuits(redis.Redis(port=1, socket_connect_timeout=0.2, retry=no_retry))
    with pytest.raises(redis.ConnectionError):
        circuits.admit("m")
    with pytest.raises(redis.ConnectionError):
        circuits.snapshot(["m"])


# --- exclusion reasons ---


@pytest.mark.parametrize(
    ("availability", "reason"),
    [
        (AVAILABLE, None),
        (ModelAvailability(failures=2), None),
        (
            ModelAvailability("open", 3, open_until=T0 + 600),
            "circuit open until 2027-01-15T08:10:00Z",
        ),
        (ModelAvailability("open", 3, open_until=T0), None),
        (
            ModelAvailability("half_open", 3, open_until=T0 - 1, probe_until=T0 + 30),
            "circuit half-open, probe in flight until 2027-01-15T08:00:30Z",
        ),
        (ModelAvailability("half_open", 3, open_until=T0 - 31, probe_until=T0), None),
        (
            ModelAvailability(cooling_until=T0 + 90),
            "cooling down (rate limited) until 2027-01-15T08:01:30Z",
        ),
        (ModelAvailability(unusable=UnusableMark("fp", "auth failed")), "unusable: auth failed"),
        (ModelAvailability(unusable=UnusableMark("old", "auth failed")), None),
        (
            ModelAvailability(
                "open", 3, open_until=T0 + 600, unusable=UnusableMark("fp", "auth failed")
            ),
            "unusable: auth failed",
        ),
    ],
)
def test_exclusion_reason(availability: ModelAvailability, reason: str | None) -> None:
    assert exclusion_reason(availability, "fp", T0) == reason


def test_admit_answers_from_a_fresh_clean_reading_without_a_round_trip(
        make_redis: Callable[[], RedisCircuits], clock: FakeClock) -> None:
    from graph.circuit import READING_FRESH_S

    warm = make_redis()  # loads the scripts and opens the connection
    warm.admit("a")
    warm.snapshot(["a"])
    circuits = make_redis()

    def round_trips(operation: Callable[[], object], answer: str) -> int:
        before = CountingConnection.sent
        assert operation() == answer
        return CountingConnection.sent - before

    assert round_trips(lambda: circuits.admit("a"), "clean") == 1  # nothing read yet
    circuits.record_failure("b", POLICY)
    circuits.snapshot(["a"])  # asked about a only: the reading still covers b
    assert round_trips(lambda: circuits.admit("a"), "clean") == 0
    assert round_trips(lambda: circuits.admit("b"), "closed") == 1  # a failure on record
    circuits.snapshot(["a"])
    clock.advance(2 * READING_FRESH_S)
    assert round_trips(lambda: circuits.admit("a"), "clean") == 1  # stale
    circuits.snapshot(["a"])
    circuits.cool_down("c", 5)  # any write from this process voids the reading
    assert round_trips(lambda: circuits.admit("a"), "clean") == 1


def test_a_snapshot_taken_before_a_write_of_this_process_is_not_its_latest_reading(
        make_redis: Callable[[], RedisCircuits], client: redis.Redis) -> None:
    """One thread's snapshot, read after another thread opened a circuit, was installed
    as the latest reading: `admit` answered "clean" from it, for an open circuit."""
    circuits = make_redis()
    pipe = client.pipeline(transaction=False)
    taken = circuits.queue_snapshot(pipe)
    [blob] = pipe.execute()  # thread A's snapshot: no record of m yet
    open_circuit(circuits)  # thread B, meanwhile
    circuits.read_snapshot(blob, ["m"], taken)  # thread A reads its (older) snapshot
    assert circuits.admit("m") == "open"


def test_a_snapshot_taken_while_a_write_of_this_process_was_in_flight_is_not_trusted(
        make_redis: Callable[[], RedisCircuits], client: redis.Redis) -> None:
    """The count was raised only as a write started: a snapshot taken after that but
    before the write reached Redis looked current, and admit answered "clean"."""
    circuits = make_redis()
    at_once = CircuitBreakerPolicy(failure_threshold=1, timeout_seconds=60)
    script = circuits._failure
    snapshots = []

    def failure_after_a_snapshot(*args, **kwargs):  # thread A snapshots mid-write
        pipe = client.pipeline(transaction=False)
        taken = circuits.queue_snapshot(pipe)
        snapshots.append((pipe.execute()[0], taken))
        return script(*args, **kwargs)

    circuits._failure = failure_after_a_snapshot
    assert circuits.record_failure("m", at_once) == "open"  # thread B's write lands
    blob, taken = snapshots[0]
    circuits.read_snapshot(blob, ["m"], taken)  # A reads the older snapshot
    assert circuits.admit("m") == "open"
