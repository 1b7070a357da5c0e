"""Environment settings: defaults with nothing set, and a bad value named with its variable."""

from __future__ import annotations

import pytest

from graph import settings


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
    ("foo://127.0.0.1", "must specify one of the following schemes"),
    ("redis://127.0.0.1:notaport/0", "Port could not be cast"),
])
def test_a_bad_redis_url_names_the_variable(monkeypatch, url, why):
    from graph import redis_conn

    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(ValueError, match=f"^REDIS_URL: .*{why}"):
        redis_conn.target()
