"""A large synthetic registry made from the real one, for selection at scale.

The 58 real entries are kept (so the fallback policies still name real models) and cloned
with new ids and varied capabilities, domains, tags, prices, latencies, context windows and
statuses until the registry holds `size` models. The registry and a copy of the real
fallback policies are written side by side in `out_dir`, as `load_registry` expects.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import yaml

from graph.registry import default_config_dir, load_registry

DOMAINS = ("self_heal", "optimize", "modernize")
STATUSES = ("alive",) * 14 + ("degraded", "degraded", "unknown", "dead")
WINDOWS = (8_192, 16_000, 32_768, 65_536, 128_000, 200_000, 1_000_000)


def _dumper() -> type:
    return getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def generate_registry(size: int, out_dir: str | Path, seed: int = 42) -> Path:
    """Write `model_registry.yaml` (with `size` models) and `fallback_policies.yaml`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = load_registry()
    real = [m.model_dump(mode="json") for m in base.models.values()]
    capabilities = sorted({c for m in real for c in m["capabilities"]})
    tags = sorted({t for m in real for t in m["tags"]})
    rng = random.Random(seed)
    models: list[dict[str, Any]] = list(real)
    n = 0
    while len(models) < size:
        src = real[n % len(real)]
        n += 1
        clone = dict(src)
        clone["id"] = f"{src['id']}-x{n:05d}"
        caps = set(rng.sample(capabilities, rng.randint(1, 5)))
        if rng.random() < 0.10:  # about one clone in ten can do the benchmark's task type
            caps.add("code_fix")
        clone["capabilities"] = sorted(caps)
        clone["domains"] = sorted(rng.sample(DOMAINS, rng.randint(1, 3)))
        clone["tags"] = sorted(set(rng.sample(tags, rng.randint(0, 4))))
        factor = rng.choice((0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0))
        clone["input_cost_per_1m"] = round(src["input_cost_per_1m"] * factor, 6)
        clone["output_cost_per_1m"] = round(src["output_cost_per_1m"] * factor, 6)
        clone["cost_per_1m_tokens"] = clone["input_cost_per_1m"]
        clone["avg_latency_ms"] = rng.randint(150, 4000)
        clone["context_window"] = rng.choice(WINDOWS)
        clone["status"] = rng.choice(STATUSES)
        models.append(clone)
    doc = {"scoring": base.scoring.model_dump(mode="json"), "models": models[:size]}
    path = out / "model_registry.yaml"
    with path.open("w", encoding="utf-8") as fh:
        yaml.dump(doc, fh, Dumper=_dumper(), sort_keys=False)
    shutil.copyfile(default_config_dir() / "fallback_policies.yaml",
                    out / "fallback_policies.yaml")
    return path
