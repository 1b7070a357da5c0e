"""The decision without the call: what `model-selector select` and `POST /v1/select` show.

Same filters, scores and live state (health, circuits, cooldowns) as the graph's first three
nodes, without LangGraph or LiteLLM imported, so it answers in milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from graph.context import TaskContext
from graph.registry import Registry
from graph.store import Store
from graph.tokens import count_messages, count_tools
from nodes.availability import missing_key, unavailable_reasons
from nodes.conversation import build_messages, check_tools
from nodes.scoring import effective_weights
from nodes.selection import Decision, Limits, select


@dataclass(frozen=True)
class DryRun:
    """A decision plus what a real run would additionally need (API keys)."""

    decision: Decision
    prompt_tokens: int
    missing_keys: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        """The JSON of `select --json` and `POST /v1/select`."""
        d = self.decision
        return {"primary": d.chain[0].model_id, "fallbacks": [r.model_id for r in d.chain[1:]],
                "chain": [{"model_id": r.model_id, "via": r.via, "note": r.note,
                           "score": r.score.as_dict(),
                           "missing_key": self.missing_keys.get(r.model_id)} for r in d.chain],
                "candidates": [{"model_id": r.model_id, "score": r.score.as_dict()}
                               for r in d.candidates],
                "excluded": d.excluded, "prompt_tokens": self.prompt_tokens}


def dry_run(
    registry: Registry,
    store: Store,
    ctx: TaskContext,
    *,
    prompt: str | None = None,
    system_prompt: str | None = None,
    messages: Sequence[Any] | None = None,
    tools: Sequence[Any] | None = None,
    max_tokens: int = 4096,
    top_k: int = 3,
    require_keys: bool = False,
) -> DryRun:
    """Decide over the whole registry; with `require_keys`, as `run` would (keys enforced)."""
    if prompt or messages:
        sent = build_messages(prompt or None, system_prompt, messages)
    else:  # no prompt yet: the decision for what is known (the system prompt, if any)
        sent = [{"role": "system", "content": system_prompt}] if system_prompt else []
    specs = check_tools(tools)
    tokens = (count_messages(sent) if sent else 0) + count_tools(specs)
    relevant = registry.relevant(ctx.domain, ctx.task_type)
    live = store.live({m: registry.models[m].status for m in relevant})
    statuses = live.health
    unavailable = unavailable_reasons(registry, live.availability, live.at, require_keys)
    decision = select(registry, ctx, Limits(tokens, max_tokens, bool(specs)),
                      effective_weights(registry.scoring, ctx), statuses, unavailable, top_k)
    missing = {m: r for m, e in registry.models.items() if (r := missing_key(e))}
    return DryRun(decision, tokens, missing)
