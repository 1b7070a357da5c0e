"""The model registry and fallback policies: YAML in, validated pydantic objects out.

Every error names the file, the entry and the reason, and all of a file's errors are
reported at once, so a broken registry is fixed in one pass.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from graph import prices
from graph.context import Domain

Status = Literal["alive", "degraded", "dead", "unknown"]
Group = Literal["self_heal", "optimize", "modernize", "specialized"]

# Where LiteLLM looks for each hosted provider's key. Kept as a table (checked against
# `litellm.validate_environment` in the tests) because `select` must not import litellm.
PROVIDER_KEY_ENV: dict[str, str] = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "groq": "GROQ_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "codestral": "CODESTRAL_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "fireworks_ai": "FIREWORKS_AI_API_KEY",
    "cohere_chat": "COHERE_API_KEY",
    "xai": "XAI_API_KEY",
    "perplexity": "PERPLEXITYAI_API_KEY",
    "deepinfra": "DEEPINFRA_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "cerebras": "CEREBRAS_API_KEY",
    "replay": "",
}


KEY_ENVS: set[str] = {env for env in PROVIDER_KEY_ENV.values() if env}
"""Every environment variable a registry built in this process takes keys from (each
registry adds its `api_key_env` names): graph/redact.py hides their values."""


class RegistryError(ValueError):
    """A registry or policy file that cannot be used; the message lists every problem."""


class _Strict(BaseModel):
    # No inf or NaN anywhere: an infinite price would reach the feedback log as `Infinity`
    # (not JSON) and a NaN one would pass every budget check.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelEntry(_Strict):
    """One model of the registry."""

    id: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    """Who makes or serves it, as the spec names it (openai, groq, meta, ...)."""
    model: str = Field(min_length=3, pattern=r"^[A-Za-z0-9_\-]+/.+")
    """The LiteLLM model string the call uses, provider prefix included."""
    api_base: str | None = None
    """Endpoint of a local server (Ollama, vLLM); None for hosted providers."""
    group: Group
    """The spec's registry group (10 self-heal, 15 optimize, 12 modernize, 21 specialized)."""
    capabilities: tuple[str, ...] = Field(min_length=1)
    domains: tuple[Domain, ...] = Field(min_length=1)
    cost_per_1m_tokens: float = Field(ge=0)
    """The spec's single price used by the scorer; defaults to the input price."""
    input_cost_per_1m: float = Field(ge=0)
    output_cost_per_1m: float = Field(ge=0)
    avg_latency_ms: int = Field(gt=0)
    context_window: int = Field(gt=0)
    status: Status = "unknown"
    health_check_url: str | None = None
    tags: tuple[str, ...] = ()
    api_key_env: str | None = None
    """Environment variable holding the key; derived from the provider prefix when unset."""
    cost_source: Literal["registry", "provider"] = "registry"
    """Bill calls at the registry's prices x real usage, or at the cost the provider
    reports (replayed recordings carry the real cost of each call)."""
    tool_calling: bool = False
    """Can call tools (function calling); a request with `tools` goes to no other model.
    Taken from LiteLLM's bundled map (`supports_function_calling`) unless stated."""

    @model_validator(mode="before")
    @classmethod
    def _fill_prices(cls, raw: Any) -> Any:
        """Take prices and tool calling from LiteLLM's bundled map where the YAML does not
        state them."""
        if not isinstance(raw, dict) or not isinstance(raw.get("model"), str):
            return raw
        data = dict(raw)
        entry = prices.lookup(data["model"])
        if entry is not None and "tool_calling" not in data:
            data["tool_calling"] = entry.get("supports_function_calling") is True
        missing = [f for f in ("input_cost_per_1m", "output_cost_per_1m") if f not in data]
        if missing:
            if entry is None:
                raise ValueError(
                    f"{' and '.join(missing)} not stated and {data['model']!r} is not in "
                    "LiteLLM's bundled price map"
                )
            for field in missing:
                value = prices.per_million(entry, field.replace("_per_1m", "_per_token"))
                if value is None:
                    raise ValueError(f"{field} not stated and LiteLLM's map has no price")
                data[field] = value
        data.setdefault("cost_per_1m_tokens", data["input_cost_per_1m"])
        return data

    @property
    def is_local(self) -> bool:
        """Served on the platform's own hardware (the spec's `local` tag)."""
        return "local" in self.tags

    @property
    def key_env(self) -> str | None:
        """The environment variable this model's calls need, or None (local servers)."""
        if self.api_key_env is not None:
            return self.api_key_env or None
        if self.api_base is not None:
            return None
        return PROVIDER_KEY_ENV.get(self.model.split("/", 1)[0]) or None

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        """USD for a call with these token counts, input and output priced apart."""
        return (
            input_tokens * self.input_cost_per_1m + output_tokens * self.output_cost_per_1m
        ) / 1_000_000


class CircuitBreakerPolicy(_Strict):
    """When a model's circuit opens and for how long (per domain)."""

    failure_threshold: int = Field(default=5, gt=0)
    timeout_seconds: float = Field(default=60, gt=0)


