"""The selection graph over HTTP, for Kubernetes: N stateless replicas sharing one Redis.

Run it with `uvicorn graph.service:app --host 0.0.0.0 --port 8080`. The graph is built
once per process at startup (lifespan), not per request, because building it imports
LiteLLM (seconds). Everything a replica must share (health, circuits, usage, checkpoints)
already lives in Redis, so replicas need no affinity and any of them can serve a request.

Routes: `POST /v1/select` (dry run: the decision, no model called), `POST /v1/run` (the
full graph through `ainvoke`; `options.policy` chooses the routing policy), `POST
/v1/feedback` (rate a served run by its `thread_id`: graph/ratings.py), `GET /v1/models`,
`GET /healthz` (liveness) and `GET /readyz` (readiness: registry loaded and Redis answering).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import redis
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from graph import gc_tuning, redis_conn, settings, telemetry
from graph.context import TaskContext
from graph.dry_run import dry_run
from graph.ratings import MAX_COMMENT, NotRatable, RatingError, RatingsOff, rate
from graph.redact import redact
from graph.registry import Registry
from graph.services import Services
from graph.state import RunSettings
from nodes import policies
from nodes.conversation import BadRequest
from nodes.selection import NoEligibleModel

log = logging.getLogger(__name__)
Graph = CompiledStateGraph[Any, Any, Any, Any]


class Options(BaseModel):
    """Per-request overrides of `RunSettings`.

    Mock responses are deliberately absent: an HTTP caller must not be able to fake a
    model's answer (tests set them in `create_app`). Strict: `"3"` or `true` is not a
    `top_k` (an integer is still a float).
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    timeout_s: float | None = Field(default=None, gt=0, le=300)
    max_tokens: int | None = Field(default=None, gt=0, le=200_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_k: int | None = Field(default=None, ge=1, le=10)
    max_tries_per_model: int | None = Field(default=None, ge=1, le=5)
    policy: str | None = Field(default=None, min_length=1, max_length=200)
    """A routing policy of nodes/policies.py (`spec` when absent); checked against the
    registry by the route (`_check_policy`), since `model:<id>` needs it."""


class RunRequest(BaseModel):
    """The graph's input; pydantic names any bad field (422) before the graph runs."""

    model_config = ConfigDict(extra="forbid")

    context: TaskContext
    prompt: str | None = Field(default=None, min_length=1, pattern=r"\S")
    system_prompt: str | None = None
    messages: list[dict[str, Any]] | None = Field(default=None, max_length=10_000)
    """The conversation so far, in the chat format (`role`, `content`, ...); each message
    is checked by the graph's own rules (nodes/conversation.py), a bad one named by index."""
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=512)
    """OpenAI tool specs the model may call (then only models that can call tools serve)."""
    tool_choice: str | dict[str, Any] | None = None
    options: Options = Options()

    @model_validator(mode="after")
    def _asks_something(self) -> RunRequest:
        if self.prompt is None and not self.messages:
            raise ValueError("prompt or messages: one is required")
        return self

    def graph_input(self) -> dict[str, Any]:
        """The `SelectionInput` dict the graph takes."""
        return {"context": self.context.model_dump(), "prompt": self.prompt,
                "system_prompt": self.system_prompt, "messages": self.messages,
                "tools": self.tools, "tool_choice": self.tool_choice}


class SelectRequest(RunRequest):
    """A dry run.

    Keys are ignored by default, as in the CLI's dry run, so the answer is the registry's
    decision; `require_keys: true` gives what this replica's `run` would do.
    """

    require_keys: bool = Field(default=False, strict=True)  # "yes" is not a yes


class FeedbackRequest(BaseModel):
    """A rating of a served `/v1/run`, by its `thread_id` (graph/ratings.py)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: str = Field(min_length=1, max_length=200, pattern=r"\S")
    quality: float = Field(ge=0, le=1, allow_inf_nan=False)
    comment: str | None = Field(default=None, max_length=MAX_COMMENT)


_KNOWN_POLICIES = (f"known policies: {', '.join(policies.POLICIES)}, "
                   "model:<id> (an id of /v1/models)")


def _policy_error(message: str) -> RequestValidationError:
    """A 422 naming `options.policy`, in the shape of pydantic's; the value is not echoed."""
    return RequestValidationError([{"loc": ("body", "options", "policy"), "msg": message,
                                    "type": "value_error"}])


