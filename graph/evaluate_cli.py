"""The `evaluate` command: wiring of graph, Redis, replay provider and progress bar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from graph.cli_commands import count
from graph.evaluate import (BASELINES, DEFAULT_POLICIES, load_fleet, run_policy, summarize, table,
                            write_outputs)
from nodes import policies


_KNOWN = f"{', '.join(DEFAULT_POLICIES)}, model:<id>"


def _policies(text: str) -> list[str]:
    """Policy names, checked at parsing: a typo used to fail only once the progress bar
    had started, with a list of known policies that lacked best-single."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    for name in names:
        try:
            if name not in BASELINES:
                policies.resolve(name)
        except ValueError:
            raise argparse.ArgumentTypeError(f"unknown policy {name!r} (known: {_KNOWN})") from None
    if not names:
        raise argparse.ArgumentTypeError(f"no policy given (known: {_KNOWN})")
    return names


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError("must be an integer >= 0")
    return value


def add_parser(sub: Any, commands: dict[str, Any]) -> None:
    """Register `evaluate` on the CLI."""
    p = sub.add_parser("evaluate", help="route a replay dataset through the graph, per policy")
    p.add_argument("--dataset", default="llmrouter", help="llmrouter (bundled) or routerbench")
    p.add_argument("--data", help="replay file (.jsonl[.gz]) or RouterBench CSV folder")
    p.add_argument("--policies", type=_policies, default=",".join(DEFAULT_POLICIES),
                   help=f"comma-separated: {_KNOWN}")
    p.add_argument("--limit", type=count, help="only the first N prompts")
    p.add_argument("--warmup", type=_non_negative, default=None, metavar="N",
                   help="rate the learned policies on the first N train prompts first "
                        "(default: the whole train split; 0: start cold)")
    p.add_argument("--concurrency", type=count, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="evaluation",
                   help="folder for the JSON report, the PNG plot and the run's feedback log")
    p.add_argument("--no-progress", action="store_true")
    commands["evaluate"] = cmd_evaluate


def _graph(fleet: Any, out: Path) -> Any:
    from graph import redis_conn, settings
    from graph.builder import compile_graph
    from graph.checkpoint import RedisCheckpointer
    from graph.feedback import FeedbackLog
    from graph.services import Services
    from graph.store import Store

    target = redis_conn.target()
    prefix = settings.key_prefix() + f"evaluate:{fleet.name}:"
    services = Services(registry=fleet.registry,
                        # replayed prompts carry no time: no rating is older than another
                        store=Store(target.client(), prefix=prefix, rating_half_life_s=0),
                        feedback=FeedbackLog(out / f"feedback-{fleet.name}.jsonl", source="--out"))
    checkpointer = RedisCheckpointer.for_target(target, prefix=prefix + "lg", ttl_s=3600)
    return compile_graph(services, checkpointer), services


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run every policy, print the table, write JSON and PNG."""
    from tqdm import tqdm

    from graph.replay import ReplayDataset
    from graph.replay.provider import install, registry_latencies

    fleet = load_fleet(args.dataset, args.data, args.limit, args.warmup)
    for name in args.policies:  # before the run: each request would fail on it
        if name not in BASELINES:
            policies.check(name, fleet.registry)
    out = Path(args.out)
    if out.exists() and not out.is_dir():  # found now, not after the whole run
        raise ValueError(f"--out {out}: exists and is not a folder")
    graph, services = _graph(fleet, out)
    try:
        # this run's log, as the report and the plot are this run's: a second run into the
        # same folder mixed its records with the first's
        log = services.feedback.path
        if args.data and log.is_file() and Path(args.data).resolve() == log.resolve():
            raise ValueError(f"--data {args.data}: is where this run writes its feedback "
                             "log; give --out another folder")
        if log.is_file():
            log.unlink()
        services.feedback.check()
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    answers = ReplayDataset(fleet.dataset.records + fleet.train.records, fleet.dataset.source)
    provider = install(answers, registry_latencies(fleet.registry), seed=args.seed)
    singles = {m: fleet.dataset.model_outcome(m) for m in fleet.dataset.models}
    best = max(singles, key=lambda m: singles[m].mean_score)
    best_id = next(i for i, e in fleet.registry.models.items() if e.model == f"replay/{best}")
    names: list[str] = args.policies
    results = []
    rated = [n for n in names if n in policies.RATED]
    total = len(fleet.dataset) * len(names) + len(fleet.train) * len(rated)
    with tqdm(total=total, unit="req", disable=args.no_progress,
              file=sys.stderr, desc=f"evaluate {fleet.name}") as bar:
        for name in names:
            policy = f"model:{best_id}" if name == "best-single" else name
            result = run_policy(graph, fleet, provider, policy, seed=args.seed,
                                concurrency=args.concurrency, progress=bar.update,
                                services=services if name in policies.RATED else None)
            result.policy = (f"best-single ({best})" if name == "best-single" else
                             f"{name} ({result.warmup} warm-up)" if name in policies.RATED
                             else name)
            results.append(result)
    summary = summarize(fleet, results)
    summary["wall_s"] = {r.policy: round(r.wall_s, 2) for r in results}
    json_path, png_path = write_outputs(summary, out)
    print(table(summary))
    print("wall time per policy: " + ", ".join(f"{k} {v:.1f} s"
                                               for k, v in summary["wall_s"].items()))
    print(f"report: {json_path}\nplot:   {png_path}\nfeedback: {services.feedback.path}")
    return 0
