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
        (two_models().replace("avg_latency_ms: 500", "avg_latency_ms: 500\n    output_cost_per_1m: .inf", 1),
         None, "models[0] (id 'a'): output_cost_per_1m: Input should be a finite number"),
        (two_models().replace("avg_latency_ms: 500", "avg_latency_ms: 500\n    cost_per_1m_tokens: .nan", 1),
         None, "models[0] (id 'a'): cost_per_1m_tokens: Input should be a finite number"),
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


def test_a_duplicate_of_an_invalid_entry_is_reported_with_its_problems(tmp_path):
    first_bad = two_models().replace("avg_latency_ms: 500", "avg_latency_ms: -5", 1)
    with pytest.raises(RegistryError) as err:
        load_registry(write(tmp_path, first_bad + MODEL.format(id="a")))
    assert "models[0] (id 'a'): avg_latency_ms" in str(err.value)
    assert "models[2] (id 'a'): duplicate id (first defined at models[0])" in str(err.value)
    # the policy names 'a', which is there but invalid: its own error says so, not a
    # second one claiming the registry lacks it
    assert "names models not in the registry" not in str(err.value)


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


@pytest.mark.parametrize("which", ["registry", "policies"])
def test_directory_instead_of_file_is_a_registry_error(tmp_path, which):
    reg = write(tmp_path, two_models())
    (tmp_path / "somedir").mkdir()
    args = (tmp_path / "somedir", None) if which == "registry" else (reg, tmp_path / "somedir")
    with pytest.raises(RegistryError, match=f"somedir: is a directory, not a {which} file"):
        load_registry(*args)


def test_registry_path_env_naming_a_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRY_PATH", str(tmp_path))
    with pytest.raises(RegistryError, match="is a directory"):
        load_registry()


@pytest.mark.parametrize("which", ["registry", "policies"])
def test_undecodable_file_is_named(tmp_path, which):
    reg = write(tmp_path, two_models())
    bad = reg if which == "registry" else tmp_path / "fallback_policies.yaml"
    bad.write_bytes(bad.read_bytes() + b"# caf\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(RegistryError, match=f"{bad}: not UTF-8 text"):
        load_registry(reg)


def test_unreadable_file_is_named(tmp_path, monkeypatch):
    reg = write(tmp_path, two_models())

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", denied)
    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(RegistryError, match=f"{reg}: cannot read: Permission denied"):
        load_registry(reg)


def test_policy_for_unknown_domain_names_key_and_valid_ones(tmp_path):
    policies = """
        policies:
          optimise:
            primary: a
          modernize:
            primary: ghost
    """
    with pytest.raises(RegistryError) as err:
        load_registry(write(tmp_path, two_models(), policies))
    message = str(err.value)
    assert (f"{tmp_path / 'fallback_policies.yaml'}: policies.optimise: unknown domain "
            "'optimise' (valid: self_heal, optimize, modernize)") in message
    assert "policies.modernize: names models not in the registry: ghost" in message  # all at once


def test_policies_source_names_the_file_loaded(tmp_path, monkeypatch):
    reg = write(tmp_path, two_models())
    assert load_registry(reg).policies_source == str(tmp_path / "fallback_policies.yaml")
    other = tmp_path / "other.yaml"
    other.write_text("policies:\n  optimize:\n    primary: b\n")
    monkeypatch.setenv("FALLBACK_POLICIES_PATH", str(other))
    assert load_registry(reg).policies_source == str(other)


def test_policies_source_shows_the_bundled_fallback(tmp_path):
    # A copy of the registry with no policies beside it silently used the bundled ones.
    copy = tmp_path / "model_registry.yaml"
    copy.write_bytes((default_config_dir() / "model_registry.yaml").read_bytes())
    reg = load_registry(copy)
    assert reg.source == str(copy)
    assert reg.policies_source == str(default_config_dir() / "fallback_policies.yaml")
