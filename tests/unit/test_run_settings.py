import math

import pytest

from graph.state import RunSettings


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("max_tokens", -10**8, "must be an integer >= 1"),
    ("max_tokens", 0, "must be an integer >= 1"),
    ("max_tokens", 2.5, "must be an integer >= 1"),
    ("top_k", 0, "must be an integer >= 1"),
    ("top_k", -2, "must be an integer >= 1"),
    ("max_tries_per_model", 0, "must be an integer >= 1"),
    ("timeout_s", 0, "must be a finite number > 0"),
    ("timeout_s", -1.0, "must be a finite number > 0"),
    ("timeout_s", math.inf, "must be a finite number > 0"),
    ("timeout_s", math.nan, "must be a finite number > 0"),
    ("temperature", -0.1, "must be a number from 0 to 2"),
    ("temperature", 2.5, "must be a number from 0 to 2"),
    ("temperature", math.nan, "must be a number from 0 to 2"),
    ("require_keys", "no", "must be True or False"),  # "no" is truthy: keys would be required
    ("seed", "x", "must be an integer"),
    ("seed", True, "must be an integer"),
    ("policy", None, r"must be a policy name \(nodes/policies.py\)"),
    ("policy", "", r"must be a policy name \(nodes/policies.py\)"),
])
def test_rejects_values_the_service_would_reject_naming_field_and_rule(field, value, rule):
    with pytest.raises(ValueError, match=rf"^{field}=.*: {rule}$"):
        RunSettings(**{field: value})


@pytest.mark.parametrize(("mocks", "rule"), [
    ("hello", r"^mock_responses: must be a mapping"),
    ({1: "x"}, r"^mock_responses\[1\]: keys are model ids or '\*'"),
    # each of these failed at every model as an unclassified error, opening their circuits
    ({"*": 5}, r"^mock_responses\['\*'\]=5: must be text, an exception instance"),
    ({"*": TimeoutError}, r"=<class 'TimeoutError'>: an exception instance .*, not the class"),
    ({"m": {"text": "hi"}}, r"content and tool_calls only, not \['text'\]"),
])
def test_mock_responses_must_map_models_to_mocks(mocks, rule):
    with pytest.raises(ValueError, match=rule):
        RunSettings(mock_responses=mocks)
    assert RunSettings(mock_responses={"*": ""}).mock_for("any") == ""  # empty text is a mock
    RunSettings(mock_responses={"a": TimeoutError("t"), "b": {"content": "", "tool_calls": []},
                                "c": None, "d": "litellm.RateLimitError"})


def test_a_node_reads_its_settings_from_the_context_or_takes_the_defaults():
    from graph.state import DEFAULT_SETTINGS, settings_of

    mine = RunSettings(top_k=2)
    assert settings_of(mine) is mine
    assert settings_of(None) is DEFAULT_SETTINGS
    assert settings_of({"top_k": 2}) == mine  # a parent without a schema passes a dict on
    assert settings_of({"user_id": "u1"}) is DEFAULT_SETTINGS  # a parent's own context
    assert settings_of(object()) is DEFAULT_SETTINGS
    # ours with a misspelt key: refused, not run on the defaults (its mocks unapplied)
    with pytest.raises(TypeError, match="unknown RunSettings field\\(s\\) max_token$"):
        settings_of({"mock_responses": {"*": "ok"}, "max_token": 64})
    # a parent's own context that shares a name with ours is the parent's: the defaults
    assert settings_of({"user_id": "u1", "temperature": 0.7}) is DEFAULT_SETTINGS


def test_accepts_the_defaults_and_the_edges():
    RunSettings()
    RunSettings(max_tokens=1, top_k=1, max_tries_per_model=1, timeout_s=0.001,
                temperature=0)
    RunSettings(timeout_s=30, temperature=2)  # ints where floats are declared


def test_replace_revalidates():
    import dataclasses

    with pytest.raises(ValueError, match="top_k=0"):
        dataclasses.replace(RunSettings(), top_k=0)
