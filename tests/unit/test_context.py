import pytest
from pydantic import ValidationError

from graph.context import TaskContext
from tests.conftest import PORT_HEALER


def test_accepts_the_spec_example():
    ctx = TaskContext(**PORT_HEALER)
    assert ctx.max_cost_usd == 0.01
    assert ctx.keywords == ("port", "kill", "restart", "process")


@pytest.mark.parametrize(
    ("field", "value"),
    [("domain", "cooking"), ("complexity", "huge"), ("priority", "urgent"),
     ("max_cost_usd", -1), ("max_cost_usd", float("inf")), ("max_latency_ms", 0),
     ("max_latency_ms", 10**20), ("task_type", "Code Fix!"),
     ("max_cost_usd", True), ("max_latency_ms", True)],  # pydantic alone reads True as 1
)
def test_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValidationError) as err:
        TaskContext(**{**PORT_HEALER, field: value})
    assert field in str(err.value)


def test_numbers_written_as_strings_still_pass():  # as LLM-written tool arguments send them
    ctx = TaskContext(**{**PORT_HEALER, "max_cost_usd": "0.02", "max_latency_ms": "1500"})
    assert (ctx.max_cost_usd, ctx.max_latency_ms) == (0.02, 1500)


def test_rejects_unknown_fields_by_name():
    with pytest.raises(ValidationError) as err:
        TaskContext(**PORT_HEALER, max_cost=1.0)
    assert "max_cost" in str(err.value)


def test_lists_are_not_shared_between_instances():
    a = TaskContext(task_type="x", domain="optimize", complexity="simple", priority="low")
    b = TaskContext(task_type="y", domain="optimize", complexity="simple", priority="low")
    assert a.keywords == () and b.keywords == ()
    with pytest.raises(ValidationError):
        a.keywords = ("mutated",)  # frozen


def test_word_lists_take_a_comma_separated_string_as_agents_write_them():
    """An agent's model sent "port, kill" and was refused with "a valid tuple"."""
    ctx = TaskContext(**{**PORT_HEALER, "keywords": "port, kill,", "dependencies": "fastapi"})
    assert (ctx.keywords, ctx.dependencies) == (("port", "kill"), ("fastapi",))
    assert TaskContext(**{**PORT_HEALER, "keywords": ["a b"]}).keywords == ("a b",)


def test_every_field_is_described_in_the_json_schema():
    """What Studio's form and a CrewAI agent's model read: task_type had no description."""
    fields = TaskContext.model_json_schema()["properties"]
    assert all(spec.get("description") for spec in fields.values()), [
        name for name, spec in fields.items() if not spec.get("description")]
    assert "code_fix" in fields["task_type"]["description"]
