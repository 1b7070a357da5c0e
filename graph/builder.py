"""The selection graph: builder, compile, and the auto thread id that lets agents call
`selection_graph.invoke(request)` on a checkpointed graph without a config."""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import aclosing
from dataclasses import is_dataclass
from typing import Any

import redis
from langchain_core.runnables import RunnableConfig
from langgraph._internal._runnable import RunnableCallable
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, GraphOutput
from pydantic import BaseModel, ValidationError

from graph.checkpoint import NEW_THREAD, Minted
from graph.context import TaskContext
from graph.services import Services
from graph.state import (RunSettings, SelectionInput, SelectionOutput, SelectionState,
                         check_setting_names)
from nodes import llm
from nodes.analyze_context import analyze_context, chosen_thread_id
from nodes.call_model import acall_model, call_model
from nodes.conversation import BadRequest, check_tools
from nodes.next_fallback import (anext_fallback, next_fallback, route_after_call,
                                 route_after_fallback)
from nodes.query_registry import query_registry
from nodes.record_feedback import record_feedback
from nodes.score import score

log = logging.getLogger(__name__)

REFUSED = (BadRequest, ValidationError)
"""What a refused request raises: our own checks, and pydantic's of its TaskContext."""

NAME = "model_selector"


def build_graph(services: Services | None = None) -> StateGraph:
    """The uncompiled graph; nodes are bound to `services` (from the environment if None)."""
    services = services or Services.from_env()
    llm.warm_up()  # pay litellm's import here, not inside the first request's deadline
    llm.register_prices(services.registry.models.values())
    builder = StateGraph(SelectionState, context_schema=RunSettings,
                         input_schema=SelectionInput, output_schema=SelectionOutput)
    builder.add_node("analyze_context", _node(analyze_context, services))
    builder.add_node("query_registry", _node(query_registry, services))
    builder.add_node("score", _node(score, services))
    builder.add_node("call_model", _node(call_model, services, acall_model, route_after_call),
                     destinations=("record_feedback", "next_fallback"))
    builder.add_node("next_fallback",
                     _node(next_fallback, services, anext_fallback, route_after_fallback),
                     destinations=("call_model", "record_feedback"))
    builder.add_node("record_feedback", _node(record_feedback, services))
    builder.add_edge(START, "analyze_context")
    builder.add_edge("analyze_context", "query_registry")
    builder.add_edge("query_registry", "score")
    builder.add_edge("score", "call_model")
    builder.add_edge("record_feedback", END)
    return builder


def _node(func: Any, services: Services, afunc: Any = None,
          route: Callable[[Any], str] | None = None) -> RunnableCallable:
    """A node with a sync body for `invoke` and an async one for `ainvoke`.

    With `route`, the node goes on by `Command(goto=route(state after its update))`,
    drawn in Studio from the `destinations` given to `add_node`. A conditional edge would
    decide the same, but LangGraph computes its input by copying every channel and
    replaying the node's writes on the copy: 0.07 ms a request, measured.

    Under `ainvoke` LangGraph would run a sync-only node on a thread pool; ours (but
    call_model and next_fallback, which await the provider and the backoff) are
    sub-millisecond CPU work, for which the
    thread hand-offs cost more than they save: inline, 100 concurrent requests went from
    122 to 155 per second. RunnableCallable is what `add_node` builds for a function; it is
    the only way to give one node both bodies, and LangGraph's prebuilt nodes use it too.
    """
    sync = functools.partial(func, services=services)
    if afunc is not None:
        asyn = functools.partial(afunc, services=services)
        if route is not None:
            sync, asyn = _routed(sync, asyn, route)
        return RunnableCallable(sync, asyn, name=func.__name__, trace=False)
    if "config" in inspect.signature(func).parameters:
        async def inline_config(state: Any, runtime: Any, config: RunnableConfig) -> Any:
            return sync(state, runtime=runtime, config=config)

        return RunnableCallable(sync, inline_config, name=func.__name__, trace=False)

    async def inline(state: Any, runtime: Any) -> Any:
        return sync(state, runtime=runtime)

    return RunnableCallable(sync, inline, name=func.__name__, trace=False)


