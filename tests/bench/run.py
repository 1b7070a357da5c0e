"""The performance benchmark suite, one command:

    python -m tests.bench.run [--quick] [--json out.json] [--redis-url URL]

Measures, in one run and on the same mocked request (LiteLLM `mock_response`, no network):

1. selection: the decision alone (analyze_context + query_registry + score run directly
   on a real Store, Redis reads included) at the 58-model registry and at a generated
   5,000-model one, with its parts (`Store.live`, `unavailable_reasons`, pure `select`);
2. in-memory: a whole graph run (no checkpointer) vs bare `litellm.completion` vs LiteLLM
   `Router.completion` with fallbacks, interleaved, with the fallback path and the graph's
   skeleton (LangGraph's own cost: no node work, no model call);
3. checkpointed: the graph with the Redis checkpointer, durability sync / async / exit;
4. throughput: `graph.ainvoke` at concurrency 1, 10 and 100 with 50 ms of simulated
   provider latency, vs bare `litellm.acompletion`;
5. cold start (`python -c "import graph"`, `model-selector select ...`) and the memory of
   a process serving 10,000 graph requests.

Prints tables and PASS/FAIL per target; `--json` writes every figure. `--quick` divides
iteration counts by 10 (CI smoke). Redis: `--redis-url`, else `BENCH_REDIS_URL`, else
`TEST_REDIS_URL`, else redis://127.0.0.1:6379/15; every key is under a unique prefix and
deleted at the end.
See docs/benchmarks.md.
"""

from __future__ import annotations

import dataclasses

from . import common  # first: forces the offline price map  # isort: skip

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import redis

from .stats import interleaved, percentile, slope, summarize_ns

CLI_ARGS = ["select", "--task-type", "code_fix", "--domain", "self_heal",
            "--complexity", "simple", "--priority", "critical",
            "--max-cost-usd", "0.01", "--max-latency-ms", "2000"]
SECTIONS = ("machine", "selection", "in_memory", "checkpointed", "throughput",
            "cold_start", "memory", "targets")


