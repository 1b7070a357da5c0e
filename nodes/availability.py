"""Why a model cannot be called right now: circuits, cooldowns, unusable marks, missing keys."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

from graph.circuit import AVAILABLE, ModelAvailability, exclusion_reason
from graph.registry import ModelEntry, Registry


def fingerprint(model: ModelEntry) -> str:
    """Identifies the entry and its key, so editing either lifts an `unusable` mark.

    Only a hash of the key's value is kept: the key itself never reaches Redis.
    """
    key = os.environ.get(model.key_env or "", "")
    raw = model.model_dump_json() + "\0" + hashlib.sha256(key.encode()).hexdigest()
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def missing_key(model: ModelEntry) -> str | None:
    """The reason a hosted model cannot be called without its key, or None."""
    env = model.key_env
    if env and not os.environ.get(env):
        return f"missing API key: set {env}"
    return None


def unavailable_reasons(
    registry: Registry, snapshot: Mapping[str, ModelAvailability], now: float,
    require_keys: bool, has_mock: frozenset[str] = frozenset(),
) -> dict[str, str]:
    """Reasons per model of `snapshot` (taken at `now`); models absent from the result
    are available."""
    reasons: dict[str, str] = {}
    for model_id, state in snapshot.items():
        model = registry.models[model_id]
        reason = None
        if state is not AVAILABLE:  # the fingerprint (two sha256) only where a mark may apply
            reason = exclusion_reason(state, fingerprint(model) if state.unusable else "", now)
        if reason is None and require_keys and model_id not in has_mock:
            reason = missing_key(model)
        if reason:
            reasons[model_id] = reason
    return reasons
