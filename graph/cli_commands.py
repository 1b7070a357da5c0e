"""What each `model-selector` command does; errors become `UserError` (one line, exit 2)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import redis
from pydantic import ValidationError

from graph.context import TaskContext
from graph.registry import Registry, RegistryError, load_registry


class UserError(Exception):
    """Printed as one line; the command exits with `status`: 2 for bad input, 1 when a
    retry may succeed (Redis did not answer)."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def count(text: str) -> int:
    """argparse type, an integer >= 1: --top-k 0 emptied the chain, a negative --max-tokens
    defeated the budget, and evaluate's --concurrency 0 failed only once it had started."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("must be an integer >= 1")
    return value


def seconds(text: str) -> float:
    """argparse type, a finite number > 0 (float() also takes 'inf' and 'nan')."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError("must be a finite number > 0")
    return value


def quality(text: str) -> float:
    """argparse type for `rate`, a number from 0 to 1 (float() also takes 'nan')."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a number from 0 to 1")
    return value


def policy(text: str) -> str:
    """argparse type for `run --policy`: a known policy name, or `model:<id>` (whose model
    `cmd_run` checks against the registry before building the graph)."""
    from nodes import policies

    try:
        policies.resolve(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def emit(data: Any) -> None:
    """Print JSON (for `--json`)."""
    print(json.dumps(data, indent=2, default=str))


def _one_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _context(args: argparse.Namespace) -> TaskContext:
    keywords = [k.strip() for k in args.keywords.split(",") if k.strip()]
    return TaskContext(
        task_type=args.task_type, domain=args.domain, complexity=args.complexity,
        priority=args.priority, max_cost_usd=args.max_cost_usd,
        max_latency_ms=args.max_latency_ms, require_local=args.require_local,
        keywords=keywords, agent_id=args.agent_id, agent_category=args.agent_category,
    )


def _registry(path: str | None = None) -> Registry:
    return load_registry(path)


def _store() -> Any:
    from graph import redis_conn, settings
    from graph.store import Store

    return Store(redis_conn.target().client(), prefix=settings.key_prefix())


def _fmt_score(score: dict[str, float]) -> str:
    return (f"{score['total']:.3f}  (capability {score['capability_match']:.2f}, "
            f"cost {score['cost_efficiency']:.2f}, latency {score['latency_priority']:.2f}, "
            f"health {score['health_status']:.2f})")


def cmd_select(args: argparse.Namespace) -> int:
    """Dry run: the chain, every candidate's components and every exclusion's reason."""
    from graph.dry_run import dry_run

    ctx = _context(args)
    registry = _registry()
    result = dry_run(registry, _store(), ctx, prompt=args.prompt,
                     system_prompt=args.system_prompt, max_tokens=args.max_tokens,
                     top_k=args.top_k)
    d = result.decision
    if args.json:
        emit(result.as_dict())
        return 0
    print(f"task {ctx.task_type} / {ctx.domain} / {ctx.complexity} / {ctx.priority}"
          f"   budget {'$' + str(ctx.max_cost_usd) if ctx.max_cost_usd is not None else 'none'}"
          f"   deadline {str(ctx.max_latency_ms) + ' ms' if ctx.max_latency_ms else 'none'}"
          f"   prompt {result.prompt_tokens} tokens")
    width = max(len(r.model_id) for r in d.chain + d.candidates)
    for i, r in enumerate(d.chain):
        role = "primary " if i == 0 else "fallback"
        extra = f"   [{r.via}: {r.note}]" if r.via != "score" else ""
        key = result.missing_keys.get(r.model_id)
        flag = f"   ! {key}" if key else ""
        print(f"{role}  {r.model_id:<{width}}  {_fmt_score(r.score.as_dict())}{extra}{flag}")
    print(f"\ncandidates ({len(d.candidates)}):")
    for r in d.candidates:
        key = result.missing_keys.get(r.model_id)
        print(f"  {r.model_id:<{width}}  {_fmt_score(r.score.as_dict())}"
              + (f"   ! {key}" if key else ""))
    print(f"\nexcluded ({len(d.excluded)}):")
    outside = registry.outside(ctx.domain, ctx.task_type)  # out of domain or capability: last
    for model_id, reason in sorted(d.excluded.items(), key=lambda item: item[0] in outside):
        print(f"  {model_id}: {reason}")
    if result.missing_keys:
        print(f"\n! {len(result.missing_keys)} hosted models lack their API key here; "
              "`run` excludes them (marked ! above).")
    return 0


def _services_with_log() -> Any:
    """Services from the environment, once their feedback log is known to be writable: a
    short-lived command would otherwise leave its record only on stderr (a rating only in
    Redis), so a log it cannot write is bad configuration, said before any call."""
    from graph.services import Services

    services = Services.from_env()
    try:
        services.feedback.check()
    except OSError as exc:
        raise UserError(exc.strerror or str(exc)) from None
    return services


def cmd_run(args: argparse.Namespace) -> int:
    """Select, call and fall back through the graph; print the answer and what it cost."""
    from nodes import policies
    from nodes.selection import usd

    # a pinned model the registry lacks: one line and exit 2 now, not a failed request
    policies.check(args.policy, _registry())
    from graph import telemetry

    telemetry.setup_telemetry()  # first: a bad setting fails before the graph is built
    from graph.builder import default_graph
    from graph.state import RunSettings

    services = _services_with_log()

    settings = RunSettings(
        timeout_s=args.timeout_s, max_tokens=args.max_tokens, top_k=args.top_k,
        policy=args.policy,
        # "" is a mock too (an empty answer): only an absent flag means real calls
        mock_responses={"*": args.mock_response} if args.mock_response is not None else None,
    )
    request = {"context": _context(args), "prompt": args.prompt,
               "system_prompt": args.system_prompt}
    out = default_graph(services).invoke(request, context=settings)
    if args.json:
        emit(out)
        return 0 if out["success"] else 1
    if out["success"]:
        print(out["response"])
        print(f"\n-- model {out['model_used']}   cost {usd(out['cost_usd'])}   "
              f"latency {out['latency_ms']} ms   fallback {out['fallback_triggered']}   "
              f"request {out['thread_id']}", file=sys.stderr)
        return 0
    print(f"model-selector: request failed ({out['stop_reason']}): {out['error']}",
          file=sys.stderr)
    return 1


def cmd_rate(args: argparse.Namespace) -> int:
    """Rate a served request: credit its model in Redis, append the record to the log."""
    from graph.ratings import rate

    services = _services_with_log()
    try:
        record = rate(services, args.request_id, args.quality, args.comment)
    except redis.RedisError as exc:  # nothing recorded: worth retrying, not bad input
        print(f"model-selector: {exc}", file=sys.stderr)
        return 1
    if args.json:
        emit(record)
        return 0
    replaced = (f"replaces {record['replaces']:g}" if record["replaces"] is not None
                else "the request's first rating")
    print(f"rated {record['request_id']} {record['user_feedback']:g}: credited to "
          f"{record['model_id']} on {record['domain']}/{record['task_type']} ({replaced})")
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    """validate / list / init."""
    if args.action == "validate":
        reg = _registry(args.path)
        groups: dict[str, int] = {}
        for m in reg.models.values():
            groups[m.group] = groups.get(m.group, 0) + 1
        print(f"{reg.source}: {len(reg.models)} models valid "
              f"({', '.join(f'{g} {n}' for g, n in groups.items())}), "
              f"{len(reg.policies)} domain policies from {reg.policies_source}")
        return 0
    reg = _registry()
    if args.action == "list":
        rows = [m for m in reg.models.values() if not args.domain or args.domain in m.domains]
        if args.json:
            emit([m.model_dump(mode="json") for m in rows])
            return 0
        for m in rows:
            print(f"{m.id:<32} {m.group:<12} {m.status:<9} ${m.input_cost_per_1m:>6.2f}/"
                  f"${m.output_cost_per_1m:<6.2f} {m.avg_latency_ms:>5} ms "
                  f"{m.context_window:>8}  {m.model}")
        return 0
    store = _store()
    store.init_statuses({m.id: m.status for m in reg.models.values()})
    print(f"loaded {len(reg.models)} statuses into Redis (TTL 60 s)")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """Every model's health, circuit and cooldown (and `--probe`: check URLs now)."""
    from graph.health import health_report

    store = _store()
    registry = _registry()
    if args.reset:
        unknown = [m for m in args.reset if m not in registry.models]
        if unknown:
            raise UserError(f"--reset: no model {', '.join(unknown)} in the registry")
        for model_id in args.reset:
            store.reset_model(model_id)  # Redis down: exit 1 (dispatch), nothing reset
            print(f"reset {model_id}: circuit closed, no cooldown or unusable mark, health "
                  f"back to the registry's {registry.models[model_id].status}",
                  file=sys.stderr)
    rows = health_report(registry, store, probe=args.probe)
    if args.json:
        emit(rows)
    else:
        for row in rows:
            print(f"{row['model_id']:<32} {row['health']:<9} circuit {row['circuit']:<9} "
                  f"{row['detail']}")
    if store.online:
        return 0
    # this process's own view: every circuit closed, the YAML statuses; not the fleet's
    print("model-selector: redis unavailable: this shows the registry's statuses (and any "
          "probe), not the health and circuits the replicas share", file=sys.stderr)
    return 1


COMMANDS = {"select": cmd_select, "run": cmd_run, "rate": cmd_rate,
            "registry": cmd_registry, "health": cmd_health}


def add_extra_commands(sub: Any) -> None:
    """Commands that live in their own modules (evaluate)."""
    try:
        from graph.evaluate_cli import add_parser as add_evaluate
    except ImportError:
        return
    add_evaluate(sub, COMMANDS)


def dispatch(args: argparse.Namespace) -> int:
    """Run a command, turning expected failures into one-line errors."""
    from nodes.selection import NoEligibleModel

    try:
        return COMMANDS[args.command](args)
    except ValidationError as exc:
        raise UserError(_one_line(exc)) from None
    except NoEligibleModel as exc:  # exit 1 when time may clear it (a circuit, a cooldown)
        if getattr(args, "json", False):
            emit({"error": "no_eligible_model", "message": exc.summary, "excluded": exc.excluded})
            return 1 if exc.transient else 2
        raise UserError(str(exc), status=1 if exc.transient else 2) from None
    except (RegistryError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    except redis.RedisError as exc:
        raise UserError(f"redis unavailable: {exc} (set REDIS_URL, or unset it for the "
                        "embedded server)", status=1) from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
