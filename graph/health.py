"""Health probes of models with a `health_check_url`, and the health/circuit report.

Probes run outside the request path (the `health --probe` command, and the HTTP service
every `HEALTH_PROBE_INTERVAL_S`): a request never waits on a health URL. Results land in the
spec's health cache (`model:health:{id}`, TTL 60 s), which query_registry reads.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from graph.circuit import ModelAvailability, circuit_now
from graph.registry import ModelEntry, Registry
from graph.store import Store

PROBE_TIMEOUT_S = 1.0


def probe(model: ModelEntry, timeout_s: float = PROBE_TIMEOUT_S) -> str:
    """alive on a 2xx answer, dead on anything else (refused, timeout, 5xx)."""
    assert model.health_check_url
    try:
        with urllib.request.urlopen(model.health_check_url, timeout=timeout_s) as resp:  # noqa: S310
            return "alive" if 200 <= resp.status < 300 else "dead"
    except (urllib.error.URLError, OSError, ValueError):
        return "dead"


def probe_all(registry: Registry, store: Store,
              timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, str]:
    """Probe every model that has a URL, in parallel, and cache the results."""
    targets = [m for m in registry.models.values() if m.health_check_url]
    if not targets:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        replies = pool.map(lambda m: probe(m, timeout_s), targets)
        results = dict(zip((m.id for m in targets), replies))
    for model_id, status in results.items():
        store.update_health(model_id, status)
    return results


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    try:
        return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):  # past year 9999 (see circuit._iso)
        return f"epoch {epoch:.0f} s"


def circuit_shown(a: ModelAvailability, now: float) -> tuple[str, str]:
    """The circuit as routing treats it now (`circuit_now`), and what that means."""
    circuit = circuit_now(a, now)
    if circuit == "open":
        return "open", f"open until {_iso(a.open_until)}"
    if circuit == "probing":
        return "half_open", f"half-open: probe in flight until {_iso(a.probe_until)}"
    if circuit == "probe_due":
        return "half_open", "half-open: the next call is the probe"
    return "closed", ""


def health_report(registry: Registry, store: Store, probe: bool = False) -> list[dict[str, Any]]:
    """One row per model: live health, circuit state, failures, cooldown, unusable mark."""
    if probe:
        probe_all(registry, store)
    live = store.live({m: e.status for m, e in registry.models.items()})
    rows = []
    now = store.clock()
    for model_id, a in live.availability.items():
        circuit, circuit_detail = circuit_shown(a, now)
        detail = [circuit_detail] if circuit_detail else []
        if a.failures:
            detail.append(f"{a.failures} consecutive failures")
        if a.cooling_until:
            detail.append(f"cooling down until {_iso(a.cooling_until)}")
        if a.unusable:
            detail.append(f"unusable: {a.unusable.reason}")
        rows.append({"model_id": model_id, "health": live.health[model_id], "circuit": circuit,
                     "failures": a.failures, "open_until": _iso(a.open_until),
                     "cooling_until": _iso(a.cooling_until),
                     "unusable": a.unusable.reason if a.unusable else None,
                     "detail": "; ".join(detail), "redis": "online" if store.online else "down"})
    return rows
