"""Budgets and deadlines hold across the whole chain (pure pre-flight checks)."""

from graph.registry import load_registry
from graph.state import RunSettings, log_attempts
from nodes.call_model import attempt, call_params, preflight
from nodes.next_fallback import backoff_s, decline_retry, next_position, stop_reason
from nodes.selection import usd

REG = load_registry()
CLAUDE = REG.models["claude-3.5-sonnet"]  # 3 / 15 USD per 1M


def state(**kw):
    base = {"tries": 0, "task": {"max_cost_usd": 0.10, "domain": "optimize"},
            "prompt_tokens": 1000, "max_output_tokens": 4096, "spent_usd": 0.0,
            "deadline": None}
    return {**base, **kw}


def test_budget_counts_what_earlier_attempts_spent():
    worst = CLAUDE.cost_usd(1000, 4096)  # 0.003 + 0.06144
    assert preflight(state(spent_usd=0.0), CLAUDE, now=0) is None
    skip = preflight(state(spent_usd=0.10 - worst + 0.001), CLAUDE, now=0)
    assert skip["error_class"] == "budget" and skip["action"] == "next"
    assert "over budget $0.100000" in skip["error"]


def test_a_budget_below_a_millionth_of_a_dollar_is_shown_as_itself():
    skip = preflight(state(task={"max_cost_usd": 2.5e-7, "domain": "optimize"}), CLAUDE, now=0)
    assert skip["error"] == ("spent $0.000000 + worst case of this call would be $0.064440, "
                             "over budget $2.5e-07")
    assert usd(0) == "$0.000000" and usd(0.0123) == "$0.012300" and usd(1e-6) == "$0.000001"
    assert usd(3.14159e-9) == "$3.14e-09"


def test_no_attempt_starts_after_the_deadline():
    skip = preflight(state(deadline=100.0), CLAUDE, now=100.0)
    assert skip["error_class"] == "deadline" and skip["action"] == "stop"
    assert preflight(state(deadline=100.0), CLAUDE, now=99.9) is None


def test_each_attempt_timeout_shrinks_to_what_is_left():
    settings = RunSettings(timeout_s=30)
    assert call_params(state(deadline=101.5), settings, now=100.0)["timeout_s"] == 1.5
    assert call_params(state(), settings, now=100.0)["timeout_s"] == 30


def test_the_result_says_which_budget_stopped_the_chain():
    a = {"model_id": "m", "try_no": 1, "ok": False, "action": "next", "error": "",
         "latency_ms": 0, "cost_usd": 0.0}
    assert stop_reason([{**a, "error_class": "budget"}, {**a, "error_class": "rate_limit"}]) == "budget"
    assert stop_reason([{**a, "error_class": "timeout"}, {**a, "error_class": "deadline"}]) == "deadline"
    assert stop_reason([{**a, "error_class": "timeout"}]) == "exhausted"
    # the chain spent after a retry the deadline declined: the deadline stopped it
    assert stop_reason([{**a, "error_class": "timeout"}], deadline_declined=True) == "deadline"
    assert stop_reason([{**a, "error_class": "budget"}], deadline_declined=True) == "budget"


def test_a_declined_retry_says_why():
    assert decline_retry("m", 0.5, past_deadline=False, circuit="closed") is None
    assert decline_retry("m", 0.5, past_deadline=True, circuit="closed") == (
        "no retry of m: its 0.50 s backoff would pass the request's deadline")
    assert decline_retry("m", 0.5, past_deadline=False, circuit="half_open") == (
        "no retry of m: its circuit is half-open")


def test_the_attempt_log_appends_and_a_record_of_the_last_attempt_amends_it():
    first = attempt("m", 1, error_class="timeout", action="retry")
    log = log_attempts(None, [first])
    assert log_attempts(log, [{**first, "action": "next"}]) == [{**first, "action": "next"}]
    second = attempt("m", 2, error_class="timeout", action="retry")
    other = attempt("n", 1, error_class="timeout", action="retry")
    assert log_attempts(log, [second, other]) == [first, second, other]
    assert log_attempts(log, None) == []  # a new request on the thread starts afresh


def test_backoff_is_exponential_with_full_jitter():
    upper = lambda lo, hi: hi  # noqa: E731
    assert [backoff_s(n, upper) for n in (1, 2, 3, 6)] == [0.5, 1.0, 2.0, 8.0]
    assert backoff_s(3, lambda lo, hi: lo) == 0.0


def test_next_position_by_action():
    chain = [{"model_id": m} for m in ("claude-3.5-sonnet", "qwen-2.5-coder-32b-instruct",
                                       "gpt-4o-mini-self-heal")]
    assert next_position(REG, chain, 0, "next") == 1
    assert next_position(REG, chain, 0, "next_other_provider") == 1
    assert next_position(REG, chain, 1, "next_larger_context") == 2  # 32k -> 128k
    assert next_position(REG, chain, 0, "next_larger_context") is None  # nothing beyond 200k