@dataclass(frozen=True)
class Plan:
    """How much to measure. `full()` is the documented run, `quick()` a tenth of it."""

    mem_iters: int = 2000
    """Iterations of in-memory cases (selection at 58 models, graph vs LiteLLM)."""
    redis_iters: int = 500
    """Iterations of checkpointed cases and of selection at the large registry."""
    large_size: int = 5000
    throughput: tuple[tuple[int, int], ...] = ((1, 200), (10, 1000), (100, 2000))
    """(concurrency, requests) pairs."""
    delay_s: float = 0.05
    cold_runs: int = 5
    memory_requests: int = 10_000
    memory_every: int = 1_000
    quick: bool = False

    @classmethod
    def full(cls) -> Plan:
        return cls()

    @classmethod
    def quick_plan(cls) -> Plan:
        """Every count divided by 10 (cold-start runs: 2)."""
        full = cls()
        return replace(
            full, mem_iters=full.mem_iters // 10, redis_iters=full.redis_iters // 10,
            throughput=tuple((c, max(c, n // 10)) for c, n in full.throughput),
            cold_runs=2, memory_requests=full.memory_requests // 10,
            memory_every=full.memory_every // 10, quick=True,
        )

    @staticmethod
    def warmup(iters: int) -> int:
        """Warm-up rounds before timing: a tenth of the timed ones, at least 3."""
        return max(3, iters // 10)


@dataclass
class Env:
    """The run's Redis, key prefix, temp dir and the real registry's services."""

    url: str
    prefix: str
    tmp: Path
    log: Callable[[str], None]
    services: Any = None
    registry: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- machine
def _pkg(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(url: str) -> dict[str, Any]:
    """Cores, CPU, load, interpreter and the versions that the figures depend on."""
    client = redis.Redis.from_url(url)
    server = client.info("server").get("redis_version", "?")
    client.close()
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": _cpu_model(),
        "loadavg_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "litellm": _pkg("litellm"),
        "langgraph": _pkg("langgraph"),
        "langgraph_checkpoint": _pkg("langgraph-checkpoint"),
        "langgraph_checkpoint_plainredis": _pkg("langgraph-checkpoint-plainredis"),
        "langchain_core": _pkg("langchain-core"),
        "langchain_litellm": _pkg("langchain-litellm"),
        "pydantic": _pkg("pydantic"),
        "redis_py": _pkg("redis"),
        "hiredis": _pkg("hiredis"),
        "redis_server": server,
    }


# --------------------------------------------------------------------------- 1 selection
def decision_runner(services: Any) -> Callable[[], dict[str, Any]]:
    """analyze_context -> query_registry -> score, called as the graph calls them."""
    from langgraph.runtime import Runtime

    from nodes.analyze_context import analyze_context
    from nodes.query_registry import query_registry
    from nodes.score import score

    runtime = Runtime(context=common.SETTINGS)
    config: dict[str, Any] = {"configurable": {}}

    def run() -> dict[str, Any]:
        state: dict[str, Any] = common.graph_input()
        state.update(analyze_context(state, runtime, config, services=services))
        state["attempts"] = []  # the reducer's answer to analyze_context's None
        state.update(query_registry(state, runtime, services=services))
        state.update(score(state, runtime, services=services))
        return state

    return run


def bench_selection(env: Env, registry: Any, services: Any, iters: int) -> dict[str, Any]:
    """The decision and its parts at one registry size."""
    from graph.context import TaskContext
    from nodes.availability import unavailable_reasons
    from nodes.scoring import effective_weights
    from nodes.selection import Limits, select

    store = services.store
    decide = decision_runner(services)
    first = decide()
    if not first["chain"]:
        raise RuntimeError("selection produced an empty chain")
    defaults = {m: e.status for m, e in registry.models.items()}
    mocked = frozenset(m for m in registry.models if common.SETTINGS.is_mocked(m))

    def live() -> Any:
        return store.live(defaults)

    snap = live()

    def unavailable() -> Any:
        return unavailable_reasons(registry, snap.availability, snap.at,
                                   common.SETTINGS.require_keys, mocked)

    ctx = TaskContext.model_validate(common.CONTEXT)
    limits = Limits(first["prompt_tokens"], first["max_output_tokens"])
    weights = effective_weights(registry.scoring, ctx)
    live_statuses, live_unavailable = snap.health, unavailable()

    def pure() -> Any:
        return select(registry, ctx, limits, weights, live_statuses, live_unavailable,
                      common.SETTINGS.top_k)

    samples, _ = interleaved(
        {"decision": decide, "live": live, "unavailable": unavailable, "select": pure},
        iters, Plan.warmup(iters),
    )
    out = {name: summarize_ns(s) for name, s in samples.items()}
    out["models"] = len(registry.models)
    out["chain"] = [c["model_id"] for c in first["chain"]]
    out["eligible"] = len(first["eligible"])
    return out


def section_selection(env: Env, plan: Plan) -> dict[str, Any]:
    """Selection at the real registry and at a generated large one."""
    from graph.registry import load_registry

    from .registry_gen import generate_registry

    result: dict[str, Any] = {}
    env.log(f"selection: {len(env.registry.models)} models x {plan.mem_iters}")
    result["real"] = bench_selection(env, env.registry, env.services, plan.mem_iters)
    result["real"]["load_s"] = env.extras["load_real_s"]
    gc.collect()
    started = time.perf_counter()
    path = generate_registry(plan.large_size, env.tmp / f"registry-{plan.large_size}")
    generated_s = time.perf_counter() - started
    started = time.perf_counter()
    large = load_registry(path)
    load_s = time.perf_counter() - started
    env.log(f"selection: {len(large.models)} models x {plan.redis_iters} "
            f"(generated in {generated_s:.1f} s, loaded in {load_s:.1f} s)")
    services = common.make_services(large, env.url, env.prefix + "large:", env.tmp / "fb-l.jsonl")
    result["large"] = bench_selection(env, large, services, plan.redis_iters)
    result["large"]["load_s"] = round(load_s, 3)
    result["large"]["generate_s"] = round(generated_s, 3)
    services.store.client.close()
    del large, services
    return result


# --------------------------------------------------------------------------- 2 in memory
def _call_params() -> dict[str, Any]:
    s = common.SETTINGS
    return {"max_tokens": s.max_tokens, "temperature": s.temperature, "timeout": s.timeout_s}


def _litellm_kwargs(model: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"model": model.model}
    if model.api_base:
        kwargs["api_base"] = model.api_base
    return kwargs


def baseline_calls(env: Env, chain: list[str]) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """Bare `litellm.completion` on the graph's primary, and a Router over its chain."""
    import litellm
    from litellm import Router

    msgs = common.messages()
    params = _call_params()
    models = [env.registry.models[m] for m in chain]
    primary = _litellm_kwargs(models[0])

    def bare() -> Any:
        return litellm.completion(messages=msgs, mock_response=common.MOCK_TEXT,
                                  **primary, **params)

    names = ["primary"] + [f"fallback-{i}" for i in range(1, len(models))]
    router = Router(
        model_list=[{"model_name": name,
                     "litellm_params": {**_litellm_kwargs(m), "mock_response": common.MOCK_TEXT}}
                    for name, m in zip(names, models)],
        fallbacks=[{"primary": names[1:]}],
    )
    env.extras["router"] = router

    def routed() -> Any:
        return router.completion(model="primary", messages=msgs, **params)

    for fn in (bare, routed):
        reply = fn()
        if reply.choices[0].message.content != common.MOCK_TEXT:
            raise RuntimeError("baseline call did not return the mock response")
    return bare, routed


def _graph_call(graph: Any, settings: Any = common.SETTINGS, *, fallback: bool = False,
                **kwargs: Any) -> Callable[[], Any]:
    def run() -> Any:
        out = graph.invoke(common.graph_input(), context=settings, **kwargs)
        if not out.get("success") or bool(out.get("fallback_triggered")) != fallback:
            raise RuntimeError(f"graph run not served as planned: {out.get('error')}")
        return out

    return run


def _refusal(model: Any) -> Exception:
    """A content-policy refusal: the graph moves to another provider and records no health,
    circuit or cooldown change, so every run takes the same path."""
    import litellm

    return litellm.ContentPolicyViolationError("bench: refused", model=model.model,
                                               llm_provider=model.provider)


def fallback_calls(env: Env, graph: Any, chain: list[str]) -> dict[str, Callable[[], Any]]:
    """The fallback path: the primary refuses and the next model serves. The floor is what
    LiteLLM itself does for it: one refused call, then one served call."""
    import litellm

    msgs, params = common.messages(), _call_params()
    primary, second = (env.registry.models[m] for m in chain[:2])
    settings = dataclasses.replace(common.SETTINGS, mock_responses={
        primary.id: _refusal(primary), "*": common.MOCK_TEXT})

    def bare_refused_then_served() -> Any:
        try:  # a fresh exception each call, as a provider's would be
            litellm.completion(messages=msgs, mock_response=_refusal(primary),
                               **_litellm_kwargs(primary), **params)
        except litellm.ContentPolicyViolationError:
            pass
        else:
            raise RuntimeError("the refusal was not raised")
        return litellm.completion(messages=msgs, mock_response=common.MOCK_TEXT,
                                  **_litellm_kwargs(second), **params)

    return {"bare_refused_then_served": bare_refused_then_served,
            "graph_fallback": _graph_call(graph, settings, fallback=True)}


def timed_calls(cases: dict[str, Callable[[], Any]], iters: int) -> dict[str, Any]:
    """Interleaved timings of calls through LiteLLM, each charged its own background work.

    A case's figures (`p50_ms`, ...) run until the call has returned and LiteLLM's logging
    work for it has finished, each call starting with none pending; `returned_*` stop at
    the return. Without the settling, the graph (which waits on tokenizer and Redis
    calls, where the logging thread takes the GIL) paid the previous case's logging,
    0.5-1 ms p50, while bare LiteLLM and Router (which never wait) left theirs to the next
    case (docs/benchmarks.md, fifth session).
    """
    common.track_litellm_background()
    settled, returned = interleaved(cases, iters, Plan.warmup(iters),
                                    settle=common.settle_litellm_background)
    out: dict[str, Any] = {}
    for name, samples in settled.items():
        out[name] = summarize_ns(samples)
        at_return = summarize_ns(returned[name])
        out[name]["returned_p50_ms"] = at_return["p50_ms"]
        out[name]["returned_p99_ms"] = at_return["p99_ms"]
    return out


def _overheads(out: dict[str, Any], base: str) -> None:
    b = out[base]["p50_ms"]
    for row in out.values():
        if isinstance(row, dict) and "p50_ms" in row:
            row["overhead_p50_ms"] = round(row["p50_ms"] - b, 4)
            row["x_bare_p50"] = round(row["p50_ms"] / b, 3) if b else None
            if "returned_p50_ms" in row:
                row["returned_overhead_p50_ms"] = round(
                    row["returned_p50_ms"] - out[base]["returned_p50_ms"], 4)


def section_in_memory(env: Env, plan: Plan) -> dict[str, Any]:
    """Graph (in-memory state, no checkpointer) vs bare LiteLLM vs LiteLLM Router, interleaved;
    the graph on Redis state (still no checkpointer), the fallback path and the graph's
    skeleton (LangGraph alone: no node work, no model call) alongside."""
    from graph.builder import compile_graph
    from graph.store import Store

    from .skeleton import recorded_updates, skeleton_graph

    memory = dataclasses.replace(env.services, store=Store.in_memory())
    graph = compile_graph(memory, checkpointer=None)
    on_redis = compile_graph(env.services, checkpointer=None)
    first = _graph_call(graph)()
    chain = [c["model_id"] for c in first["chain"]]
    env.extras["chain"] = chain
    bare, routed = baseline_calls(env, chain)
    skeleton = skeleton_graph(recorded_updates(graph, common.graph_input(), common.SETTINGS))
    env.log(f"in-memory: graph / bare litellm / router x {plan.mem_iters}")
    out = timed_calls({"bare_litellm": bare, "graph": _graph_call(graph), "router": routed,
                       "graph_redis_state": _graph_call(on_redis),
                       **fallback_calls(env, graph, chain),
                       "langgraph_skeleton": _graph_call(skeleton)}, plan.mem_iters)
    _overheads(out, "bare_litellm")
    for key in ("overhead_p50_ms", "x_bare_p50", "returned_overhead_p50_ms"):
        out["langgraph_skeleton"].pop(key)  # it calls no model: not an overhead over one
    g, r = out["graph"]["overhead_p50_ms"], out["router"]["overhead_p50_ms"]
    out["graph_minus_router_overhead_ms"] = round(g - r, 4)
    out["graph_over_router_overhead_ratio"] = round(g / r, 2) if r > 0 else None
    out["fallback_overhead_p50_ms"] = round(
        out["graph_fallback"]["p50_ms"] - out["bare_refused_then_served"]["p50_ms"], 4)
    out["model"] = env.registry.models[chain[0]].model
    out["router_chain"] = chain
    return out


# --------------------------------------------------------------------------- 3 checkpointed
def section_checkpointed(env: Env, plan: Plan) -> dict[str, Any]:
    """The graph with the Redis checkpointer, per durability mode, vs bare LiteLLM."""
    from graph.builder import compile_graph
    from graph.checkpoint import RedisCheckpointer
    from graph.redis_conn import RedisTarget

    saver = RedisCheckpointer.for_target(RedisTarget(url=env.url, socket_path=None),
                                         prefix=env.prefix + "lg", ttl_s=3600)
    graph = compile_graph(env.services, checkpointer=saver)
    plain = compile_graph(env.services, checkpointer=None)
    bare, _ = baseline_calls(env, env.extras["chain"])
    cases: dict[str, Callable[[], Any]] = {"bare_litellm": bare, "no_checkpointer": _graph_call(plain)}
    for mode in ("sync", "async", "exit"):
        cases[mode] = _graph_call(graph, durability=mode)
    env.log(f"checkpointed: durability sync / async / exit x {plan.redis_iters}")
    out = timed_calls(cases, plan.redis_iters)
    _overheads(out, "bare_litellm")
    base = out["no_checkpointer"]["p50_ms"]
    for mode in ("sync", "async", "exit"):
        out[mode]["checkpoint_cost_p50_ms"] = round(out[mode]["p50_ms"] - base, 4)
    thread = graph.invoke(common.graph_input(), context=common.SETTINGS,
                          durability="exit")["thread_id"]
    client = redis.Redis.from_url(env.url)
    out["keys_per_exit_run"] = sum(1 for _ in client.scan_iter(match=f"*{thread}*", count=1000))
    client.close()
    return out


# --------------------------------------------------------------------------- 4 throughput
@contextlib.contextmanager
def provider_delay(registry: Any, seconds: float) -> Iterator[None]:
    """Make the graph's LiteLLM calls sleep `seconds` (LiteLLM's `mock_delay`).

    The graph passes `mock_response` from RunSettings; the delay goes through the cached
    ChatLiteLLM's `model_kwargs`, which it merges into every call's parameters. LiteLLM
    then sleeps where a real provider call would block: `time.sleep` on the sync path,
    `asyncio.sleep` on the async one.
    """
    from nodes import llm

    chats = list({id(c): c for c in map(llm.chat_for, registry.models.values())}.values())
    for chat in chats:
        chat.model_kwargs["mock_delay"] = seconds
    try:
        yield
    finally:
        for chat in chats:
            chat.model_kwargs.pop("mock_delay", None)


def event_loop() -> str:
    """The event loop uvicorn runs the service on: uvloop when installed, else asyncio's."""
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def run_async(main: Awaitable[Any]) -> Any:
    """`asyncio.run` on `event_loop()`, so the graph and the baseline share the service's loop."""
    if event_loop() == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    return asyncio.run(main)  # type: ignore[arg-type]


async def _drive(call: Callable[[], Awaitable[Any]], requests: int,
                 concurrency: int) -> dict[str, Any]:
    await asyncio.gather(*(call() for _ in range(min(concurrency, requests))))  # warm-up
    todo = iter(range(requests))
    latencies: list[int] = []

    async def worker() -> None:
        for _ in todo:
            started = time.perf_counter_ns()
            await call()
            latencies.append(time.perf_counter_ns() - started)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return _rate(requests, wall, cpu, latencies)


def _rate(requests: int, wall: float, cpu: float, latencies: list[int]) -> dict[str, Any]:
    """Requests per second, and the process's CPU per request (every thread: LiteLLM logs
    from its own), the figure that bounds a CPU-bound process however the machine runs."""
    lat = summarize_ns(latencies)
    return {"requests": requests, "wall_s": round(wall, 3), "rps": round(requests / wall, 1),
            "cpu_ms_per_request": round(1000 * cpu / requests, 3),
            "latency_p50_ms": lat["p50_ms"], "latency_p99_ms": lat["p99_ms"]}


def _threads_invoke(graph: Any, requests: int, concurrency: int) -> dict[str, Any]:
    """Fallback when ainvoke fails: `concurrency` threads calling `invoke`."""
    call = _graph_call(graph)
    todo = iter(range(requests))
    latencies: list[int] = []

    def worker() -> None:
        for _ in todo:
            started = time.perf_counter_ns()
            call()
            latencies.append(time.perf_counter_ns() - started)

    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for f in [pool.submit(worker) for _ in range(concurrency)]:
            f.result()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return _rate(requests, wall, cpu, latencies)


def _serving_graph(url: str, prefix: str, feedback: str) -> tuple[Any, Any, Callable[[], Awaitable[Any]]]:
    """In a fresh process, started as the service starts (its garbage-collector tuning
    included): services on the run's Redis, the graph, and one request."""
    from graph.builder import compile_graph
    from graph.gc_tuning import tune_for_serving
    from graph.registry import load_registry

    services = common.make_services(load_registry(), url, prefix, Path(feedback))
    graph = compile_graph(services, checkpointer=None)
    tune_for_serving()

    async def routed() -> Any:
        out = await graph.ainvoke(common.graph_input(), context=common.SETTINGS)
        if not out.get("success"):
            raise RuntimeError(f"graph run not served: {out.get('error')}")
        return out

    return services, graph, routed


def _process_worker(args: tuple[str, str, str, int, int, float]) -> dict[str, Any]:
    url, prefix, feedback, requests, concurrency, delay_s = args
    services, _, routed = _serving_graph(url, prefix, feedback)
    with provider_delay(services.registry, delay_s):
        run_async(_drive(routed, min(requests, 200), concurrency))  # warm-up
        started = time.time()
        out = run_async(_drive(routed, requests, concurrency))
    return {**out, "started": started, "ended": time.time()}


def _processes(env: Env, plan: Plan, requests: int, concurrency: int) -> dict[str, Any]:
    """Aggregate req/s of one process per core, each with its share of requests and load."""
    import multiprocessing

    n = os.cpu_count() or 1
    jobs = [(env.url, env.prefix, str(env.tmp / f"fb-{i}.jsonl"), requests // n,
             concurrency // n, plan.delay_s) for i in range(n)]
    with multiprocessing.get_context("spawn").Pool(n) as pool:
        parts = pool.map(_process_worker, jobs)
    wall = max(p["ended"] for p in parts) - min(p["started"] for p in parts)
    total = sum(p["requests"] for p in parts)
    return {"processes": n, "requests": total, "wall_s": round(wall, 3),
            "rps": round(total / wall, 1),
            "cpu_ms_per_request": round(sum(p["cpu_ms_per_request"] * p["requests"]
                                            for p in parts) / total, 3),
            "latency_p50_ms": max(p["latency_p50_ms"] for p in parts),
            "latency_p99_ms": max(p["latency_p99_ms"] for p in parts)}


def _throughput_rows(url: str, prefix: str, feedback: str, primary_id: str,
                     plan: Plan) -> tuple[list[dict[str, Any]], str, str | None]:
    """The bare and graph rows at each concurrency, in a fresh process (see below)."""
    import litellm

    services, graph, routed = _serving_graph(url, prefix, feedback)
    registry = services.registry
    primary = _litellm_kwargs(registry.models[primary_id])
    msgs, params = common.messages(), _call_params()

    async def bare() -> Any:
        return await litellm.acompletion(messages=msgs, mock_response=common.MOCK_TEXT,
                                         mock_delay=plan.delay_s, **primary, **params)

    rows: list[dict[str, Any]] = []
    mode, error = "ainvoke", None
    with provider_delay(registry, plan.delay_s):
        for concurrency, requests in plan.throughput:
            _stderr(f"throughput: c={concurrency}, {requests} requests")
            row: dict[str, Any] = {"concurrency": concurrency, "requests": requests}
            row["bare_acompletion"] = run_async(_drive(bare, requests, concurrency))
            if mode == "ainvoke":
                try:
                    row["graph"] = run_async(_drive(routed, requests, concurrency))
                except Exception as exc:  # noqa: BLE001 - reported, then threads are used
                    mode, error = "threads+invoke", f"{type(exc).__name__}: {exc}"
            if mode != "ainvoke":
                row["graph"] = _threads_invoke(graph, requests, concurrency)
            if row["graph"]["latency_p50_ms"] < plan.delay_s * 1000:  # a run once missed it
                raise RuntimeError("the simulated provider latency did not reach the graph's "
                                   "calls: its throughput would be measured without it")
            rows.append(row)
            gc.collect()
    services.store.client.close()
    return rows, mode, error


def section_throughput(env: Env, plan: Plan) -> dict[str, Any]:
    """Requests per second with a simulated provider latency, graph vs bare LiteLLM.

    Measured in a fresh process, as a serving process runs: in the bench's own process,
    after the other sections (a 5,000-model registry's leftovers, several compiled graphs,
    a Router), the graph's figure came out 15-20 % lower than in a section run alone.
    """
    import multiprocessing

    job = (env.url, env.prefix, str(env.tmp / "fb-tp.jsonl"), env.extras["chain"][0], plan)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        rows, mode, error = pool.apply(_throughput_rows, job)
    for row in rows:
        if mode == "ainvoke" and row["concurrency"] >= 100:
            # The same load split over one worker process per core, as a service runs
            # (`uvicorn --workers N` or N replicas): the graph is CPU-bound per process.
            row["graph_processes"] = _processes(env, plan, row["requests"], row["concurrency"])
        row["graph_vs_bare_rps"] = round(row["graph"]["rps"] / row["bare_acompletion"]["rps"], 3)
    return {"delay_ms": plan.delay_s * 1000, "mode": mode, "ainvoke_error": error,
            "loop": event_loop(), "rows": rows}


# --------------------------------------------------------------------------- 5 cold start
def _wall(cmd: list[str], env: dict[str, str], runs: int) -> dict[str, Any]:
    subprocess.run(cmd, env=env, capture_output=True, timeout=300, check=False)  # warm-up
    times: list[float] = []
    rc, tail = 0, ""
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                              check=False)
        times.append(time.perf_counter() - started)
        if proc.returncode != 0:
            rc, tail = proc.returncode, (proc.stderr or proc.stdout)[-400:]
    times.sort()
    return {"runs": runs, "median_s": round(percentile(times, 50), 4),
            "min_s": round(times[0], 4), "max_s": round(times[-1], 4), "returncode": rc,
            "error": tail or None}


def cli_status() -> tuple[Path | None, str | None]:
    """The `model-selector` executable, or why it cannot be measured."""
    exe = Path(sys.executable).with_name("model-selector")
    if not exe.exists():
        found = shutil.which("model-selector")
        exe = Path(found) if found else exe
    if importlib.util.find_spec("graph.cli") is None:
        return None, "graph/cli.py does not exist yet (pyproject entry point graph.cli:main)"
    if not exe.exists():
        return None, "the model-selector script is not installed (pip install -e .)"
    return exe, None


def section_cold_start(env: Env, plan: Plan) -> dict[str, Any]:
    """Wall time of fresh processes: bare Python, `import graph`, the CLI's dry run."""
    child = dict(os.environ)
    child.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "REDIS_URL": env.url,
                  "MODEL_SELECTOR_KEY_PREFIX": env.prefix + "cli:",
                  "FEEDBACK_LOG_PATH": str(env.tmp / "cli-feedback.jsonl"),
                  "MODEL_SELECTOR_HOME": str(env.tmp / "home")})
    env.log(f"cold start: {plan.cold_runs} runs each")
    out: dict[str, Any] = {
        "python_bare": _wall([sys.executable, "-c", "pass"], child, plan.cold_runs),
        "import_graph": _wall([sys.executable, "-c", "import graph"], child, plan.cold_runs),
    }
    exe, why = cli_status()
    out["cli_command"] = "model-selector " + " ".join(CLI_ARGS)
    if exe is None:
        out["cli_select"] = None
        out["cli_unavailable"] = why
    else:
        out["cli_select"] = _wall([str(exe), *CLI_ARGS], child, plan.cold_runs)
        out["cli_unavailable"] = None
    return out


# --------------------------------------------------------------------------- 6 memory
def section_memory(env: Env, plan: Plan) -> dict[str, Any]:
    """RSS of a fresh process serving N graph requests, and its trend over the second half."""
    env.log(f"memory: {plan.memory_requests} graph requests in a fresh process")
    cmd = [sys.executable, "-m", "tests.bench.memory_worker",
           "--requests", str(plan.memory_requests), "--every", str(plan.memory_every),
           "--redis-url", env.url, "--prefix", env.prefix + "mem:"]
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=3600, check=False,
                          env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    if proc.returncode != 0:
        raise RuntimeError(f"memory worker failed: {proc.stderr[-2000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    half = plan.memory_requests / 2
    tail = [s for s in data["samples"] if s["requests"] >= half]
    xs = [s["requests"] / 1000 for s in tail]
    rss_slope = slope(xs, [s["rss_kb"] for s in tail])
    blocks_slope = slope(xs, [s["blocks"] for s in tail])
    data["rss_slope_kb_per_1k"] = round(rss_slope, 2)
    data["blocks_slope_per_1k"] = round(blocks_slope, 2)
    data["rss_growth_second_half_kb"] = round(rss_slope * (plan.memory_requests - half) / 1000, 1)
    data["rss_first_kb"] = data["samples"][0]["rss_kb"]
    data["rss_last_kb"] = data["samples"][-1]["rss_kb"]
    return data


# --------------------------------------------------------------------------- targets
RSS_GROWTH_LIMIT_KB = 1024
"""'No growth trend': the second half's fitted RSS growth stays under 1 MiB."""


ISSUE_BARE_P50_MS = 1.6
"""Bare `litellm.completion` p50 as the issue measured it when it set its two limits in ms
(Router's overhead + 1 ms; 4 ms). The issue asks for ratios against the same run's
baselines, as shared machines run 1.5-2x slower at times: each of those limits is judged
twice, as written and in units of this run's bare LiteLLM (the 1 ms is 0.625 of the issue's
bare call, the 4 ms 2.5)."""


def scaled_ms(limit_ms: float, bare_p50_ms: float) -> float:
    """`limit_ms` of the issue's machine, on this run's: the same share of a bare call."""
    return limit_ms * bare_p50_ms / ISSUE_BARE_P50_MS


def evaluate_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """PASS/FAIL per target (None where the figure could not be taken)."""
    targets: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, unit: str, ok: bool | None,
            note: str = "") -> None:
        targets.append({"target": name, "value": value, "limit": limit, "unit": unit,
                        "pass": ok, "note": note})

    sel = result.get("selection") or {}
    for key, limit in (("real", 1.0), ("large", 10.0)):
        if key in sel:
            v = sel[key]["decision"]["p99_ms"]
            add(f"selection p99 at {sel[key]['models']} models", v, limit, "ms <=", v <= limit)
    mem = result.get("in_memory")
    if mem:
        v, router = mem["graph"]["overhead_p50_ms"], mem["router"]["overhead_p50_ms"]
        bare = mem["bare_litellm"]["p50_ms"]
        name = "graph overhead <= Router overhead + 1 ms (p50, in-memory)"
        limit = round(router + 1.0, 4)
        add(name + ", as written", v, limit, "ms <=", v <= limit)
        limit = round(router + scaled_ms(1.0, bare), 4)
        add(name + ", 1 ms scaled", v, limit, "ms <=", v <= limit,
            f"the 1 ms as {1.0 / ISSUE_BARE_P50_MS:.3f}x this run's bare LiteLLM p50 "
            f"({bare:.3f} ms): graph {1 + v / bare:.3f}x bare against Router's "
            f"{1 + router / bare:.3f}x + {1.0 / ISSUE_BARE_P50_MS:.3f}")
    cp = result.get("checkpointed")
    if cp:
        v, bare = cp["exit"]["overhead_p50_ms"], cp["bare_litellm"]["p50_ms"]
        name = "overhead with Redis checkpoints, durability exit (p50)"
        add(name + ", as written", v, 4.0, "ms <=", v <= 4.0)
        limit = round(scaled_ms(4.0, bare), 4)
        add(name + ", 4 ms scaled", v, limit, "ms <=", v <= limit,
            f"{v / bare:.2f}x this run's bare LiteLLM p50 ({bare:.3f} ms) against the "
            f"{4.0 / ISSUE_BARE_P50_MS:.2f}x that 4 ms was of the {ISSUE_BARE_P50_MS} ms "
            "the issue measured")
    tp = result.get("throughput")
    if tp:
        rows = [r for r in tp["rows"] if r["concurrency"] == 100]
        if rows:
            v, bare = rows[0]["graph"]["rps"], rows[0]["bare_acompletion"]["rps"]
            add(f"throughput at c=100, {tp['delay_ms']:.0f} ms provider ({tp['mode']})", v, 200.0,
                "req/s >=", v >= 200.0,
                f"{v / bare:.2f}x this run's bare litellm.acompletion ({bare:.1f} req/s)")
    cold = result.get("cold_start")
    if cold:
        if cold.get("cli_select"):
            v = cold["cli_select"]["median_s"]
            ok = v < 1.0 and cold["cli_select"]["returncode"] == 0
            add("model-selector select wall (median)", v, 1.0, "s <", ok,
                "" if cold["cli_select"]["returncode"] == 0 else "CLI exited non-zero")
        else:
            add("model-selector select wall (median)", None, 1.0, "s <", None,
                f"not measured: {cold.get('cli_unavailable')}")
    memory = result.get("memory")
    if memory:
        v = memory["rss_growth_second_half_kb"]
        add(f"no RSS growth over {memory['requests']} requests (fitted growth, 2nd half)", v,
            RSS_GROWTH_LIMIT_KB, "KiB <=", v <= RSS_GROWTH_LIMIT_KB)
    return targets


# --------------------------------------------------------------------------- rendering
def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[("-" if c is None else f"{c:,.3f}" if isinstance(c, float) else str(c))
              for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                     for i, (h, w) in enumerate(zip(headers, widths)))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in cells:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(out)


def render(result: dict[str, Any]) -> str:
    """The printed report."""
    m = result["machine"]
    parts = [
        f"model-selector benchmarks ({'QUICK: 1/10 iterations' if result['plan']['quick'] else 'full run'})",
        (f"machine: {m['cores']} cores ({m['cores_usable']} usable), {m['cpu']}, "
        f"load {m['loadavg_start'][0]:.2f} at start / {m.get('loadavg_end', [0])[0]:.2f} at end"),
        (f"python {m['python']}, litellm {m['litellm']}, langgraph {m['langgraph']}, "
        f"langchain-litellm {m['langchain_litellm']}, langgraph-checkpoint "
        f"{m['langgraph_checkpoint']}, redis-py {m['redis_py']} (hiredis {m['hiredis']}), "
        f"redis server {m['redis_server']}"),
        "",
    ]
    sel = result.get("selection")
    if sel:
        rows = []
        for key in ("real", "large"):
            s = sel[key]
            for part, label in (("decision", "decision (3 nodes + Redis)"),
                                ("live", "  Store.live (Redis)"),
                                ("unavailable", "  unavailable_reasons pure"),
                                ("select", "  select() pure")):
                rows.append([f"{s['models']} models: {label}", s[part]["n"], s[part]["p50_ms"],
                             s[part]["p99_ms"]])
        parts += ["1. Selection decision (ms)",
                  _table(["case", "n", "p50", "p99"], rows),
                  (f"   registry load: {sel['real']['load_s']:.2f} s at {sel['real']['models']}, "
                  f"{sel['large']['load_s']:.2f} s at {sel['large']['models']} models; "
                  f"eligible {sel['real']['eligible']} / {sel['large']['eligible']}"), ""]

    def latency_rows(block: dict[str, Any], names: list[tuple[str, str]]) -> list[list[Any]]:
        return [[label, block[k]["n"], block[k]["p50_ms"], block[k]["p99_ms"],
                 block[k]["overhead_p50_ms"], block[k]["x_bare_p50"],
                 block[k].get("returned_p50_ms")] for label, k in names]

    latency_headers = ["case", "n", "p50", "p99", "overhead p50", "x bare", "returned p50"]
    settled_note = ("   p50/p99: until the call and LiteLLM's background logging for it are done; "
                    "returned p50: until the call returned")

    mem = result.get("in_memory")
    if mem:
        parts += [f"2. Whole request, in-memory (ms; model {mem['model']}, mock_response)",
                  _table(latency_headers,
                         latency_rows(mem, [("bare litellm.completion", "bare_litellm"),
                                            ("LiteLLM Router (2 fallbacks)", "router"),
                                            ("graph, in-memory state", "graph"),
                                            ("graph, Redis state", "graph_redis_state"),
                                            ("bare: refused call, then served",
                                             "bare_refused_then_served"),
                                            ("graph: primary refuses, fallback serves",
                                             "graph_fallback")])
                         + [["LangGraph alone (the graph's skeleton)*",
                             mem["langgraph_skeleton"]["n"], mem["langgraph_skeleton"]["p50_ms"],
                             mem["langgraph_skeleton"]["p99_ms"], None, None,
                             mem["langgraph_skeleton"]["returned_p50_ms"]]]),
                  settled_note,
                  (f"   graph overhead - Router overhead = {mem['graph_minus_router_overhead_ms']:.3f}"
                  f" ms; ratio graph/Router overhead = {mem['graph_over_router_overhead_ratio']}"
                  f" (at return: {mem['graph']['returned_overhead_p50_ms']:.3f} - "
                  f"{mem['router']['returned_overhead_p50_ms']:.3f} ms)"),
                  (f"   fallback path: graph over LiteLLM's own refused + served calls = "
                   f"{mem['fallback_overhead_p50_ms']:.3f} ms (p50)"),
                  ("   * same nodes, edges, schemas and writes as a served run, no node work and "
                   "no model call: LangGraph's own floor for this shape, against Router's whole "
                   f"overhead of {mem['router']['overhead_p50_ms']:.3f} ms"),
                  ""]
    cp = result.get("checkpointed")
    if cp:
        rows = latency_rows(cp, [("bare litellm.completion", "bare_litellm"),
                                 ("graph, no checkpointer", "no_checkpointer"),
                                 ("graph + Redis checkpointer, sync", "sync"),
                                 ("graph + Redis checkpointer, async", "async"),
                                 ("graph + Redis checkpointer, exit", "exit")])
        parts += ["3. With the Redis checkpointer, per durability mode (ms)",
                  _table(latency_headers, rows), settled_note,
                  "   checkpoint cost (p50 over no checkpointer): " + ", ".join(
                      f"{m} {cp[m]['checkpoint_cost_p50_ms']:.3f}" for m in ("sync", "async", "exit"))
                  + f"; Redis keys left per exit run: {cp['keys_per_exit_run']}", ""]
    tp = result.get("throughput")
    if tp:
        rows = []
        for r in tp["rows"]:
            b, g = r["bare_acompletion"], r["graph"]
            rows.append([f"c={r['concurrency']} bare litellm.acompletion", r["requests"],
                         b["rps"], b.get("cpu_ms_per_request"), b["latency_p50_ms"],
                         b["latency_p99_ms"], None])
            rows.append([f"c={r['concurrency']} graph ({tp['mode']})", r["requests"],
                         g["rps"], g.get("cpu_ms_per_request"), g["latency_p50_ms"],
                         g["latency_p99_ms"], r["graph_vs_bare_rps"]])
            if "graph_processes" in r:
                p = r["graph_processes"]
                rows.append([f"c={r['concurrency']} graph, {p['processes']} processes*",
                             p["requests"], p["rps"], p["cpu_ms_per_request"],
                             p["latency_p50_ms"],
                             p["latency_p99_ms"], round(p["rps"] / b["rps"], 3)])
        parts += [(f"4. Throughput, {tp['delay_ms']:.0f} ms simulated provider latency "
                   f"(event loop: {tp.get('loop', 'asyncio')}, as uvicorn would pick)"),
                  _table(["case", "requests", "req/s", "CPU ms/req", "lat p50 ms", "lat p99 ms",
                          "x bare"], rows),
                  ("   * one worker process per core sharing the load and one Redis, as a "
                   "service runs (uvicorn --workers N); the target row is the single process")]
        if tp["ainvoke_error"]:
            parts.append(f"   ainvoke failed ({tp['ainvoke_error']}); measured with threads + invoke")
        parts.append("")
    cold = result.get("cold_start")
    if cold:
        rows = [["python -c pass", cold["python_bare"]["median_s"], cold["python_bare"]["max_s"]],
                ['python -c "import graph"', cold["import_graph"]["median_s"],
                 cold["import_graph"]["max_s"]]]
        if cold.get("cli_select"):
            rows.append([cold["cli_command"], cold["cli_select"]["median_s"],
                         cold["cli_select"]["max_s"]])
        parts += ["5a. Cold start (wall s, fresh process)",
                  _table(["command", "median", "max"], rows)]
        if cold.get("cli_unavailable"):
            parts.append(f"   model-selector select: not measured, {cold['cli_unavailable']}")
        elif cold["cli_select"]["returncode"]:
            parts.append(f"   CLI exited {cold['cli_select']['returncode']}: "
                         f"{cold['cli_select']['error']}")
        parts.append("")
    memory = result.get("memory")
    if memory:
        rows = [[s["requests"], round(s["rss_kb"] / 1024, 2), s["blocks"]]
                for s in memory["samples"]]
        parts += [(f"5b. Memory of a process serving {memory['requests']} graph requests "
                  f"(after gc; {memory['elapsed_s']:.1f} s)"),
                  _table(["requests", "RSS MiB", "alloc blocks"], rows),
                  (f"   peak RSS {memory['peak_rss_kb'] / 1024:.1f} MiB; second-half slope "
                  f"{memory['rss_slope_kb_per_1k']:.1f} KiB RSS and "
                  f"{memory['blocks_slope_per_1k']:.1f} blocks per 1,000 requests "
                  f"(fitted growth {memory['rss_growth_second_half_kb']:.0f} KiB)"), ""]
    targets = result.get("targets") or []
    if targets:
        rows = [[t["target"], t["value"], f"{t['unit']} {t['limit']}",
                 "n/a" if t["pass"] is None else "PASS" if t["pass"] else "FAIL"]
                for t in targets]
        parts += ["Targets", _table(["target", "measured", "limit", "result"], rows)]
        parts += [f"   {t['target']}: {t['note']}" for t in targets if t["note"]]
    return "\n".join(parts)


# --------------------------------------------------------------------------- checks
REQUIRED_FIGURES = (
    "machine.cores",
    *(f"selection.{size}.{part}.{stat}" for size in ("real", "large")
      for part in ("decision", "live", "unavailable", "select")
      for stat in ("p50_ms", "p99_ms")),
    "selection.real.models", "selection.large.models",
    *(f"in_memory.{case}.{stat}" for case in ("bare_litellm", "graph", "router",
                                              "bare_refused_then_served", "graph_fallback")
      for stat in ("p50_ms", "p99_ms", "overhead_p50_ms", "returned_p50_ms")),
    "in_memory.graph_minus_router_overhead_ms", "in_memory.fallback_overhead_p50_ms",
    "in_memory.langgraph_skeleton.p50_ms", "in_memory.langgraph_skeleton.p99_ms",
    *(f"checkpointed.{case}.{stat}"
      for case in ("bare_litellm", "no_checkpointer", "sync", "async", "exit")
      for stat in ("p50_ms", "p99_ms", "overhead_p50_ms", "returned_p50_ms")),
    "throughput.delay_ms",
    "cold_start.python_bare.median_s", "cold_start.import_graph.median_s",
    "memory.peak_rss_kb", "memory.rss_slope_kb_per_1k", "memory.rss_growth_second_half_kb",
)


def missing_figures(result: dict[str, Any]) -> list[str]:
    """Dotted paths of required figures that are absent or not finite numbers."""
    import math

    bad: list[str] = []
    paths = list(REQUIRED_FIGURES)
    for i, row in enumerate((result.get("throughput") or {}).get("rows") or [None]):
        if row is None:
            paths.append("throughput.rows")
            continue
        paths += [f"throughput.rows.{i}.{case}.{stat}" for case in ("bare_acompletion", "graph")
                  for stat in ("rps", "cpu_ms_per_request", "latency_p50_ms", "latency_p99_ms")]
    if (result.get("cold_start") or {}).get("cli_select") is not None:
        paths.append("cold_start.cli_select.median_s")
    for path in paths:
        node: Any = result
        for part in path.split("."):
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                node = None
                break
        ok = isinstance(node, (int, float)) and not isinstance(node, bool) and math.isfinite(node)
        if not ok:
            bad.append(path)
    return bad


def write_json(result: dict[str, Any], path: str | Path) -> None:
    """Write the result document."""
    Path(path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- driver
def _stderr(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_suite(plan: Plan, url: str | None = None,
              log: Callable[[str], None] = _stderr,
              sections: tuple[str, ...] = SECTIONS) -> dict[str, Any]:
    """Run the chosen sections; returns every figure (the JSON document)."""
    from graph.registry import load_registry

    url = url or common.redis_url()
    prefix = common.new_prefix()
    result: dict[str, Any] = {"plan": asdict(plan), "redis_url": url, "key_prefix": prefix,
                              "machine": machine_info(url)}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        started = time.perf_counter()
        registry = load_registry()
        env = Env(url=url, prefix=prefix, tmp=Path(tmp), log=log, registry=registry)
        env.extras["load_real_s"] = round(time.perf_counter() - started, 3)
        env.services = common.make_services(registry, url, prefix, env.tmp / "fb.jsonl")
        steps: list[tuple[str, Callable[[Env, Plan], dict[str, Any]]]] = [
            ("selection", section_selection), ("in_memory", section_in_memory),
            ("checkpointed", section_checkpointed), ("throughput", section_throughput),
            ("cold_start", section_cold_start), ("memory", section_memory),
        ]
        try:
            for name, fn in steps:
                if name not in sections:
                    continue
                if name in ("checkpointed", "throughput") and "chain" not in env.extras:
                    section_in_memory(env, replace(plan, mem_iters=1))  # learn the chain
                gc.collect()
                t0 = time.perf_counter()
                result[name] = fn(env, plan)
                result[name]["section_s"] = round(time.perf_counter() - t0, 1)
                gc.collect()
        finally:
            env.services.store.client.close()
            result["keys_deleted"] = common.delete_prefix(url, prefix)
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["targets"] = evaluate_targets(result)
    return result


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.bench.run [--quick] [--json out.json]`."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run",
                                     description="model-selector performance benchmarks")
    parser.add_argument("--quick", action="store_true",
                        help="a tenth of the iterations (CI smoke; figures are noisier)")
    parser.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    parser.add_argument("--redis-url", default=None,
                        help="Redis for state and checkpoints (default BENCH_REDIS_URL, TEST_REDIS_URL or "
                             f"{common.DEFAULT_REDIS_URL})")
    parser.add_argument("--only", metavar="SECTION", action="append", choices=SECTIONS[1:-1],
                        help="run only this section (repeatable)")
    args = parser.parse_args(argv)
    plan = Plan.quick_plan() if args.quick else Plan.full()
    sections = tuple(args.only) if args.only else SECTIONS
    result = run_suite(plan, args.redis_url, sections=sections)
    print(render(result))
    if args.json:
        write_json(result, args.json)
        print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
