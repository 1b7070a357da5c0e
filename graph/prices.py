"""Prices and context windows from LiteLLM's bundled price map, read without importing litellm.

`import litellm` costs about 3 s, and the dry-run paths (`model-selector select`, registry
validation) must stay fast, so the bundled JSON that LiteLLM itself loads when
``LITELLM_LOCAL_MODEL_COST_MAP=True`` is read here directly. Nothing is downloaded.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

_MAP_FILE = "model_prices_and_context_window_backup.json"


@functools.cache
def bundled_price_map() -> dict[str, dict[str, Any]]:
    """Return LiteLLM's bundled price map (empty when litellm is not installed)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / _MAP_FILE
    if not path.exists():
        return {}
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def lookup(model: str) -> dict[str, Any] | None:
    """Find a LiteLLM model string in the price map.

    LiteLLM keys OpenAI and Anthropic models without their provider prefix
    (``gpt-4o-mini``) and most others with it (``mistral/mistral-large-latest``), so both
    spellings are tried.
    """
    table = bundled_price_map()
    if model in table:
        return table[model]
    _, _, bare = model.partition("/")
    return table.get(bare) if bare else None


def per_million(entry: dict[str, Any], field: str) -> float | None:
    """A per-token price of the map as USD per 1M tokens (None when absent)."""
    value = entry.get(field)
    return None if value is None else round(float(value) * 1_000_000, 6)
