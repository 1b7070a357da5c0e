"""The task context an agent sends: what the task is and what it may cost."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Domain = Literal["self_heal", "optimize", "modernize"]
Complexity = Literal["simple", "medium", "complex"]
Priority = Literal["low", "medium", "high", "critical"]


class TaskContext(BaseModel):
    """Everything the router needs to know about a task (the spec's TaskContext).

    Unknown fields and values outside the enumerations are rejected, and pydantic's error
    names the field, so a typo in an agent never silently changes a routing decision.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    task_type: str = Field(min_length=1, pattern=r"^[a-z0-9_\-]+$")
    """What the task is ('code_fix', 'query_optimization', ...); matched to capabilities."""
    domain: Domain
    complexity: Complexity
    priority: Priority

    max_cost_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Budget for the whole request, all attempts together; inf would pass every model."""
    max_latency_ms: int | None = Field(default=None, gt=0, le=86_400_000)
    """Deadline for the whole request, all attempts together (at most a day: a larger
    integer cannot even be checkpointed)."""
    require_local: bool = False
    """Only models tagged `local` (data must not leave the platform)."""

    code_snippet: str | None = None
    error_log: str | None = None
    dependencies: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()

    agent_id: str = ""
    agent_category: str = ""

    @field_validator("max_cost_usd", "max_latency_ms", mode="before")
    @classmethod
    def _not_a_bool(cls, value: object) -> object:
        """pydantic reads True as 1: a $1 budget or a 1 ms deadline nobody meant. Numbers
        written as strings ("0.01", as LLM-written tool arguments send them) still pass."""
        if isinstance(value, bool):
            raise ValueError("must be a number or null, not a bool")
        return value
