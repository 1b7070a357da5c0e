"""The bench's interleaved timing charges each case its own background work, not another's."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor, wait

from . import common
from .stats import interleaved

BACKGROUND_S = 0.05


def test_each_case_pays_its_own_background_work_and_no_other() -> None:
    pool = ThreadPoolExecutor(max_workers=1)
    pending: list[Future[None]] = []

    def leaves_work() -> None:  # returns at once; its work goes on in the pool
        pending.append(pool.submit(time.sleep, BACKGROUND_S))

    def blocks_on_the_pool() -> None:  # finishes only once the pool is free
        pool.submit(lambda: None).result()

    def settle() -> None:
        wait(pending)
        pending.clear()

    settled, returned = interleaved({"leaves_work": leaves_work, "waits": blocks_on_the_pool},
                                    iterations=6, warmup=1, settle=settle)
    pool.shutdown()
    assert min(settled["leaves_work"]) >= BACKGROUND_S * 1e9
    assert max(returned["leaves_work"]) < BACKGROUND_S * 1e9
    # the first case's work was settled (and charged to it) before the second case started
    assert max(settled["waits"]) < BACKGROUND_S * 1e9 / 2


def test_without_settle_both_samples_are_the_same_call() -> None:
    settled, returned = interleaved({"noop": lambda: None}, iterations=3, warmup=0)
    assert settled == returned
    assert len(settled["noop"]) == 3


def test_litellm_logging_is_tracked_and_settled() -> None:
    import litellm

    common.track_litellm_background()
    common.track_litellm_background()  # idempotent: one wrapper, not two
    from litellm.litellm_core_utils.thread_pool_executor import executor

    assert getattr(executor.submit, "tracked", False)
    common.settle_litellm_background()
    litellm.completion(model="openai/gpt-4o-mini", mock_response="ok",
                       messages=[{"role": "user", "content": "hi"}])
    futures = list(common._background)
    assert futures, "LiteLLM handed no logging task to its pool"
    assert len(set(futures)) == len(futures), "a second wrapper recorded each task twice"
    common.settle_litellm_background()
    assert all(f.done() for f in futures)
    assert common._background == []
