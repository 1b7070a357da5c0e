"""The cyclic garbage collector's settings for a long-running serving process.

After start-up a serving process tracks about 500,000 container objects that live as long
as it does: LiteLLM's model map and provider modules, the registry, the compiled graph.
CPython's full collection re-scans every one of them; at 100 concurrent requests that was
0.8 ms of CPU per request, 15 % of the process (measured, docs/benchmarks.md).
`gc.freeze()` after start-up moves them out of the collector's view, which is its
documented purpose. A request also allocates thousands of short-lived containers, nearly
all freed by reference counting; at CPython's young-generation threshold of 700 the
collector still ran about every 3 requests, at 0.3 ms a request. A larger threshold lets
them die first; cyclic garbage is still collected, after more allocations. What is
frozen is never collected: fine for what start-up builds, which lives as long as the process.

The HTTP service applies this once its graph is built; an agent process that embeds
`selection_graph` may call `tune_for_serving()` itself once it has started.
"""

from __future__ import annotations

import gc

from graph import settings


def tune_for_serving(young_threshold: int | None = None) -> int:
    """Collect, freeze what start-up left alive, and raise the young generation's threshold.

    `young_threshold` defaults to `GC_YOUNG_THRESHOLD` (0 keeps CPython's). Returns how
    many objects are now frozen.
    """
    threshold = settings.gc_young_threshold() if young_threshold is None else young_threshold
    gc.collect()
    gc.freeze()
    if threshold:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(threshold, middle, old)
    return gc.get_freeze_count()
