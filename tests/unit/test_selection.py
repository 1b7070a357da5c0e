"""The spec's usage examples and unit tests are the contract for what gets selected."""

import pytest

from graph.context import TaskContext
from graph.registry import load_registry
from nodes.scoring import effective_weights
from nodes.selection import Limits, NoEligibleModel, select
from tests.conftest import DEPENDENCY_UPGRADER, PORT_HEALER, QUERY_OPTIMIZER

REG = load_registry()


def decide(context, prompt_tokens=200, max_tokens=4096, statuses=None, unavailable=None):
    ctx = TaskContext(**context)
    return select(REG, ctx, Limits(prompt_tokens, max_tokens), effective_weights(REG.scoring, ctx),
                  statuses or {}, unavailable or {})


def chain(decision):
    return [r.model_id for r in decision.chain]


@pytest.mark.parametrize(("context", "expected"), [
    (PORT_HEALER, ["llama-3.3-70b-versatile", "gpt-4o-mini-self-heal", "deepseek-coder-33b-instruct"]),
    (QUERY_OPTIMIZER, ["claude-3.5-sonnet", "qwen-2.5-coder-32b-instruct", "gpt-4o-mini-self-heal"]),
    (DEPENDENCY_UPGRADER, ["gemini-2.0-flash-exp", "mistral-large-latest", "claude-3.5-sonnet"]),
])
def test_spec_usage_examples_select_exactly_what_the_spec_expects(context, expected):
    assert chain(decide(context)) == expected


def test_spec_unit_test_select_model_for_self_heal():
    d = decide(dict(task_type="code_fix", domain="self_heal", complexity="simple",
                    priority="critical", max_cost_usd=0.01, max_latency_ms=2000))
    assert d.chain[0].model_id in ["llama-3.3-70b-versatile", "gpt-4o-mini-self-heal"]
    assert len(d.chain[1:]) == 2


def test_spec_unit_test_fallback_on_expensive_task():
    d = decide(dict(task_type="architecture_review", domain="optimize", complexity="complex",
                    priority="low", max_cost_usd=None))
    assert REG.models[d.chain[0].model_id].cost_per_1m_tokens <= 0.5


def test_every_model_is_either_chained_or_excluded_with_a_reason():
    d = decide(PORT_HEALER)
    assert set(chain(d)) | set(d.excluded) == set(REG.models)
    assert d.excluded["gpt-4.1"].startswith("worst-case cost $")  # in domain, over budget
    assert d.excluded["claude-3.5-sonnet"].startswith("domain self_heal not in")
    assert d.excluded["gemini-2.0-flash-exp"].startswith("domain self_heal not in")
    assert d.chain[2].via == "self_heal fallback policy"
    assert d.chain[2].note == "lacks capability code_fix"
    # and every model is a scored candidate or excluded: the topped-up one was neither
    candidates = [r.model_id for r in d.candidates]
    assert sorted(candidates + list(d.excluded)) == sorted(REG.models)
    assert candidates[-1] == "deepseek-coder-33b-instruct"


def test_candidates_carry_score_components():
    top = decide(PORT_HEALER).candidates[0]
    assert top.model_id == "llama-3.3-70b-versatile"
    assert set(top.score.as_dict()) == {"total", "capability_match", "cost_efficiency",
                                        "latency_priority", "health_status"}


def test_dead_and_unavailable_models_are_excluded_and_the_next_best_promoted():
    d = decide(PORT_HEALER, statuses={"llama-3.3-70b-versatile": "dead"},
               unavailable={"gpt-4o-mini-self-heal": "circuit open until 2026-11-26T04:00:00Z"})
    assert d.excluded["llama-3.3-70b-versatile"] == "status dead"
    assert d.excluded["gpt-4o-mini-self-heal"].startswith("circuit open until")
    assert chain(d)[0] == "deepseek-coder-33b-instruct"  # policy top-up still serves


def test_the_prompt_must_fit_the_context_window():
    d = decide(QUERY_OPTIMIZER, prompt_tokens=30_000)
    assert "qwen-2.5-coder-32b-instruct" not in chain(d)
    assert d.excluded["qwen-2.5-coder-32b-instruct"] == (
        "context window 32768 < 30000 prompt + 4096 output tokens")