def _routed(sync: Callable[..., dict[str, Any]], asyn: Callable[..., Awaitable[dict[str, Any]]],
            route: Callable[[Any], str]) -> tuple[Callable[..., Command], Callable[..., Any]]:
    """Both bodies, returning their update with where to go next."""
    def routed(state: Any, runtime: Any) -> Command:
        update = sync(state, runtime=runtime)
        return Command(update=update, goto=route({**state, **update}))

    async def arouted(state: Any, runtime: Any) -> Command:
        update = await asyn(state, runtime=runtime)
        return Command(update=update, goto=route({**state, **update}))

    return routed, arouted


def _with_thread(config: RunnableConfig | None) -> RunnableConfig:
    """A fresh thread id unless the caller chose one (`chosen_thread_id`)."""
    config = dict(config or {})
    configurable = dict(config.get("configurable") or {})
    chosen = chosen_thread_id(configurable)
    if chosen is None:
        configurable["thread_id"] = str(uuid.uuid4())
        configurable[NEW_THREAD] = Minted()  # nothing to read back: the first read skips it
    else:  # the flag is ours alone: a caller's thread is never taken for a minted one
        configurable.pop(NEW_THREAD, None)
        configurable["thread_id"] = chosen  # 123 is thread "123" in every key and record
    config["configurable"] = configurable
    return config  # type: ignore[return-value]


_REQUEST_KEYS = frozenset(SelectionInput.__annotations__)


def _request(request: Any, config: RunnableConfig | None) -> Any:
    """The caller's request as the graph keeps it: the optional keys always set (on a
    reused thread an omitted one would be the previous request's), the context and the
    tools as plain JSON (a TaskContext object would be a pydantic object in the
    checkpoint, a LangChain tool one it cannot hold).

    An unknown key is refused, naming it, as the HTTP service and TaskContext refuse one:
    LangGraph would drop it, so `system_promt` would silently send no system prompt. Not
    as a parent's subgraph node, which is handed the parent's whole state.
    """
    embedded = ((config or {}).get("configurable") or {}).get("checkpoint_ns")  # a parent's
    if request is None or isinstance(request, Command):
        return request  # a resume from the checkpoint
    if not isinstance(request, Mapping):
        if embedded and (isinstance(request, BaseModel) or is_dataclass(request)):
            return request  # a parent's state object: LangGraph reads its fields
        raise BadRequest(f"request: must be a dict ({', '.join(sorted(_REQUEST_KEYS))}), "
                         f"not {type(request).__name__}")
    unknown = request.keys() - _REQUEST_KEYS
    if unknown and not embedded:
        raise BadRequest(f"unknown request key(s): {', '.join(sorted(map(str, unknown)))} "
                         f"(a request has {', '.join(sorted(_REQUEST_KEYS))})")
    request = {"prompt": None, "system_prompt": None, "messages": None, "tools": None,
               "tool_choice": None, **request}
    if request["tools"]:  # LangChain tools are live objects: their specs are checkpointed
        request["tools"] = check_tools(request["tools"])
    if isinstance(request.get("context"), TaskContext):
        request["context"] = request["context"].model_dump(mode="json")
    return request


def _check_context(context: Any) -> None:
    """`context=` of a run is its RunSettings (or a dict of their fields, which LangGraph
    turns into one); anything else failed in the first node as an AttributeError."""
    if context is None or isinstance(context, RunSettings):
        return
    if not isinstance(context, Mapping):
        raise TypeError(f"context: must be a RunSettings (or a dict of its fields), "
                        f"not {type(context).__name__}")
    check_setting_names(context)


def _default_output(kwargs: Mapping[str, Any]) -> bool:
    return (kwargs.get("stream_mode", "values") == "values"
            and kwargs.get("version", "v1") == "v1")


