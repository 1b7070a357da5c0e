"""The fault drill, short: its three target figures hold, and its open-circuit counter works."""

from __future__ import annotations

import io

import pytest

from tests.bench.drill import Instruments, print_table, run_drill, targets_met


@pytest.mark.slow
def test_short_drill_meets_the_three_targets() -> None:
    result = run_drill(requests=120, seed=11)
    table = io.StringIO()
    print_table(result, file=table)
    assert result["requests"] == 120
    # 100 % served while a candidate is healthy (the default faults leave one in every chain)
    assert result["failed_with_healthy_candidate"] == 0, result["failed_detail"]
    assert result["successes"] == 120, table.getvalue()
    # no call reached a model whose circuit was open, except half-open probes
    assert result["calls_to_open_circuit"] == 0, result["violations"]
    # one feedback record per request, and every call's usage entry in Redis after the restart
    assert result["feedback_records"] == 120 and result["feedback_duplicate_ids"] == 0
    usage = result["usage"]
    assert usage["entries_total"] == usage["calls_total"]
    assert usage["missing"] == usage["extra"] == 0
    assert usage["entries"].get("outage", 0) == usage["calls"]["outage"] > 0
    assert all(targets_met(result).values()), table.getvalue()
    # the faults were really there: the primary failed, circuits opened, the outage happened
    assert result["openings"] and result["fallbacks"] > 0
    assert result["outage"]["requests"] == 12 and result["outage"]["served"] == 12
    assert "calls to an open circuit" in table.getvalue()


def test_the_open_circuit_counter_sees_a_call_to_an_open_circuit(services) -> None:
    """Negative control: a call sent past an open circuit is counted."""
    from nodes import llm

    model_id = "llama-3.3-70b-versatile"
    policy = services.registry.breaker_policy("self_heal")
    inst = Instruments(services.store, "p0")
    inst.install()
    try:
        for _ in range(policy.failure_threshold):
            services.store.with_circuits(lambda c: c.record_failure(model_id, policy))
        llm.call(services.registry.models[model_id], [{"role": "user", "content": "hi"}],
                 max_tokens=5, temperature=0, timeout_s=5, mock_response="ok")
    finally:
        inst.uninstall()
    assert inst.calls == {"open": 1}
    assert [v["model"] for v in inst.violations] == [model_id]
    assert [e["kind"] for e in inst.events].count("open") == 1
    assert llm.call.__module__ == "nodes.llm"  # the wrapper is gone
