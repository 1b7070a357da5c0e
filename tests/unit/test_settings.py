"""Environment settings: defaults with nothing set, and a bad value named with its variable."""

from __future__ import annotations

import pytest

from graph import settings
from graph.redact import redact


def test_defaults_need_nothing_set(monkeypatch):
    for name in ("CHECKPOINT_TTL_SECONDS", "CHECKPOINT_DURABILITY", "HEALTH_PROBE_INTERVAL_S",
                 "GC_YOUNG_THRESHOLD", "RATING_HALF_LIFE_S"):
        monkeypatch.delenv(name, raising=False)
    assert settings.checkpoint_ttl_seconds() == 7 * 24 * 3600
    assert settings.checkpoint_durability() == "exit"
    assert settings.health_probe_interval_s() == 30.0
    assert settings.gc_young_threshold() == 50_000
    assert settings.rating_half_life_s() == 30 * 24 * 3600


def test_values_are_read(monkeypatch):
    monkeypatch.setenv("CHECKPOINT_TTL_SECONDS", "0")
    monkeypatch.setenv("CHECKPOINT_DURABILITY", " Sync ")
    monkeypatch.setenv("HEALTH_PROBE_INTERVAL_S", "2.5")
    monkeypatch.setenv("GC_YOUNG_THRESHOLD", "0")
    monkeypatch.setenv("RATING_HALF_LIFE_S", "0")
    assert settings.checkpoint_ttl_seconds() is None  # 0: keep for ever
    assert settings.checkpoint_durability() == "sync"
    assert settings.health_probe_interval_s() == 2.5
    assert settings.gc_young_threshold() == 0  # 0: CPython's own
    assert settings.rating_half_life_s() == 0  # 0: ratings never fade


@pytest.mark.parametrize(("name", "value", "read"), [
    ("CHECKPOINT_TTL_SECONDS", "7d", settings.checkpoint_ttl_seconds),
    ("CHECKPOINT_TTL_SECONDS", "-5", settings.checkpoint_ttl_seconds),
    ("RATING_HALF_LIFE_S", "30 days", settings.rating_half_life_s),
    ("RATING_HALF_LIFE_S", "nan", settings.rating_half_life_s),
    ("HEALTH_PROBE_INTERVAL_S", "often", settings.health_probe_interval_s),
    ("CHECKPOINT_DURABILITY", "never", settings.checkpoint_durability),
    ("GC_YOUNG_THRESHOLD", "2.5", settings.gc_young_threshold),
])
def test_a_bad_value_names_its_variable(monkeypatch, name, value, read):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"^{name}='{value}': must be"):
        read()


@pytest.mark.parametrize(("url", "why"), [
    ("foo://127.0.0.1", "not a Redis URL"),
    ("redis://127.0.0.1:notaport/0", "not a Redis URL"),
    # a password with '/' (base64): redis-py quoted "Zm9vYmFy" as the port
    ("redis://:Zm9vYmFy/c2VjcmV0@127.0.0.1:6379/2", "not a Redis URL"),
    ("redis://:pw@127.0.0.1:6379/2x", "the part after the host must be a database number"),
])
def test_a_bad_redis_url_names_the_variable_and_quotes_none_of_it(monkeypatch, url, why):
    from graph import redis_conn

    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(ValueError, match=f"^REDIS_URL: {why} .*percent-encode") as raised:
        redis_conn.target()
    assert "Zm9v" not in str(raised.value) and "pw" not in str(raised.value)
    assert redact(str(raised.value)) == str(raised.value)  # the form's placeholders survive


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379", "redis://127.0.0.1:6379/",
                                 "redis://u:p%2Fq@127.0.0.1:6379/15", "rediss://h/3",
                                 "unix:///tmp/redis.sock?db=2"])
def test_good_redis_urls_pass(url):
    from graph.redis_conn import check_url

    check_url(url)


@pytest.mark.parametrize(("name", "value"), [
    ("CHECKPOINT_TTL_SECONDS", "99999999999999999999"),  # Redis refused it at the first write
    ("RATING_WINDOW_S", "1e30"),
    ("HEALTH_PROBE_INTERVAL_S", "nan"),  # probes silently off
    ("HEALTH_PROBE_INTERVAL_S", "inf"),
    ("GC_YOUNG_THRESHOLD", "99999999999999999999"),  # an OverflowError naming nothing
])
def test_out_of_range_values_name_their_variable(monkeypatch, name, value):
    read = {"CHECKPOINT_TTL_SECONDS": settings.checkpoint_ttl_seconds,
            "RATING_WINDOW_S": settings.rating_window_s,
            "HEALTH_PROBE_INTERVAL_S": settings.health_probe_interval_s,
            "GC_YOUNG_THRESHOLD": settings.gc_young_threshold}[name]
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"^{name}='{value}': must be a non-negative"):
        read()


@pytest.mark.parametrize(("value", "included"), [
    (None, False), ("", False), ("1", True), ("true", True), ("Yes", True), ("0", False),
    ("off", False)])
def test_feedback_include_prompt_reads_the_usual_booleans(monkeypatch, value, included):
    if value is None:
        monkeypatch.delenv("FEEDBACK_INCLUDE_PROMPT", raising=False)
    else:
        monkeypatch.setenv("FEEDBACK_INCLUDE_PROMPT", value)
    assert settings.feedback_include_prompt() is included


def test_feedback_include_prompt_refuses_anything_else(monkeypatch):
    monkeypatch.setenv("FEEDBACK_INCLUDE_PROMPT", "please")  # "true" and "yes" were ignored
    with pytest.raises(ValueError, match="^FEEDBACK_INCLUDE_PROMPT='please': must be 1 or 0"):
        settings.feedback_include_prompt()