def _as_v1(out: GraphOutput) -> Any:
    """`invoke`'s default (v1) result from a v2 run: the final values, with
    `__interrupt__` when the run was interrupted.

    LangGraph's v1 `invoke` streams "updates" beside "values" to find interrupts, which
    v2 carries on the values: one stream chunk and output mapping less per step, about
    0.08 ms a request (measured on the graph's skeleton: 1.22 -> 1.14 ms)."""
    if not out.interrupts:
        return out.value
    value = out.value if isinstance(out.value, dict) else {}
    return {**value, "__interrupt__": list(out.interrupts)}  # the key LangGraph documents


def _not_deleted(exc: Exception) -> None:
    log.warning("a refused request's checkpoint was not deleted (%s)", type(exc).__name__)


class SelectionGraph(CompiledStateGraph):
    """A compiled graph that gives each run a fresh thread id when the caller has none,
    and takes ratings of the answers it served (`rate`).

    A checkpointed LangGraph refuses to run without `configurable.thread_id`; agents call
    `selection_graph.invoke(request)`, so each such call becomes its own thread, whose id
    the result carries (`thread_id`, the feedback record's `request_id`) for reading its
    history. Inside a parent graph the parent's config (and thread) is used unchanged.
    Without a checkpointer, analyze_context names the request instead: a thread id in the
    config would cost 0.09 ms a request (LangGraph copies it into every step's metadata).
    """

    def stream(self, input: Any, config: RunnableConfig | None = None,  # noqa: A002, D102
               **kwargs: Any) -> Iterator[Any]:
        _check_context(kwargs.get("context"))
        if self.checkpointer not in (None, False, True):
            config = _with_thread(config)
            self._check_resumable(input, config)
            if config["configurable"].get(NEW_THREAD):
                return self._forgetting_refused(
                    super().stream(_request(input, config), config, **kwargs), config)
        return super().stream(_request(input, config), config, **kwargs)

    def astream(self, input: Any, config: RunnableConfig | None = None,  # noqa: A002, D102
                **kwargs: Any) -> AsyncIterator[Any]:
        _check_context(kwargs.get("context"))
        if self.checkpointer not in (None, False, True):
            config = _with_thread(config)
            if self._resuming(input):  # checked with an awaited read, not a blocking one
                return self._astream_resumed(input, config, **kwargs)
            if config["configurable"].get(NEW_THREAD):
                return self._aforgetting_refused(
                    super().astream(_request(input, config), config, **kwargs), config)
        return super().astream(_request(input, config), config, **kwargs)

    def _forgetting_refused(self, chunks: Iterator[Any], config: RunnableConfig) -> Iterator[Any]:
        """A refused request leaves no checkpoint on the thread minted for it: the caller
        never learns its id, and the checkpoint would keep the refused input (a key pasted
        into a message, say) until its TTL."""
        try:
            yield from chunks
        except REFUSED:
            thread_id = config["configurable"]["thread_id"]
            try:
                if hasattr(self.checkpointer, "forget_minted"):  # ours: this thread's keys
                    self.checkpointer.forget_minted(thread_id)
                else:
                    self.checkpointer.delete_thread(thread_id)
            except Exception as exc:  # noqa: BLE001  # best effort: the refusal is the answer
                _not_deleted(exc)
            raise

    async def _aforgetting_refused(self, chunks: AsyncIterator[Any],
                                   config: RunnableConfig) -> AsyncIterator[Any]:
        try:
            async with aclosing(chunks):  # a caller's early aclose() reaches LangGraph's loop
                async for chunk in chunks:
                    yield chunk
        except REFUSED:
            thread_id = config["configurable"]["thread_id"]
            try:
                if hasattr(self.checkpointer, "aforget_minted"):
                    await self.checkpointer.aforget_minted(thread_id)
                else:
                    await self.checkpointer.adelete_thread(thread_id)
            except Exception as exc:  # noqa: BLE001  # best effort: the refusal is the answer
                _not_deleted(exc)
            raise

    async def _astream_resumed(self, input: Any, config: RunnableConfig,
                               **kwargs: Any) -> AsyncIterator[Any]:
        if await self.checkpointer.aget_tuple(config) is None:
            self._not_resumable()
        async with aclosing(super().astream(input, config, **kwargs)) as chunks:
            async for chunk in chunks:
                yield chunk

    def _resuming(self, input: Any) -> bool:
        """A resume (None, or a Command), on a checkpointer that can lose Redis."""
        return (input is None or isinstance(input, Command)) and \
            getattr(self.checkpointer, "outage", None) is not None

    def _check_resumable(self, input: Any, config: RunnableConfig) -> None:
        """A resume while the checkpoints cannot be read says so: the checkpointer answers
        "no checkpoint" in an outage, and LangGraph would then report "Received no input
        for __start__", as if the thread did not exist."""
        if self._resuming(input) and self.checkpointer.get_tuple(config) is None:
            self._not_resumable()

    def _not_resumable(self) -> None:
        if self.checkpointer.outage.down:
            raise redis.ConnectionError("cannot resume: the checkpoints are in Redis, which "
                                        "does not answer now; retry when it does")

    def invoke(self, input: Any, config: RunnableConfig | None = None,  # noqa: A002, D102
               **kwargs: Any) -> Any:
        if not _default_output(kwargs):
            return super().invoke(input, config, **kwargs)
        return _as_v1(super().invoke(input, config, version="v2", **kwargs))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None,  # noqa: A002, D102
                      **kwargs: Any) -> Any:
        if not _default_output(kwargs):
            return await super().ainvoke(input, config, **kwargs)
        return _as_v1(await super().ainvoke(input, config, version="v2", **kwargs))

    services: Services
    """What the nodes use; `rate` credits ratings through the same store."""

    def copy(self, update: dict[str, Any] | None = None) -> SelectionGraph:
        """LangGraph's copy (`with_config`, `interrupt_before` by update) rebuilds the graph
        from its constructor's arguments, which `services` is not: `rate` then failed."""
        copied = super().copy(update)
        copied.services = self.services
        return copied

    def rate(self, request_id: str, quality: float, comment: str | None = None) -> dict[str, Any]:
        """Rate a served answer in [0, 1] for the learned policies (see `graph.ratings.rate`)."""
        from graph.ratings import rate

        return rate(self.services, request_id, quality, comment)


