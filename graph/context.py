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

    # the attribute docstrings below are the fields' descriptions in every JSON schema
    # (Studio's input form, the CrewAI tool's arguments an agent's model reads)
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True,
                              use_attribute_docstrings=True)

    task_type: str = Field(min_length=1, pattern=r"^[a-z0-9_\-]+$")
    """What the task is, in snake_case, matched to the models' capabilities: e.g. code_fix,
    bug_fix, shell_scripting, log_analysis, sql_generation, query_optimization,
    code_refactor, framework_upgrade, dependency_update, security_audit
    (`model-selector registry list` shows every model's)."""
    domain: Domain
    """Which agent family asks: self_heal (fix what broke), optimize (make it faster or
    cheaper), modernize (upgrade and migrate)."""
    complexity: Complexity
    """How hard the task is: harder tasks weigh capability over cost."""
    priority: Priority
    """How urgent: critical weighs latency and health over cost."""

    max_cost_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Budget for the whole request, all attempts together; inf would pass every model."""
    max_latency_ms: int | None = Field(default=None, gt=0, le=86_400_000)
    """Deadline for the whole request, all attempts together (at most a day: a larger
    integer cannot even be checkpointed)."""
    require_local: bool = False
    """Only models tagged `local` (data must not leave the platform)."""

    code_snippet: str | None = None
    """Code the task is about (context for the agent; not sent to the model by itself)."""
    error_log: str | None = None
    """The error the task is about (context; not sent to the model by itself)."""
    dependencies: tuple[str, ...] = ()
    """Packages involved (a list, or one comma-separated string)."""
    keywords: tuple[str, ...] = ()
    """Words that describe the task (a list, or one comma-separated string)."""

    agent_id: str = ""
    """The asking agent's name, kept in the feedback record."""
    agent_category: str = ""
    """The asking agent's category, kept in the feedback record."""

    @field_validator("dependencies", "keywords", mode="before")
    @classmethod
    def _words(cls, value: object) -> object:
        """A comma-separated string (as the CLI takes it, and as an agent's model often
        writes a list) is split; a list passes as it is."""
        if isinstance(value, str):
            return tuple(word.strip() for word in value.split(",") if word.strip())
        return value

    @field_validator("max_cost_usd", "max_latency_ms", mode="before")
    @classmethod
    def _not_a_bool(cls, value: object) -> object:
        """pydantic reads True as 1: a $1 budget or a 1 ms deadline nobody meant. Numbers
        written as strings ("0.01", as LLM-written tool arguments send them) still pass."""
        if isinstance(value, bool):
            raise ValueError("must be a number or null, not a bool")
        return value
