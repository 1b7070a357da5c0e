"""graph/redact.py: what counts as a secret, and what must survive redaction."""

from __future__ import annotations

import pytest

from graph.redact import redact

R = "[REDACTED]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("connect https://user:hunter2pass@db.example.com/x failed",
         f"connect https://user:{R}@db.example.com/x failed"),
        ("redis://:s3cret@redis-master:6379/2 refused",  # Redis URLs have no user
         f"redis://:{R}@redis-master:6379/2 refused"),
        ("postgresql://app:p@ss:w0rd@db:5432/main", f"postgresql://app:{R}@db:5432/main"),
        ("push to https://x-token:abc123@github.com/o/r.git",
         f"push to https://x-token:{R}@github.com/o/r.git"),
        ("token ghp_" + "a1B2" * 9 + " rejected", f"token {R} rejected"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", R),
        ("aws AKIAIOSFODNN7EXAMPLE denied", f"aws {R} denied"),
        ("Anthropic key sk-ant-api03-abcdefghijkl invalid", f"Anthropic key {R} invalid"),
        # every other shape too, so a shape the leading lookahead misses fails here
        ("gho_" + "x" * 36, R),
        ("ASIAIOSFODNN7EXAMPLE", R),
        ("groq gsk_abcdefgh1234", f"groq {R}"),
        ("AIzaSyA-abcdefghijklmnopqrstu", R),
        ("Authorization: Bearer eyJhbGciOi.xyz", f"Authorization: {R}"),
        ("API_KEY='abcdefgh1234'", f"{R}'"),
        ("bearer abcdefgh1 / api-key: abcdefgh1234", f"{R} / {R}"),
    ],
)
def test_credentials_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "GET http://localhost:11434/api/chat?x=a@b failed",  # port, not a password
        "see https://docs.example.com/a:b/c@d",  # ':' and '@' in the path only
        "mailto user@example.com: retry in 5s",
        "AKIA is a prefix, AKIAshort is not a key",
        "ValueError: ghp_short",
    ],
)
def test_ordinary_error_text_survives(text: str) -> None:
    assert redact(text) == text


def test_a_configured_key_is_redacted_whole_and_without_its_vendor_prefix(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-Zq81xLmN04pRt7Vw")
    monkeypatch.setenv("MISTRAL_API_KEY", "q7Hd92LmXp0aZ4rT")  # no prefix: only itself
    assert redact("401: key sk-proj-Zq81xLmN04pRt7Vw revoked") == f"401: key {R} revoked"
    assert redact("proxy: unknown key 'Zq81xLmN04pRt7Vw'") == f"proxy: unknown key '{R}'"
    assert redact("mistral said q7Hd92LmXp0aZ4rT") == f"mistral said {R}"
    monkeypatch.setenv("GROQ_API_KEY", "gsk_short12")  # a body under 12 chars stays
    assert redact("id short12 of gsk_short12") == f"id short12 of {R}"


def test_a_key_in_a_variable_the_registry_names_is_redacted(monkeypatch):
    from graph.registry import ModelEntry, Registry

    monkeypatch.setenv("ACME_PLATFORM_SECRET", "plainsecretvalue987654")
    assert redact("echoed plainsecretvalue987654") == "echoed plainsecretvalue987654"
    Registry(models={"m": ModelEntry.model_validate({
        "id": "m", "provider": "acme", "model": "hosted_vllm/acme/coder-7b", "group": "optimize",
        "capabilities": ["x"], "domains": ["optimize"], "avg_latency_ms": 100,
        "context_window": 32_000, "input_cost_per_1m": 0.4, "output_cost_per_1m": 1.6,
        "api_key_env": "ACME_PLATFORM_SECRET"})}, policies={})
    assert redact("echoed plainsecretvalue987654") == f"echoed {R}"
