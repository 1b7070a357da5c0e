"""Where a graph request's time goes, without a profiler's distortion.

    python -m tests.bench.attribute [-n 1000] [--durability none|sync|async|exit] [--memory]
                                    [--registry PATH]

Wraps the graph's nodes and the calls inside them (Redis reads and writes, the LiteLLM
call, the LangChain layer around it, the checkpointer) with `perf_counter_ns` timers,
runs N requests, and prints the mean inclusive time of each per request. The LangGraph
runtime's own share is the whole run minus the nodes and the checkpointer's calls (so it
includes serialising checkpoints); the LangChain layer's is
`llm.call` minus `litellm.completion`. A timer costs about a microsecond, so figures of
a few microseconds are at the noise floor. cProfile and pyinstrument inflate the many
small calls of LiteLLM and LangGraph several-fold; this does not.

Each request waits, untimed by the whole, for the logging work LiteLLM queued on its
thread for that request (the bench's settled timing; printed as its own row). Without
that wait, the work ran inside the next request, at its first GIL release (the token
count or a Redis read), and was charged to that piece.
"""

from __future__ import annotations

from . import common  # first: offline price map  # isort: skip

import argparse
import functools
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOTALS: dict[str, int] = defaultdict(int)
COUNTS: dict[str, int] = defaultdict(int)


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            TOTALS[name] += time.perf_counter_ns() - started
            COUNTS[name] += 1

    return wrapper


def _patch(owner: Any, attr: str, name: str) -> None:
    setattr(owner, attr, _timed(name, getattr(owner, attr)))


def instrument() -> None:
    """Wrap the pieces of a request (before the graph is compiled)."""
    import litellm

    import nodes.analyze_context as ac
    import nodes.call_model as cm
    import nodes.query_registry as qr
    from graph import builder
    from graph.checkpoint import RedisCheckpointer
    from graph.circuit import RedisCircuits
    from graph.feedback import FeedbackLog
    from graph.store import Store
    from nodes import llm

    for node in ("analyze_context", "query_registry", "score", "call_model",
                 "next_fallback", "record_feedback"):
        _patch(builder, node, f"node {node}")
    _patch(ac, "count_messages", "  analyze_context: count_messages (tiktoken)")
    _patch(qr, "unavailable_reasons", "  query_registry: unavailable_reasons")
    _patch(qr, "filter_models", "  query_registry: filter_models")
    import nodes.availability as av
    _patch(av, "fingerprint", "    unavailable_reasons: fingerprint (all models)")
    _patch(Store, "live", "  query_registry: Store.live (health MGET + circuit snapshot)")
    _patch(RedisCircuits, "admit", "  call_model: circuits admit (Lua)")
    _patch(RedisCircuits, "record_success", "  call_model: circuits record_success")
    _patch(llm, "call", "  call_model: llm.call (ChatLiteLLM.invoke)")
    _patch(litellm, "completion", "    llm.call: litellm.completion")
    _patch(Store, "log_usage", "  record_feedback: Store.log_usage (MULTI)")
    _patch(FeedbackLog, "append", "  record_feedback: FeedbackLog.append (JSONL)")
    for method in ("get_tuple", "put", "put_writes"):
        _patch(RedisCheckpointer, method, f"checkpointer.{method}")
    del cm


def run(n: int, durability: str, registry_path: str | None,
        memory: bool = False) -> list[tuple[str, float, float]]:
    """Mean inclusive ms per request of every wrapped piece, plus derived shares."""
    instrument()
    from graph.builder import compile_graph
    from graph.checkpoint import RedisCheckpointer
    from graph.redis_conn import RedisTarget
    from graph.registry import load_registry
    from graph.store import Store

    url, prefix = common.redis_url(), common.new_prefix()
    saver = None
    if durability != "none":
        saver = RedisCheckpointer.for_target(RedisTarget(url=url, socket_path=None),
                                             prefix=prefix + "lg", ttl_s=3600)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            services = common.make_services(load_registry(registry_path), url, prefix,
                                            Path(tmp) / "fb.jsonl")
            if memory:
                services.store = Store.in_memory()
            graph = compile_graph(services, checkpointer=saver)
            kwargs = {} if durability == "none" else {"durability": durability}
            for _ in range(max(20, n // 10)):
                graph.invoke(common.graph_input(), context=common.SETTINGS, **kwargs)
            common.track_litellm_background()
            common.settle_litellm_background()
            TOTALS.clear()
            COUNTS.clear()
            total = settled = 0
            for _ in range(n):
                started = time.perf_counter_ns()
                graph.invoke(common.graph_input(), context=common.SETTINGS, **kwargs)
                returned = time.perf_counter_ns()
                common.settle_litellm_background()
                total += returned - started
                settled += time.perf_counter_ns() - returned
    finally:
        common.delete_prefix(url, prefix)
    rows = [("whole graph.invoke", total / n / 1e6, 1.0),
            ("LiteLLM background work left after the return", settled / n / 1e6, 1.0)]
    nodes = sum(v for k, v in TOTALS.items() if k.startswith("node "))
    saver = sum(v for k, v in TOTALS.items() if k.startswith("checkpointer."))
    rows.append(("LangGraph runtime (whole - nodes - checkpointer calls)",
                 (total - nodes - saver) / n / 1e6, n))
    for name in sorted(TOTALS, key=lambda k: -TOTALS[k]):
        rows.append((name, TOTALS[name] / n / 1e6, COUNTS[name] / n))
    if TOTALS.get("  call_model: llm.call (ChatLiteLLM.invoke)"):
        layer = (TOTALS["  call_model: llm.call (ChatLiteLLM.invoke)"]
                 - TOTALS["    llm.call: litellm.completion"])
        rows.append(("LangChain layer (llm.call - litellm.completion)", layer / n / 1e6, 1.0))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the attribution table."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.attribute")
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--durability", default="none", choices=["none", "sync", "async", "exit"])
    parser.add_argument("--registry", default=None, help="registry YAML (default: the real one)")
    parser.add_argument("--memory", action="store_true", help="in-memory state (Store.in_memory)")
    args = parser.parse_args(argv)
    rows = run(args.n, args.durability, args.registry, args.memory)
    whole = rows[0][1]
    print(f"{'piece (inclusive)':62s} {'ms/request':>10s} {'share':>6s} {'calls':>6s}")
    for name, ms, calls in rows:
        calls_txt = "" if name.startswith(("whole", "Lang", "LiteLLM")) else f"{calls:.1f}"
        print(f"{name:62s} {ms:10.3f} {ms / whole:6.1%} {calls_txt:>6s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