class DomainPolicy(_Strict):
    """A domain's preferred chain, used to top up too-short fallback lists."""

    primary: str
    fallbacks: tuple[str, ...] = ()
    circuit_breaker: CircuitBreakerPolicy = CircuitBreakerPolicy()

    @property
    def chain(self) -> tuple[str, ...]:
        """Primary then fallbacks, in order."""
        return (self.primary, *self.fallbacks)


Component = Literal["capability_match", "cost_efficiency", "latency_priority", "health_status"]
SPEC_WEIGHTS: dict[Component, float] = {
    "capability_match": 0.40,
    "cost_efficiency": 0.30,
    "latency_priority": 0.20,
    "health_status": 0.10,
}


class ScoringConfig(_Strict):
    """The scorer's weights and how priority and complexity shift them.

    Shifts are added to the base weights, which are then renormalised to sum to 1.
    Medium priority and medium complexity leave the spec's weights untouched.
    """

    weights: dict[Component, float] = Field(default_factory=lambda: dict(SPEC_WEIGHTS))
    priority_shift: dict[str, dict[Component, float]] = Field(
        default_factory=lambda: {
            "critical": {"latency_priority": 0.10, "cost_efficiency": -0.10},
            "high": {"latency_priority": 0.05, "cost_efficiency": -0.05},
            "low": {"cost_efficiency": 0.10, "latency_priority": -0.10},
        }
    )
    complexity_shift: dict[str, dict[Component, float]] = Field(
        default_factory=lambda: {
            "complex": {"health_status": 0.05, "cost_efficiency": -0.05},
        }
    )

    @model_validator(mode="after")
    def _complete(self) -> ScoringConfig:
        missing = set(SPEC_WEIGHTS) - set(self.weights)
        if missing:
            raise ValueError(f"weights missing {sorted(missing)}")
        if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ValueError("weights must be non-negative and not all zero")
        return self


class Registry(_Strict):
    """All models, the domain policies and the scoring configuration."""

    models: dict[str, ModelEntry]
    policies: dict[str, DomainPolicy]
    scoring: ScoringConfig = ScoringConfig()
    source: str = ""
    policies_source: str = ""
    """The policies file loaded: with no `FALLBACK_POLICIES_PATH` and none beside a custom
    registry it is the bundled default, which `registry validate` must make visible."""

    @model_validator(mode="after")
    def _note_key_envs(self) -> Registry:
        KEY_ENVS.update(m.key_env for m in self.models.values() if m.key_env)
        return self

    def breaker_policy(self, domain: str) -> CircuitBreakerPolicy:
        """The circuit-breaker settings of a domain (defaults when it has no policy)."""
        policy = self.policies.get(domain)
        return policy.circuit_breaker if policy else CircuitBreakerPolicy()

    @functools.cached_property
    def _by_domain_capability(self) -> dict[tuple[str, str], tuple[str, ...]]:
        index: dict[tuple[str, str], list[str]] = {}
        for model in self.models.values():
            for domain in model.domains:
                for capability in model.capabilities:
                    index.setdefault((domain, capability), []).append(model.id)
        return {key: tuple(ids) for key, ids in index.items()}

    def matching(self, domain: str, task_type: str) -> tuple[str, ...]:
        """Models serving this domain with this capability, in registry order (indexed once,
        so a request touches only these and the domain's policy chain, at any registry size)."""
        return self._by_domain_capability.get((domain, task_type), ())

    def relevant(self, domain: str, task_type: str) -> list[str]:
        """The models a request may chain: the matching ones, then the policy chain's others."""
        matching = self.matching(domain, task_type)
        seen = set(matching)
        return [*matching, *(m for m in self.fallback_chain(domain) if m not in seen)]

    def outside(self, domain: str, task_type: str) -> dict[str, str]:
        """Why each model that cannot be chained for (domain, task_type) is out.

        Static for a registry, so computed once per pair: a request pays a dict copy, not
        thousands of reason strings.
        """
        memo = self._outside_memo
        if (domain, task_type) not in memo:
            keep = set(self.relevant(domain, task_type))
            lacks = f"lacks capability {task_type}"
            memo[(domain, task_type)] = {
                m.id: lacks if domain in m.domains else f"domain {domain} not in {list(m.domains)}"
                for m in self.models.values() if m.id not in keep}
        return memo[(domain, task_type)]

    @functools.cached_property
    def _outside_memo(self) -> dict[tuple[str, str], dict[str, str]]:
        return {}  # bounded by the distinct (domain, task_type) pairs agents send

    def fallback_chain(self, domain: str) -> tuple[str, ...]:
        """The domain policy's chain (empty when the domain has none)."""
        policy = self.policies.get(domain)
        return policy.chain if policy else ()


def default_config_dir() -> Path:
    """`config/` of a source checkout, else the copy installed inside the package."""
    here = Path(__file__).resolve().parent
    checkout = here.parent / "config"
    return checkout if (checkout / "model_registry.yaml").exists() else here / "_config"


