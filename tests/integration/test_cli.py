"""The `model-selector` command as a user runs it (a real subprocess, real Redis)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REDIS_URL

SELECT = ["select", "--task-type", "code_fix", "--domain", "self_heal", "--complexity",
          "simple", "--priority", "critical", "--max-cost-usd", "0.01", "--max-latency-ms", "2000"]


@pytest.fixture
def env(prefix, tmp_path):
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return {**clean, "REDIS_URL": REDIS_URL, "MODEL_SELECTOR_KEY_PREFIX": prefix,
            "FEEDBACK_LOG_PATH": str(tmp_path / "fb.jsonl"), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def cli(env, *args):
    return subprocess.run([sys.executable, "-m", "graph.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_select_prints_the_primary_with_components_and_flags_missing_keys(env):
    out = cli(env, *SELECT)
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[1]
    assert first.startswith("primary   llama-3.3-70b-versatile")
    assert "capability 1.00, cost 1.00, latency 0.70, health 1.00" in first
    assert "! missing API key: set GROQ_API_KEY" in first
    assert "gpt-4.1: worst-case cost" in out.stdout


def test_select_json(env):
    data = json.loads(cli(env, *SELECT, "--json").stdout)
    assert data["primary"] == "llama-3.3-70b-versatile"
    assert data["fallbacks"] == ["gpt-4o-mini-self-heal", "deepseek-coder-33b-instruct"]
    assert data["chain"][0]["missing_key"] == "missing API key: set GROQ_API_KEY"


def test_select_never_imports_litellm_or_langgraph(env):
    code = textwrap.dedent(f"""
        import sys
        from graph.cli import main
        assert main({SELECT!r}) == 0
        print(sorted(m for m in ("litellm", "langgraph", "langchain_core") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--priority", "urgent"], "argument --priority: invalid choice"),
    (["--max-cost-usd", "-1"], "max_cost_usd: Input should be greater than or equal to 0"),
    (["--task-type", "Fix It!"], "task_type: String should match pattern"),
    (["--max-cost-usd", "inf"], "max_cost_usd: Input should be a finite number"),
    # a negative max_tokens made the worst-case cost negative: over-budget models passed
    (["--max-tokens", "-100000000"], "argument --max-tokens: must be an integer >= 1"),
    (["--top-k", "0"], "argument --top-k: must be an integer >= 1"),
    (["--top-k", "-2"], "argument --top-k: must be an integer >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(env, args, message):
    out = cli(env, *SELECT, *args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) <= 2


def test_nothing_eligible_explains_every_exclusion(env):
    out = cli(env, *SELECT[:-4], "--max-cost-usd", "0", "--require-local")
    assert out.returncode == 2
    assert "no model can serve task_type='code_fix'" in out.stderr
    assert "llama-3.3-70b-versatile: not local" in out.stderr


def test_run_offline_with_a_mock_response_excludes_keyless_models(env):
    out = cli(env, "run", *SELECT[1:], "--prompt", "free port 8080", "--mock-response", "done")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "done"
    assert "model llama-3.3-70b-versatile" in out.stderr


def test_an_empty_mock_response_is_an_empty_answer_not_real_calls(env):
    out = cli(env, "run", *SELECT[1:], "--prompt", "free port 8080", "--mock-response", "",
              "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["success"] is True and body["response"] == ""
    assert [a["error_class"] for a in body["attempts"]] == [None]  # one call, answered


def test_a_closed_pipe_ends_the_output_quietly(env):
    shell = f"{sys.executable} -m graph.cli registry list | head -1"
    out = subprocess.run(["bash", "-c", shell], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.startswith("gpt-4o-mini-self-heal") and out.stdout.count("\n") == 1
    assert "Traceback" not in out.stderr and "BrokenPipeError" not in out.stderr


def test_an_unknown_domain_in_registry_list_is_bad_input(env):
    out = cli(env, "registry", "list", "--domain", "self-heal")
    assert out.returncode == 2 and out.stdout == ""
    assert "argument --domain: invalid choice: 'self-heal'" in out.stderr


def test_the_dry_run_counts_a_system_prompt_given_without_a_prompt(env):
    big = "word " * 20_000  # over deepseek-coder-33b-instruct's 16,000-token window
    out = cli(env, *SELECT, "--system-prompt", big, "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["prompt_tokens"] > 20_000
    assert "context window" in body["excluded"]["deepseek-coder-33b-instruct"]


@pytest.mark.parametrize(("args", "message"), [
    (["--timeout-s", "-1"], "argument --timeout-s: must be a finite number > 0"),
    (["--timeout-s", "nan"], "argument --timeout-s: must be a finite number > 0"),
    (["--top-k", "-1"], "argument --top-k: must be an integer >= 1"),
])
def test_run_rejects_bad_settings_at_parsing(env, args, message):
    out = cli(env, "run", *SELECT[1:], "--prompt", "p", "--mock-response", "done", *args)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == f"model-selector run: error: {message}"


def test_evaluate_rejects_an_unknown_policy_at_parsing_listing_all(env):
    out = cli(env, "evaluate", "--policies", "spec,bogus")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "model-selector evaluate: error: argument --policies: unknown policy 'bogus' "
        "(known: random, cheapest, best-single, spec, learned, learned-quality, model:<id>)")


@pytest.mark.parametrize(("args", "message"), [
    (["--concurrency", "0"], "argument --concurrency: must be an integer >= 1"),
    (["--limit", "-1"], "argument --limit: must be an integer >= 1"),
])
def test_evaluate_rejects_counts_below_one_at_parsing(env, args, message):
    out = cli(env, "evaluate", *args)
    assert out.returncode == 2
    assert out.stderr.strip() == f"model-selector evaluate: error: {message}"


def test_evaluate_rejects_a_pinned_model_not_in_the_registry_before_running(env, tmp_path):
    out = cli(env, "evaluate", "--policies", "model:nope", "--out", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.startswith(
        "model-selector: error: 'model:nope' pins a model the registry does not have")
    assert len(out.stderr.strip().splitlines()) == 1  # no progress bar, no traceback


def test_run_without_keys_or_mocks_names_the_missing_variables(env):
    out = cli(env, "run", *SELECT[1:], "--prompt", "free port 8080", "--json")
    data = json.loads(out.stdout)
    assert data["excluded"]["llama-3.3-70b-versatile"] == "missing API key: set GROQ_API_KEY"
    # the local deepseek server is the only keyless candidate; nothing listens on :8001
    assert data["success"] is False and data["chain"][0]["model_id"] == (
        "deepseek-coder-33b-instruct")
    assert out.returncode == 1


def test_registry_commands(env, tmp_path):
    out = cli(env, "registry", "validate")
    assert out.returncode == 0 and "58 models valid" in out.stdout
    assert "self_heal 10, optimize 15, modernize 12, specialized 21" in out.stdout
    bad = tmp_path / "model_registry.yaml"
    bad.write_text("models:\n  - id: x\n")
    out = cli(env, "registry", "validate", str(bad))
    assert out.returncode == 2 and "models[0] (id 'x'): provider: Field required" in out.stderr
    assert len(json.loads(cli(env, "registry", "list", "--json").stdout)) == 58
    assert cli(env, "registry", "init").stdout.startswith("loaded 58 statuses")


def test_health_lists_every_model(env):
    out = cli(env, "health", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 58 and {r["circuit"] for r in rows} == {"closed"}


def test_health_without_redis_says_it_cannot_show_the_shared_state(env):
    out = cli({**env, "REDIS_URL": "redis://127.0.0.1:1/0"}, "health")
    assert out.returncode == 1
    assert len(out.stdout.splitlines()) == 58  # the registry's view, still printed
    assert out.stderr.strip().endswith("model-selector: redis unavailable: this shows the "
                                       "registry's statuses (and any probe), not the health "
                                       "and circuits the replicas share")


def test_registry_init_without_redis_exits_1_as_worth_retrying(env):
    """It exited 2, the code for bad input, where rate and health exit 1."""
    out = cli({**env, "REDIS_URL": "redis://127.0.0.1:1/0"}, "registry", "init")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("model-selector: error: redis unavailable: ")
    assert len(out.stderr.strip().splitlines()) == 1


def test_nothing_eligible_for_now_exits_1_and_json_gets_the_409_body(env, redis_client,
                                                                     prefix):
    """Open circuits are transient: exit 2 ("bad input") told scripts not to retry, and
    --json printed nothing on stdout."""
    from graph.registry import load_registry
    from graph.store import Store

    registry = load_registry()
    circuits = Store(redis_client, prefix=prefix).circuits
    policy = registry.breaker_policy("self_heal")
    for model_id in registry.models:
        for _ in range(policy.failure_threshold):
            circuits.record_failure(model_id, policy)
    out = cli(env, *SELECT, "--json")
    assert out.returncode == 1, out.stderr
    body = json.loads(out.stdout)
    assert body["error"] == "no_eligible_model"
    assert body["message"] == "no model can serve task_type='code_fix' domain='self_heal'"
    assert body["excluded"]["llama-3.3-70b-versatile"].startswith("circuit open until")
    out = cli(env, *SELECT)
    assert out.returncode == 1 and "no model can serve" in out.stderr


def test_health_reset_forgets_what_the_fleet_learned_about_a_model(env, redis_client, prefix):
    """A mocked auth failure marked a model unusable for good, with no way to lift it."""
    from graph.registry import load_registry
    from graph.store import Store

    store = Store(redis_client, prefix=prefix)
    policy = load_registry().breaker_policy("self_heal")
    for model_id in ("llama-3.3-70b-versatile", "gpt-4.1"):
        store.circuits.mark_unusable(model_id, "fp", "auth")
        for _ in range(policy.failure_threshold):
            store.circuits.record_failure(model_id, policy)
        store.update_health(model_id, "dead")
    out = cli(env, "health", "--reset", "llama-3.3-70b-versatile", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["model_id"]: r for r in json.loads(out.stdout)}
    assert (rows["llama-3.3-70b-versatile"]["health"],
            rows["llama-3.3-70b-versatile"]["circuit"]) == ("alive", "closed")
    assert rows["gpt-4.1"]["health"] == "dead" and rows["gpt-4.1"]["circuit"] != "closed"
    assert "reset llama-3.3-70b-versatile: circuit closed" in out.stderr
    bad = cli(env, "health", "--reset", "llama-3.3")
    assert bad.returncode == 2 and "--reset: no model llama-3.3 in the registry" in bad.stderr
