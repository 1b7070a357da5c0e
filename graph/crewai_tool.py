"""A CrewAI tool that routes a prompt through the selection graph (an optional extra).

CrewAI pins versions the main environment does not use, so it is not a dependency of the
package: install it with `pip install 'model-selector[crewai]'` (from a checkout:
`pip install -e '.[crewai]'`, in an environment of its own). Without it, importing
this module fails at once with that instruction rather than somewhere deep in CrewAI.

    from graph.crewai_tool import ModelSelectorTool
    agent = Agent(role="healer", goal="...", backstory="...", tools=[ModelSelectorTool()])
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, ValidationError

try:
    from crewai.tools import BaseTool
except ImportError as exc:  # pragma: no cover - exercised by tests/crewai_tool/test_import_guard.py
    raise ImportError(
        "graph.crewai_tool needs CrewAI, an optional extra of model-selector: "
        "pip install 'model-selector[crewai]' (from a checkout: pip install -e '.[crewai]')"
    ) from exc

from graph.context import TaskContext
from graph.state import RunSettings
from nodes.conversation import BadRequest
from nodes.selection import NoEligibleModel


class ModelSelectorInput(TaskContext):
    """The tool's arguments: the task context's fields (so they never drift) and the prompt."""

    # CrewAI validates the arguments itself and puts pydantic's text in the agent's
    # transcript: without this, it quotes each bad value (a pasted key, say)
    model_config = ConfigDict(**TaskContext.model_config, hide_input_in_errors=True)

    prompt: str = Field(min_length=1, description="What the chosen model is asked to do.")
    system_prompt: str | None = Field(default=None, description="Optional system prompt.")


def describe_invalid(exc: ValidationError | BadRequest) -> str:
    """What is wrong with the arguments, field by field, for the agent's model to correct;
    never the value sent (pydantic's own text echoes it: it could be a pasted key)."""
    if isinstance(exc, BadRequest):
        return f"model-selector: invalid request: {exc}"
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                         for e in exc.errors())
    return f"model-selector: invalid request: {problems}"


def describe_failure(result: dict[str, Any]) -> str:
    """One readable string for an agent when no model served: why, and every attempt."""
    stop = result.get("stop_reason")
    lines = [f"model-selector: no model served the request (stop_reason={stop})."]
    for a in result.get("attempts") or []:
        outcome = "ok" if a["ok"] else f"{a['error_class']}: {a['error']}"
        lines.append(f"- {a['model_id']} try {a['try_no']}: {outcome}")
    return "\n".join(lines)


class ModelSelectorTool(BaseTool):
    """Pick the best model for the task, call it, fall back on failure; returns its answer.

    `settings` are the graph's per-run settings (timeouts, top_k; mock responses for
    offline tests); `selection` a compiled selection graph (default: `selection_graph`,
    built from the environment on first use).
    """

    name: str = "model_selector"
    description: str = (
        "Sends a prompt to the best LLM for a task (chosen by task type, domain, complexity, "
        "priority, budget and latency), with automatic fallback. Returns the model's answer."
    )
    args_schema: type[ModelSelectorInput] = ModelSelectorInput
    settings: RunSettings | None = None
    selection: Any = None

    def _graph(self) -> Any:
        if self.selection is None:
            from graph import selection_graph

            self.selection = selection_graph
        return self.selection

    def _request(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        args = ModelSelectorInput.model_validate(kwargs)
        context = args.model_dump(exclude={"prompt", "system_prompt"})
        return {"context": context, "prompt": args.prompt, "system_prompt": args.system_prompt}

    @staticmethod
    def _answer(result: dict[str, Any]) -> str:
        return str(result["response"]) if result.get("success") else describe_failure(result)

    def _run(self, **kwargs: Any) -> str:
        """Invoke the graph; the answer, or a failure string an agent can act on."""
        try:
            return self._answer(self._graph().invoke(self._request(kwargs), context=self.settings))
        except (ValidationError, BadRequest) as exc:
            return describe_invalid(exc)
        except NoEligibleModel as exc:
            return f"model-selector: {exc}"

    async def _arun(self, **kwargs: Any) -> str:
        """The asyncio twin of `_run` (`ainvoke`)."""
        try:
            result = await self._graph().ainvoke(self._request(kwargs), context=self.settings)
            return self._answer(result)
        except (ValidationError, BadRequest) as exc:
            return describe_invalid(exc)
        except NoEligibleModel as exc:
            return f"model-selector: {exc}"