def _check_policy(registry: Registry, policy: str | None) -> None:
    """Before the graph runs: an unknown policy, or one pinning a model the registry lacks."""
    if policy is None:
        return
    try:
        policies.check(policy, registry)
    except ValueError:
        problem = ("pins a model the registry does not have" if policy.startswith("model:")
                   else "unknown policy")
        raise _policy_error(f"{problem}; {_KNOWN_POLICIES}") from None


class NotReady(RuntimeError):
    """Startup failed (the message says why); the API answers 503 until a restart."""


@dataclasses.dataclass
class Runtime:
    """What the lifespan built: one graph and the services its nodes are bound to."""

    base: RunSettings
    services: Services | None = None
    graph: Graph | None = None
    error: str | None = None
    durability: str = "exit"
    """`CHECKPOINT_DURABILITY`, read at startup."""
    probe_interval_s: float = 0.0
    """`HEALTH_PROBE_INTERVAL_S`, read at startup (0 until then: no probes)."""
    max_request_bytes: int = 16 * 1024 * 1024
    """`MAX_REQUEST_BYTES`, read at startup."""

    def ready(self) -> tuple[Services, Graph]:
        """The built pieces, or NotReady with the startup error."""
        if self.services is None or self.graph is None:
            raise NotReady(self.error or "starting")
        return self.services, self.graph

    def settings(self, options: Options, **extra: Any) -> RunSettings:
        """The base settings with the request's overrides."""
        chosen = {k: v for k, v in options.model_dump().items() if v is not None}
        return dataclasses.replace(self.base, **chosen, **extra)


def _build(rt: Runtime, make_services: Callable[[], Services], checkpoints: bool,
           tune_gc: bool) -> None:
    from graph.builder import compile_graph, default_checkpointer

    try:
        rt.durability = settings.checkpoint_durability()
        rt.probe_interval_s = settings.health_probe_interval_s()
        rt.max_request_bytes = settings.max_request_bytes()
        telemetry.setup_telemetry()
        services = make_services()
        services.feedback.check()  # a log it cannot write is a configuration error: say so now
        rt.graph = compile_graph(services, default_checkpointer() if checkpoints else None)
        if tune_gc:  # last: what start-up built is what gets frozen
            gc_tuning.tune_for_serving()
        rt.services = services
    except Exception as exc:  # noqa: BLE001  # reported by /readyz; the process stays up
        rt.error = redact(f"startup failed: {type(exc).__name__}: {exc}")
        log.error("%s", rt.error)


async def _close(rt: Runtime) -> None:
    """Close the feedback log and release the Redis pools (clients built on a given pool
    do not close it themselves)."""
    try:
        if rt.services is not None:
            rt.services.feedback.close()  # writes what a full disk left queued, or logs it
            rt.services.store.last_flush()  # usage queued in an outage: written, or said lost
            rt.services.store.client.connection_pool.disconnect()
        saver = getattr(rt.graph, "checkpointer", None)
        if saver is not None and getattr(saver, "async_", None) is not None:
            saver.sync.client.connection_pool.disconnect()
            await saver.async_.client.aclose(close_connection_pool=True)
        redis_conn.stop_embedded()  # without REDIS_URL: saved now, as exit hooks may not run
    finally:
        await asyncio.to_thread(telemetry.flush)  # the last requests' spans, for that reason


def _error(status: int, error: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "message": redact(message), **extra}, status_code=status)


def _fields(errors: Any) -> list[dict[str, Any]]:
    """Where and why, without the offending `input` FastAPI would echo (it may be a key)."""
    return [{"loc": list(e["loc"]), "msg": redact(str(e["msg"])), "type": e["type"]}
            for e in errors]


class _BodyLimit:
    """413 for a request body over `MAX_REQUEST_BYTES`, before FastAPI reads it.

    FastAPI reads and parses a whole body on the event loop before validation can refuse
    it: a 100 MB prompt held every request, `/healthz` included, for 4 s. A declared
    length is refused before reading; a chunked body, once it passes the limit.
    """

    def __init__(self, app: Any, rt: Runtime) -> None:
        self.app, self.rt = app, rt

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        limit = self.rt.max_request_bytes
        if scope["type"] != "http" or not limit:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _error(413, "request_too_large", _over(limit))(scope, receive, send)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                # FastAPI passes its own HTTPException through the body parsing
                raise HTTPException(413, _over(limit))
            return message

        await self.app(scope, counted, send)