def registry_path() -> Path:
    """`REGISTRY_PATH` (the spec's variable) or the bundled registry."""
    env = os.environ.get("REGISTRY_PATH")
    return Path(env) if env else default_config_dir() / "model_registry.yaml"


def policies_path(registry_file: Path) -> Path:
    """`FALLBACK_POLICIES_PATH`, else `fallback_policies.yaml` beside the registry, else the
    bundled one (a custom registry may reuse the default policies; `policies_source` says
    which file was loaded)."""
    env = os.environ.get("FALLBACK_POLICIES_PATH")
    if env:
        return Path(env)
    beside = registry_file.with_name("fallback_policies.yaml")
    return beside if beside.exists() else default_config_dir() / "fallback_policies.yaml"


def _read_yaml(path: Path, kind: str) -> Mapping[str, Any]:
    """The file's top-level mapping. Every failure to read it (a directory, no permission,
    not UTF-8) is a RegistryError naming the file, which the CLI reports in one line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise RegistryError(f"{path}: is a directory, not a {kind} file") from None
    except UnicodeDecodeError as exc:
        raise RegistryError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        # safe_load's loader, in C where PyYAML has it (3x faster on large registries)
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: expected a mapping at the top level")
    return data


def _explain(exc: ValidationError) -> Iterable[str]:
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "entry"
        yield f"{where}: {err['msg']}"


def _check_top_level(path: Path, data: Mapping[str, Any], allowed: set[str]) -> list[str]:
    return [
        f"{path}: unknown top-level key {key!r} (allowed: {', '.join(sorted(allowed))})"
        for key in data
        if key not in allowed
    ]


def _parse_models(path: Path, raw: Any,
                  errors: list[str]) -> tuple[dict[str, ModelEntry], set[str]]:
    """The valid entries, and every id the file declares (a policy naming an entry that is
    there but invalid is not reported again as naming an unknown model)."""
    if not isinstance(raw, list) or not raw:
        errors.append(f"{path}: 'models' must be a non-empty list")
        return {}, set()
    models: dict[str, ModelEntry] = {}
    first: dict[str, int] = {}  # every entry's id, valid or not: all problems at once
    for index, item in enumerate(raw):
        name = item.get("id", "?") if isinstance(item, dict) else "?"
        label = f"{path}: models[{index}] (id {name!r})"
        if isinstance(name, str) and name != "?":
            if name in first:
                errors.append(f"{label}: duplicate id (first defined at models[{first[name]}])")
            first.setdefault(name, index)
        try:
            entry = ModelEntry.model_validate(item)
        except ValidationError as exc:
            errors.extend(f"{label}: {line}" for line in _explain(exc))
            continue
        models.setdefault(entry.id, entry)
    return models, set(first)


def _parse_policies(
    path: Path, raw: Any, models: Mapping[str, ModelEntry], declared: set[str],
    errors: list[str],
) -> dict[str, DomainPolicy]:
    if not isinstance(raw, dict):
        errors.append(f"{path}: 'policies' must be a mapping of domain -> policy")
        return {}
    policies: dict[str, DomainPolicy] = {}
    domains: tuple[str, ...] = get_args(Domain)
    for domain, item in raw.items():
        label = f"{path}: policies.{domain}"
        # A misspelt domain would load as an unused policy, the real one silently losing it.
        known = domain in domains
        if not known:
            errors.append(f"{label}: unknown domain {domain!r} (valid: {', '.join(domains)})")
        try:
            policy = DomainPolicy.model_validate(item)
        except ValidationError as exc:
            errors.extend(f"{label}: {line}" for line in _explain(exc))
            continue
        unknown = [m for m in policy.chain if m not in declared]
        if unknown:
            errors.append(f"{label}: names models not in the registry: {', '.join(unknown)}")
        elif known and all(m in models for m in policy.chain):  # else: their entries' errors
            policies[domain] = policy
    return policies


def load_registry(path: str | Path | None = None, policies: str | Path | None = None) -> Registry:
    """Load and validate the registry and its fallback policies.

    Raises:
        RegistryError: with one line per problem, each naming file, entry and reason.
    """
    reg_path = Path(path) if path else registry_path()
    pol_path = Path(policies) if policies else policies_path(reg_path)
    data = _read_yaml(reg_path, "registry")
    errors = _check_top_level(reg_path, data, {"models", "scoring"})
    models, declared = _parse_models(reg_path, data.get("models"), errors)
    scoring = ScoringConfig()
    if "scoring" in data:
        try:
            scoring = ScoringConfig.model_validate(data["scoring"])
        except ValidationError as exc:
            errors.extend(f"{reg_path}: scoring.{line}" for line in _explain(exc))
    pol_data = _read_yaml(pol_path, "policies")
    errors += _check_top_level(pol_path, pol_data, {"policies"})
    domain_policies = _parse_policies(pol_path, pol_data.get("policies"), models, declared,
                                      errors)
    if errors:
        raise RegistryError("invalid registry:\n  " + "\n  ".join(errors))
    return Registry(models=models, policies=domain_policies, scoring=scoring,
                    source=str(reg_path), policies_source=str(pol_path))
