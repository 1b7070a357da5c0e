"""The spec's scoring formula, as pure functions over a model and a task.

score = w_capability * capability + w_cost * cost + w_latency * latency + w_health * health,
each component in [0, 1]. The formulas are the spec's, including its keyword/tag bonus and
its with/without-budget branches; only the weights move (YAML, priority, complexity).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from graph.context import TaskContext
from graph.registry import SPEC_WEIGHTS, Component, ModelEntry, ScoringConfig

HEALTH_SCORES: Mapping[str, float] = {"alive": 1.0, "degraded": 0.5, "dead": 0.0, "unknown": 0.3}
SPEC_AVERAGE_TOKENS = 10_000
"""The spec's cost component assumes 10k tokens per request."""


@dataclass(slots=True)
class Score:
    """A model's total score and the four components it is made of.

    A value: never changed once made (`dataclasses.replace` makes another). Not `frozen`,
    because a frozen dataclass's `__init__` costs 1.4 us more per object (measured: 1.65
    against 0.24 us), paid for every candidate: 0.6 ms a request at 5,000 models.
    """

    total: float
    capability_match: float
    cost_efficiency: float
    latency_priority: float
    health_status: float
    learned_quality: float | None = None
    """A learned policy's estimate of the model's rated quality on this kind of task."""
    ratings: float = 0
    """How many ratings that estimate rests on (fractional once they decay)."""

    def as_dict(self) -> dict[str, float]:
        """The figures for decision records (full precision; displays round them)."""
        figures = {
            "total": self.total,
            "capability_match": self.capability_match,
            "cost_efficiency": self.cost_efficiency,
            "latency_priority": self.latency_priority,
            "health_status": self.health_status,
        }
        if self.learned_quality is not None:
            figures |= {"learned_quality": self.learned_quality, "ratings": self.ratings}
        return figures


def capability_score(model: ModelEntry, ctx: TaskContext) -> float:
    """1 when the task type is a capability, plus 0.1 per keyword that is a tag (max +0.3)."""
    base = 1.0 if ctx.task_type in model.capabilities else 0.0
    overlap = len(set(ctx.keywords).intersection(model.tags)) if ctx.keywords else 0
    return min(base + min(overlap * 0.1, 0.3), 1.0)


def cost_score(model: ModelEntry, ctx: TaskContext) -> float:
    """Cheaper is better; with a budget, the share of the budget 10k tokens would use."""
    price = model.cost_per_1m_tokens
    if ctx.max_cost_usd is None:
        return 1.0 if price == 0.0 else 1.0 / (1.0 + price)
    estimated = price / 1_000_000 * SPEC_AVERAGE_TOKENS
    if estimated > ctx.max_cost_usd:
        return 0.0
    if ctx.max_cost_usd == 0:
        return 1.0
    return 1.0 - estimated / ctx.max_cost_usd


def latency_score(model: ModelEntry, ctx: TaskContext) -> float:
    """Faster is better: 500 ms -> 1, 2000 ms -> 0; with a budget, the margin left in it."""
    latency = model.avg_latency_ms
    if ctx.max_latency_ms is None:
        return min(1.0, max(0.0, 1.0 - (latency - 500) / 1500))  # clamped: 300 ms is not 1.13
    if latency > ctx.max_latency_ms:
        return 0.0
    return 1.0 - latency / ctx.max_latency_ms


def health_score(status: str) -> float:
    """The spec's table: alive 1, degraded 0.5, unknown 0.3, dead 0."""
    return HEALTH_SCORES.get(status, 0.0)


def effective_weights(config: ScoringConfig, ctx: TaskContext) -> dict[Component, float]:
    """Base weights shifted by the task's priority and complexity, renormalised to sum 1.

    Critical work weighs latency more and cost less, low-priority work the reverse, and
    complex work weighs health more; medium/medium keeps the configured weights exactly.
    """
    weights = dict(config.weights)
    for shift in (config.priority_shift.get(ctx.priority, {}),
                  config.complexity_shift.get(ctx.complexity, {})):
        for name, delta in shift.items():
            weights[name] = max(0.0, weights[name] + delta)
    total = sum(weights.values()) or 1.0
    return {name: weights[name] / total for name in SPEC_WEIGHTS}


def score_model(
    model: ModelEntry, ctx: TaskContext, weights: Mapping[Component, float], status: str
) -> Score:
    """The weighted score of one model for one task; `status` is its live health."""
    capability = capability_score(model, ctx)
    cost = cost_score(model, ctx)
    latency = latency_score(model, ctx)
    health = health_score(status)
    total = (weights["capability_match"] * capability + weights["cost_efficiency"] * cost
             + weights["latency_priority"] * latency + weights["health_status"] * health)
    return Score(total, capability, cost, latency, health)
