"""A fresh process that serves N graph requests and samples its own memory.

Run by `tests.bench.run` as a subprocess so that what earlier sections allocated (the
5,000-model registry, LiteLLM's Router) does not count:

    python -m tests.bench.memory_worker --requests 10000 --every 1000 --prefix P --redis-url U

Prints one JSON object: samples of RSS (after a `gc.collect()`, so the figure is memory
still held, not garbage awaiting collection) and of `sys.getallocatedblocks()` (live
Python allocations, immune to allocator arena noise), plus the peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

from . import common


def serve(requests: int, every: int, url: str, prefix: str) -> dict:
    """Serve `requests` graph requests (no checkpointer, mocked calls), sampling memory."""
    from graph.builder import compile_graph
    from graph.gc_tuning import tune_for_serving
    from graph.registry import load_registry

    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        services = common.make_services(load_registry(), url, prefix, Path(tmp) / "fb.jsonl")
        graph = compile_graph(services, checkpointer=None)
        graph.invoke(common.graph_input(), context=common.SETTINGS)  # first-call imports
        tune_for_serving()  # as the service does once started (collects first)
        rss0, _ = common.rss_kb()
        samples = [{"requests": 0, "rss_kb": rss0, "blocks": sys.getallocatedblocks()}]
        started = time.perf_counter()
        for i in range(1, requests + 1):
            out = graph.invoke(common.graph_input(), context=common.SETTINGS)
            if not out.get("success"):
                raise RuntimeError(f"request {i} was not served: {out.get('error')}")
            if i % every == 0:
                gc.collect()
                rss, _ = common.rss_kb()
                samples.append({"requests": i, "rss_kb": rss, "blocks": sys.getallocatedblocks()})
        elapsed = time.perf_counter() - started
        _, hwm = common.rss_kb()
        with open(Path(tmp) / "fb.jsonl", "rb") as fh:
            feedback_lines = sum(1 for _ in fh)
    return {"requests": requests, "every": every, "samples": samples, "peak_rss_kb": hwm,
            "elapsed_s": round(elapsed, 3), "feedback_lines": feedback_lines}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the subprocess."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1_000)
    parser.add_argument("--redis-url", default=common.redis_url())
    parser.add_argument("--prefix", required=True)
    args = parser.parse_args(argv)
    result = serve(args.requests, args.every, args.redis_url, args.prefix)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
