"""`model-selector rate` and `run --policy` as a user runs them (real subprocess, real Redis):
run a request, rate it by the id `run` printed, and route the next one on the rating."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time

import pytest

from tests.integration.test_cli import cli, env  # noqa: F401  # env is a fixture

RUN = ["run", "--task-type", "code_fix", "--domain", "self_heal", "--complexity", "simple",
       "--priority", "critical", "--prompt", "free port 8080", "--mock-response", "fuser -k"]
PRIMARY = "llama-3.3-70b-versatile"  # the primary for this task (answered by the mock)


def log_lines(env):  # noqa: F811
    with open(env["FEEDBACK_LOG_PATH"], encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def tally(redis_client, prefix):
    """The tally's counts and sums; each model's `t:` (as of when) must be there too."""
    raw = redis_client.hgetall(f"{prefix}model:quality:self_heal:code_fix")
    models = {k.partition(":")[2] for k in raw}
    assert all(abs(float(raw[f"t:{m}"]) - time.time()) < 600 for m in models), raw
    return {k: v for k, v in raw.items() if not k.startswith("t:")}


def test_run_prints_the_request_id_and_rate_credits_its_model(env, redis_client,  # noqa: F811
                                                              prefix):
    out = cli(env, *RUN)
    assert out.returncode == 0, out.stderr
    [rid] = re.findall(r"   request ([0-9a-f-]{36})$", out.stderr, re.MULTILINE)
    [request] = log_lines(env)
    assert request["request_id"] == rid and request["model_id"] == PRIMARY

    rated = cli(env, "rate", rid, "0.8")
    assert rated.returncode == 0, rated.stderr
    assert rated.stdout == (f"rated {rid} 0.8: credited to {PRIMARY} on self_heal/code_fix "
                            "(the request's first rating)\n")
    record = log_lines(env)[-1]
    assert {k: v for k, v in record.items() if k != "timestamp"} == {
        "type": "rating", "request_id": rid, "model_id": PRIMARY, "domain": "self_heal",
        "task_type": "code_fix", "user_feedback": 0.8, "replaces": None}
    assert tally(redis_client, prefix) == {f"n:{PRIMARY}": "1", f"q:{PRIMARY}": "0.8"}

    again = cli(env, "rate", rid, "0.25", "--comment", "killed the wrong pid", "--json")
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert (data["user_feedback"], data["replaces"], data["comment"]) == (
        0.25, 0.8, "killed the wrong pid")
    assert log_lines(env)[-1] == data and len(log_lines(env)) == 3
    n, q = (tally(redis_client, prefix)[f"{k}:{PRIMARY}"] for k in "nq")
    assert (n, float(q)) == ("1", pytest.approx(0.25))  # replaced, not a second vote


def test_run_policy_learned_routes_on_the_rating_and_its_json_has_the_id(env):  # noqa: F811
    first = cli(env, *RUN, "--json")
    assert first.returncode == 0, first.stderr
    spec = json.loads(first.stdout)
    assert "learned_quality" not in spec["chain"][0]["score"]  # the default policy is spec
    assert cli(env, "rate", spec["thread_id"], "0").returncode == 0

    second = cli(env, *RUN, "--policy", "learned", "--json")
    assert second.returncode == 0, second.stderr
    out = json.loads(second.stdout)
    assert out["success"] is True and out["thread_id"] != spec["thread_id"]
    score = {c["model_id"]: c["score"] for c in out["candidates"]}[PRIMARY]
    # one rating of 0 against the prior of 5 ratings at capability 1.0: (0 + 5) / 6; the
    # rating has faded for the seconds the CLI runs took (30-day half-life: 2.7e-7 a second)
    assert score["ratings"] == pytest.approx(1, rel=1e-4)
    assert score["learned_quality"] == pytest.approx(5 / 6, rel=1e-4)
    assert score["capability_match"] < 1.0 and score["total"] < spec["chain"][0]["score"]["total"]
    # the learned run's id is ratable in turn
    assert cli(env, "rate", out["thread_id"], "1").returncode == 0


def test_run_policy_learned_quality_is_accepted(env):  # noqa: F811
    out = cli(env, *RUN, "--policy", "learned-quality")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "fuser -k"


@pytest.mark.parametrize(("policy", "message"), [
    ("bogus", "model-selector run: error: argument --policy: unknown policy 'bogus' (known: "
              "spec, cheapest, random, learned, learned-quality, model:<id>)"),
    ("model:nope", "model-selector: error: 'model:nope' pins a model the registry does not have"),
])
def test_run_rejects_a_bad_policy_in_one_line_before_any_call(env, policy, message):  # noqa: F811
    out = cli(env, *RUN, "--policy", policy)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == message
    with pytest.raises(FileNotFoundError):  # no request was made, so nothing was logged
        log_lines(env)


@pytest.mark.parametrize("quality", ["1.5", "-0.1", "nan", "inf", "high", ""])
def test_rate_rejects_a_bad_quality_at_parsing(env, quality):  # noqa: F811
    out = cli(env, "rate", "some-id", quality)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == (
        f"model-selector rate: error: argument QUALITY: {quality!r}: must be a number from 0 to 1")


def test_rate_an_unknown_request_is_one_line_exit_2_records_nothing(env,  # noqa: F811
                                                                    redis_client, prefix):
    out = cli(env, "rate", "no-such-request", "0.5")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith(
        "model-selector: error: request 'no-such-request' is not ratable: no served request "
        "has that id in the last 604800 s (RATING_WINDOW_S)")
    assert len(out.stderr.strip().splitlines()) == 1
    assert log_lines(env) == []  # opened (found writable) first; nothing written
    assert list(redis_client.scan_iter(f"{prefix}*")) == []


def test_rate_with_ratings_off_says_so(env):  # noqa: F811
    out = cli({**env, "RATING_WINDOW_S": "0"}, "rate", "some-id", "0.5")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "model-selector: error: ratings are off (RATING_WINDOW_S=0): no request is ratable")


def test_rate_without_redis_is_one_line_exit_1(env):  # noqa: F811
    out = cli({**env, "REDIS_URL": "redis://127.0.0.1:1/0"}, "rate", "some-id", "0.5")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith(
        "model-selector: Redis did not answer; the rating was not recorded: ")
    assert len(out.stderr.strip().splitlines()) == 1
    assert log_lines(env) == []


def test_rate_never_imports_litellm_or_langgraph(env, redis_client, prefix):  # noqa: F811
    # a served request as record_feedback leaves it (Store.log_usage), without serving one
    from graph.store import Served, Store

    Store(redis_client, prefix=prefix).log_usage("gpt-4o-mini-self-heal", {}, (
        "r-1", Served("gpt-4o-mini-self-heal", "self_heal", "code_fix")))
    code = textwrap.dedent("""
        import sys
        from graph.cli import main
        assert main(["rate", "r-1", "0.5"]) == 0
        print(sorted(m for m in ("litellm", "langgraph", "langchain_core") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip().splitlines() == [
        "rated r-1 0.5: credited to gpt-4o-mini-self-heal on self_heal/code_fix "
        "(the request's first rating)", "[]"], out.stderr
    assert tally(redis_client, prefix) == {"n:gpt-4o-mini-self-heal": "1",
                                           "q:gpt-4o-mini-self-heal": "0.5"}