class _Unexpected:
    """Any other exception: a JSON 500, and its traceback logged once, redacted.

    Not an exception handler: Starlette re-raises after calling one, and the server then
    logs the raw traceback, whose message may hold a key.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:  # noqa: BLE001  # the last line of defence, by design
            if scope["type"] != "http":
                raise
            log.error("%s %s failed: %s", scope.get("method"), scope.get("path"),
                      redact("".join(traceback.format_exception(exc))))
            if not started:  # else the client already has a (cut) answer
                await _error(500, "internal_error",
                             f"{type(exc).__name__}: {exc}")(scope, receive, send)


def _over(limit: int) -> str:
    return f"request body over {limit} bytes (MAX_REQUEST_BYTES)"


FASTAPI_UNREADABLE_BODY = "There was an error parsing the body"
"""FastAPI's 400 for a body its JSON reader failed on with anything but a JSON syntax error:
bytes it does not decode (UTF-8/16/32), or nesting deeper than Python's recursion limit."""

_HTTP_ERRORS = {400: "bad_body", 404: "not_found", 405: "method_not_allowed",
                413: "request_too_large"}


def _rating_status(exc: RatingError) -> tuple[int, str]:
    """A RatingError's status and error name."""
    if isinstance(exc, RatingsOff):
        return 409, "ratings_off"
    if isinstance(exc, NotRatable):
        return 404, "not_ratable"
    return 422, "bad_request"  # a bad quality or id the body's model let through


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Routing errors (404, 405) in the same shape as every other error."""
        message = str(exc.detail)
        if exc.status_code == 400 and message == FASTAPI_UNREADABLE_BODY:
            message = ("request body: not text in UTF-8 (JSON must be; UTF-16/32 are also read)"
                       if isinstance(exc.__cause__, UnicodeDecodeError) else
                       f"request body: could not be read ({type(exc.__cause__).__name__})")
        response = _error(exc.status_code, _HTTP_ERRORS.get(exc.status_code, "http_error"),
                          message)
        response.headers.update(exc.headers or {})  # 405's Allow
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method == "POST" and not (kind == "application/json" or kind.endswith("+json")):
            # FastAPI reads such a body as no JSON at all: "should be a valid dictionary"
            return _error(415, "unsupported_media_type",
                          f"send the body as JSON, with Content-Type: application/json "
                          f"(got {kind or 'none'})")
        return _error(422, "validation_error", "invalid request body", detail=_fields(exc.errors()))

    @app.exception_handler(ValidationError)
    async def invalid(_: Request, exc: ValidationError) -> JSONResponse:
        return _error(422, "validation_error", str(exc.title), detail=_fields(exc.errors()))

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, exc: BadRequest) -> JSONResponse:
        return _error(422, "bad_request", str(exc))

    @app.exception_handler(NoEligibleModel)
    async def no_model(_: Request, exc: NoEligibleModel) -> JSONResponse:
        return _error(409, "no_eligible_model", exc.summary, excluded=exc.excluded)

    @app.exception_handler(RatingError)
    async def rating_refused(_: Request, exc: RatingError) -> JSONResponse:
        return _error(*_rating_status(exc), str(exc))

    @app.exception_handler(redis.RedisError)
    async def redis_down(request: Request, exc: redis.RedisError) -> JSONResponse:
        """Redis failed where nothing can stand in for it (a rating): retry later."""
        log.warning("%s %s: %s", request.method, request.url.path, redact(str(exc)))
        return _error(503, "redis_unavailable", str(exc))

    @app.exception_handler(NotReady)
    async def not_ready(_: Request, exc: NotReady) -> JSONResponse:
        return _error(503, "not_ready", str(exc))


def _summary(services: Services) -> dict[str, Any]:
    registry = services.registry
    live = services.store.statuses({m: e.status for m, e in registry.models.items()})
    models = [
        {"id": e.id, "provider": e.provider, "model": e.model, "group": e.group,
         "domains": list(e.domains), "capabilities": list(e.capabilities), "tags": list(e.tags),
         "local": e.is_local, "tool_calling": e.tool_calling,
         "status": live.get(e.id, e.status), "api_key_env": e.key_env,
         "avg_latency_ms": e.avg_latency_ms, "context_window": e.context_window,
         "input_cost_per_1m": e.input_cost_per_1m, "output_cost_per_1m": e.output_cost_per_1m}
        for e in registry.models.values()
    ]
    return {"count": len(models), "source": registry.source,
            "policies_source": registry.policies_source,
            "groups": dict(Counter(e.group for e in registry.models.values())),
            "policies": {d: list(p.chain) for d, p in registry.policies.items()},
            "models": models}


async def _probe_forever(rt: Runtime, interval_s: float) -> None:
    """Probe health URLs off the request path, so query_registry reads fresh statuses."""
    from graph.health import probe_all

    while interval_s > 0 and rt.services is not None:
        try:
            await asyncio.to_thread(probe_all, rt.services.registry, rt.services.store)
        except Exception as exc:  # noqa: BLE001  # a failed round must not stop the next
            log.warning("health probes failed: %s", redact(str(exc)))
        await asyncio.sleep(interval_s)


def create_app(
    make_services: Callable[[], Services] = Services.from_env,
    run_settings: RunSettings | None = None,
    checkpoints: bool = True,
    tune_gc: bool = True,
) -> FastAPI:
    """The app; tests pass their own services or settings (mock responses) here.

    Args:
        make_services: called once at startup (default: from the environment).
        run_settings: base settings of every request (default `RunSettings()`).
        checkpoints: keep LangGraph checkpoints in Redis (each result has a `thread_id`).
        tune_gc: freeze the start-up heap and raise the GC threshold once built
            (graph/gc_tuning.py); False leaves the process's collector as it is.
    """
    rt = Runtime(base=run_settings or RunSettings())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        _build(rt, make_services, checkpoints, tune_gc)
        prober = asyncio.create_task(_probe_forever(rt, rt.probe_interval_s))
        yield
        prober.cancel()
        await _close(rt)

    app = FastAPI(title="model-selector", version="1", lifespan=lifespan)
    app.state.runtime = rt
    app.add_middleware(_BodyLimit, rt=rt)
    app.add_middleware(_Unexpected)  # added last: outermost of ours
    _install_handlers(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers.

        Never touches Redis: a Redis outage must not restart every replica.
        """
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Readiness: the registry is loaded and Redis takes a write (a PING would pass a
        read-only replica or a server out of memory, where every request's writes fail).
        Usage queued during an outage is written, a few batches per probe."""
        if rt.services is None:
            return JSONResponse({"ready": False, "reason": rt.error or "starting"}, 503)
        store = rt.services.store
        try:
            store.check_writable()
            queued = store.flush_pending(max_batches=5)  # a bounded share, well inside 1 s
        except Exception as exc:  # noqa: BLE001  # any failure is "not ready", with its reason
            reason = redact(f"redis: {type(exc).__name__}: {exc}")
            return JSONResponse({"ready": False, "reason": reason}, 503)
        return JSONResponse({"ready": True, "models": len(rt.services.registry.models),
                             "redis": redis_conn.target().describe(),
                             "feedback_queued": rt.services.feedback.queued,
                             "usage_queued": queued})

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        """The registry: every model's routing facts and live status, and the policies."""
        services, _ = rt.ready()
        return _summary(services)

    @app.post("/v1/select")
    def select(body: SelectRequest) -> dict[str, Any]:
        """The decision only (chain, scored candidates, exclusions); no model is called.

        Sync on purpose: FastAPI runs it in its threadpool, since it reads Redis.
        """
        services, _ = rt.ready()
        if body.options.policy not in (None, "spec"):  # dry_run reads no ratings
            raise _policy_error("/v1/select decides by the spec's score only; choose another "
                                "policy on /v1/run")
        opts = rt.settings(body.options)
        result = dry_run(services.registry, services.store, body.context, prompt=body.prompt,
                         system_prompt=body.system_prompt, messages=body.messages,
                         tools=body.tools, max_tokens=opts.max_tokens, top_k=opts.top_k,
                         require_keys=body.require_keys)
        return result.as_dict()

    @app.post("/v1/run")
    async def run(body: RunRequest) -> dict[str, Any]:
        """The full graph, through `ainvoke`, checkpointed at `CHECKPOINT_DURABILITY`.

        200 even when every model failed: `success` is false and `attempts` says what each
        model did (the request itself was valid). Its `thread_id` is the request id that
        `/v1/feedback` rates.
        """
        services, graph = rt.ready()
        _check_policy(services.registry, body.options.policy)
        return dict(await graph.ainvoke(body.graph_input(), context=rt.settings(body.options),
                                        durability=rt.durability))

    @app.post("/v1/feedback")
    def feedback(body: FeedbackRequest) -> dict[str, Any]:
        """Rate a served `/v1/run` by its `thread_id`; the rating record appended to the log.

        Sync on purpose: FastAPI runs it in its threadpool, since it writes Redis. Rating a
        request again replaces its rating. 404 for a request id not served within
        `RATING_WINDOW_S`, 409 when ratings are off, 503 when Redis does not answer.
        """
        services, _ = rt.ready()
        return rate(services, body.request_id, body.quality, body.comment)

    return app


app = create_app()
