"""The serving process's collector: start-up objects frozen, young threshold raised."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from graph.gc_tuning import tune_for_serving


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_freezes_what_is_alive_and_sets_only_the_young_threshold() -> None:
    kept = [Node() for _ in range(100)]
    garbage = Node()
    gone = weakref.ref(garbage)
    del garbage
    _, middle, old = gc.get_threshold()
    frozen = tune_for_serving(12_345)
    # Frozen objects still die when their last reference goes, on any thread (earlier tests'
    # workers run on), so the count may fall after the return, never rise.
    assert frozen >= gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == (12_345, middle, old)
    assert gone() is None  # garbage is collected before the freeze, not frozen for ever
    assert not any(isinstance(o, Node) for o in gc.get_objects())  # kept: frozen, untracked


def test_zero_keeps_cpythons_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GC_YOUNG_THRESHOLD", "0")
    threshold = gc.get_threshold()
    tune_for_serving()
    assert gc.get_threshold() == threshold and gc.get_freeze_count() > 0


def test_the_environment_sets_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GC_YOUNG_THRESHOLD", "20000")
    tune_for_serving()
    assert gc.get_threshold()[0] == 20_000