def compile_graph(
    services: Services | None = None,
    checkpointer: BaseCheckpointSaver | bool | None = None,
) -> CompiledStateGraph:
    """Compile with a checkpointer: None for none standalone and the parent's as a subgraph;
    True for the parent's, keeping this subgraph's state from one parent call to the next."""
    services = services or Services.from_env()
    if hasattr(checkpointer, "outage"):  # one Redis: the store and the checkpointer agree on it
        checkpointer.outage = services.store.outage  # type: ignore[union-attr]
    compiled = build_graph(services).compile(checkpointer=checkpointer, name=NAME)
    compiled.__class__ = SelectionGraph  # same object, one behaviour added (see class doc)
    compiled.services = services  # type: ignore[attr-defined]
    return compiled


def default_checkpointer() -> BaseCheckpointSaver:
    """Checkpoints in the configured Redis, under the key prefix, with the configured TTL."""
    from graph import redis_conn, settings
    from graph.checkpoint import RedisCheckpointer

    return RedisCheckpointer.for_target(
        redis_conn.target(), prefix=settings.key_prefix() + "model-selector:lg",
        ttl_s=settings.checkpoint_ttl_seconds(),
    )


def default_graph(services: Services | None = None) -> CompiledStateGraph:
    """`selection_graph`: services from the environment, checkpoints in the same Redis."""
    return compile_graph(services or Services.from_env(), default_checkpointer())
