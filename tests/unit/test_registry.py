import textwrap
from pathlib import Path

import pytest

from graph.registry import RegistryError, default_config_dir, load_registry


def write(tmp: Path, models: str, policies: str | None = None) -> Path:
    reg = tmp / "model_registry.yaml"
    reg.write_text(textwrap.dedent(models))
    (tmp / "fallback_policies.yaml").write_text(textwrap.dedent(policies or """
        policies:
          optimize:
            primary: a
            fallbacks: [b]
    """))
    return reg


MODEL = """
  - id: {id}
    provider: acme
    model: openai/gpt-4o-mini
    group: optimize
    capabilities: [x]
    domains: [optimize]
    avg_latency_ms: 500
    context_window: 1000
    status: alive
"""


def two_models(extra: str = "") -> str:
    return "models:" + MODEL.format(id="a") + MODEL.format(id="b") + extra


def test_bundled_registry_and_policies_load():
    reg = load_registry()
    assert len(reg.models) == 58
    assert reg.fallback_chain("self_heal") == (
        "llama-3.3-70b-versatile", "gpt-4o-mini-self-heal", "deepseek-coder-33b-instruct")
    assert reg.breaker_policy("optimize").failure_threshold == 3
    assert reg.breaker_policy("modernize").timeout_seconds == 180


def test_prices_come_from_litellm_map_unless_stated(tmp_path):
    reg = load_registry(write(tmp_path, two_models()))
    assert reg.models["a"].input_cost_per_1m == pytest.approx(0.15)
    assert reg.models["a"].output_cost_per_1m == pytest.approx(0.60)
    assert reg.models["a"].cost_per_1m_tokens == pytest.approx(0.15)  # defaults to input


def test_spec_models_keep_spec_metadata():
    m = load_registry().models
    assert m["gpt-4o-mini-self-heal"].cost_per_1m_tokens == 0.15
    assert m["deepseek-coder-33b-instruct"].context_window == 16000
    assert m["codellama-70b-instruct"].status == "degraded"
    assert m["llama-3.3-70b-versatile"].tags == ("free", "fast", "versatile")
    assert m["claude-3.5-sonnet"].model == "anthropic/claude-3-5-sonnet-20241022"


@pytest.mark.parametrize(
    ("models", "policies", "expected"),
    [
        (two_models() + MODEL.format(id="a"), None, "models[2] (id 'a'): duplicate id"),
        (two_models(), "policies:\n  optimize:\n    primary: ghost\n",
         "policies.optimize: names models not in the registry: ghost"),
        (two_models().replace("avg_latency_ms: 500", "avg_latency_ms: 500\n    input_cost_per_1m: -1", 1),
         None, "models[0] (id 'a'): input_cost_per_1m: Input should be greater than or equal to 0"),
        (two_models().replace("status: alive", "status: alive\n    colour: red", 1),
         None, "models[0] (id 'a'): colour: Extra inputs are not permitted"),
        (two_models().replace("openai/gpt-4o-mini", "acme/not-a-real-model", 1),
         None, "is not in LiteLLM's bundled price map"),
        ("models: []\n", None, "'models' must be a non-empty list"),
        (two_models() + "fallback_policies: {}\n", None, "unknown top-level key 'fallback_policies'"),
    ],
)
def test_broken_files_fail_naming_file_entry_and_reason(tmp_path, models, policies, expected):
    path = write(tmp_path, models, policies)
    with pytest.raises(RegistryError) as err:
        load_registry(path)
    assert expected in str(err.value)
    assert str(tmp_path) in str(err.value)


def test_reports_every_problem_at_once(tmp_path):
    bad = two_models().replace("avg_latency_ms: 500", "avg_latency_ms: -5")
    with pytest.raises(RegistryError) as err:
        load_registry(write(tmp_path, bad))
    assert "models[0]" in str(err.value) and "models[1]" in str(err.value)


def test_not_yaml_and_missing_file(tmp_path):
    (tmp_path / "model_registry.yaml").write_text("models: [unclosed\n")
    with pytest.raises(RegistryError, match="not valid YAML"):
        load_registry(tmp_path / "model_registry.yaml")
    with pytest.raises(RegistryError, match="file not found"):
        load_registry(tmp_path / "nope.yaml")


def test_registry_path_env_selects_another_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRY_PATH", str(write(tmp_path, two_models())))
    assert set(load_registry().models) == {"a", "b"}


def test_installed_copy_is_found():
    assert (default_config_dir() / "model_registry.yaml").exists()
