import pytest

from graph.context import TaskContext
from graph.registry import SPEC_WEIGHTS, ScoringConfig, load_registry
from nodes.scoring import (
    capability_score, cost_score, effective_weights, latency_score, score_model,
)
from tests.conftest import PORT_HEALER

REG = load_registry()
M = REG.models


def ctx(**kw):
    base = dict(task_type="code_fix", domain="self_heal", complexity="medium", priority="medium")
    return TaskContext(**{**base, **kw})


def test_capability_with_keyword_bonus_capped():
    m = M["deepseek-coder-33b-instruct"]  # lacks code_fix, tags coding-specialist, cost-efficient
    assert capability_score(m, ctx()) == 0.0
    assert capability_score(m, ctx(keywords=["cost-efficient"])) == pytest.approx(0.1)
    assert capability_score(m, ctx(keywords=["cost-efficient", "coding-specialist"])) == pytest.approx(0.2)
    assert capability_score(M["llama-3.3-70b-versatile"], ctx(keywords=["free", "fast"])) == 1.0


def test_cost_branches():
    cheap, free = M["gpt-4o-mini-self-heal"], M["llama-3.3-70b-versatile"]
    assert cost_score(free, ctx()) == 1.0
    assert cost_score(cheap, ctx()) == pytest.approx(1 / 1.15)
    assert cost_score(cheap, ctx(max_cost_usd=0.01)) == pytest.approx(1 - 0.0015 / 0.01)
    assert cost_score(M["claude-3.5-sonnet"], ctx(max_cost_usd=0.01)) == 0.0  # 0.03 > 0.01


def test_latency_branches():
    m = M["gpt-4o-mini-self-heal"]  # 800 ms
    assert latency_score(m, ctx()) == pytest.approx(1 - 300 / 1500)
    assert latency_score(m, ctx(max_latency_ms=2000)) == pytest.approx(0.6)
    assert latency_score(m, ctx(max_latency_ms=700)) == 0.0
    fast = M["llama-3.3-70b-versatile"].model_copy(update={"avg_latency_ms": 200})
    assert latency_score(fast, ctx()) == 1.0  # clamped to the component's range


def test_total_is_the_spec_weighted_sum_at_medium_priority():
    weights = effective_weights(REG.scoring, ctx(max_cost_usd=0.01, max_latency_ms=2000))
    assert weights == pytest.approx(SPEC_WEIGHTS)
    s = score_model(M["llama-3.3-70b-versatile"], ctx(max_cost_usd=0.01, max_latency_ms=2000),
                    weights, "alive")
    assert (s.capability_match, s.cost_efficiency, s.latency_priority, s.health_status) == (
        1.0, 1.0, pytest.approx(0.7), 1.0)
    assert s.total == pytest.approx(0.4 + 0.3 + 0.2 * 0.7 + 0.1)


def test_live_health_changes_the_score():
    w = dict(SPEC_WEIGHTS)
    alive = score_model(M["gpt-4o-mini-self-heal"], ctx(), w, "alive").total
    degraded = score_model(M["gpt-4o-mini-self-heal"], ctx(), w, "degraded").total
    assert alive - degraded == pytest.approx(0.1 * 0.5)


def test_priority_and_complexity_shift_weights():
    critical = effective_weights(REG.scoring, TaskContext(**PORT_HEALER))
    assert critical["latency_priority"] == pytest.approx(0.30)
    assert critical["cost_efficiency"] == pytest.approx(0.20)
    low_complex = effective_weights(REG.scoring, ctx(priority="low", complexity="complex"))
    assert low_complex["cost_efficiency"] == pytest.approx(0.35)
    assert low_complex["health_status"] == pytest.approx(0.15)
    assert sum(low_complex.values()) == pytest.approx(1.0)


def test_weights_overridable_in_yaml():
    cfg = ScoringConfig.model_validate({"weights": {"capability_match": 1, "cost_efficiency": 1,
                                                    "latency_priority": 1, "health_status": 1},
                                        "priority_shift": {}, "complexity_shift": {}})
    assert effective_weights(cfg, ctx()) == pytest.approx({k: 0.25 for k in SPEC_WEIGHTS})
    with pytest.raises(ValueError, match="weights missing"):
        ScoringConfig.model_validate({"weights": {"capability_match": 1}})