def test_require_local_keeps_only_local_models():
    d = decide(dict(task_type="code_optimization", domain="optimize", complexity="medium",
                    priority="medium", require_local=True))
    assert d.chain and all(REG.models[m].is_local for m in chain(d))
    assert d.excluded["claude-3.5-sonnet"] == "not local (require_local is set)"


def test_budget_filters_on_worst_case_cost():
    d = decide({**QUERY_OPTIMIZER, "max_cost_usd": 0.001})
    assert "claude-3.5-sonnet" in d.excluded
    assert all(REG.models[m].cost_usd(200, 4096) <= 0.001 for m in chain(d))


def test_nothing_qualifies_error_lists_every_reason():
    with pytest.raises(NoEligibleModel) as err:
        decide({**PORT_HEALER, "max_cost_usd": 0.0}, statuses={
            "llama-3.3-70b-versatile": "dead"})
    message = str(err.value)
    assert "llama-3.3-70b-versatile: status dead" in message
    assert "gpt-4.1: worst-case cost" in message
    assert len(err.value.excluded) == len(REG.models)


def test_a_request_with_tools_goes_only_to_models_that_can_call_them():
    ctx = TaskContext(**QUERY_OPTIMIZER)
    d = select(REG, ctx, Limits(200, 4096, tools=True), effective_weights(REG.scoring, ctx),
               {}, {})
    # the spec's second model, a self-hosted vLLM without tool calling, leaves the chain
    assert chain(d)[0] == "claude-3.5-sonnet" and "qwen-2.5-coder-32b-instruct" not in chain(d)
    assert d.excluded["qwen-2.5-coder-32b-instruct"] == (
        "cannot call tools (tool_calling: false in the registry)")
    assert all(REG.models[m].tool_calling for m in chain(d))


def test_tool_calling_comes_from_litellms_map_unless_the_registry_states_it():
    models = REG.models
    assert models["gpt-4o-mini-self-heal"].tool_calling is True  # the map says so
    assert models["llama-3.3-70b-versatile"].tool_calling is True  # stated (the map lacks it)
    assert models["perplexity-sonar"].tool_calling is False  # neither: not assumed
    assert models["deepseek-coder-33b-instruct"].tool_calling is False


def test_nothing_eligible_is_transient_only_when_a_model_that_meets_the_request_waits():
    """Any open circuit among the reasons made it "worth retrying", even for a request
    no model could ever meet."""
    open_ = "circuit open until 2030-01-01T00:00:00Z"
    waiting = {m: open_ for m in REG.models}
    with pytest.raises(NoEligibleModel) as err:
        decide(PORT_HEALER, unavailable=waiting)
    assert err.value.transient
    with pytest.raises(NoEligibleModel) as err:  # too big for every window: circuits or not
        decide(PORT_HEALER, prompt_tokens=10**7, unavailable=waiting)
    assert not err.value.transient
    with pytest.raises(NoEligibleModel) as err:
        decide(PORT_HEALER, unavailable={m: "unusable: auth" for m in REG.models})
    assert not err.value.transient
    with pytest.raises(NoEligibleModel) as err:  # down by the last probe: it may come back
        decide(PORT_HEALER, statuses={m: "dead" for m in REG.models})
    assert err.value.transient


def test_a_waiting_model_without_its_key_here_does_not_make_a_refusal_transient(monkeypatch):
    """A hosted model whose circuit another replica opened was counted as waiting, though
    this process, without its key, can never call it."""
    for model in REG.models.values():
        if model.key_env:
            monkeypatch.delenv(model.key_env, raising=False)
    reasons = {m: ("circuit open until 2030-01-01T00:00:00Z" if REG.models[m].key_env
                   else "unusable: auth") for m in REG.models}
    with pytest.raises(NoEligibleModel) as err:
        decide(PORT_HEALER, unavailable=reasons)
    assert not err.value.transient
    monkeypatch.setenv("GROQ_API_KEY", "gsk_test")  # llama-3.3-70b-versatile's
    with pytest.raises(NoEligibleModel) as err:
        decide(PORT_HEALER, unavailable=reasons)
    assert err.value.transient
