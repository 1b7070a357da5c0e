"""`model-selector evaluate`: route a replay dataset through the real graph, per policy.

Every request goes through the compiled selection graph (real LangGraph, real LiteLLM call
path via the `replay/` provider, real Redis for state and feedback). The oracle and the
single models are read from the records (they are hindsight, not routers); the spec scorer's
quality-vs-cost curve for AIQ is traced by sweeping its cost weight over the pure selection
step (no calls), since the replay answers are deterministic.

The learned policies learn as they would in production: every answer they serve is rated
(`graph.ratings.rate`) with the recorded score of the model that gave it, first over the
fleet's train split (the warm-up, not scored), then over the test prompts, scored as they
are routed. Requests go in batches of `concurrency`: each batch is decided on the ratings of
the batches before it, then rated in order, so the figures repeat exactly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from graph.context import TaskContext
from graph.evaluate_metrics import Point, aiq, percentile
from graph.registry import Registry, load_registry
from graph.replay import ReplayDataset, fleet_dir, load_task_contexts
from graph.replay.records import Record

BASELINES = ("random", "cheapest", "best-single", "spec")
DEFAULT_POLICIES = (*BASELINES, "learned", "learned-quality")
COST_WEIGHT_SWEEP = (0.0, 0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9)


@dataclass(frozen=True)
class Fleet:
    """A replay dataset with its registry and its task -> TaskContext mapping."""

    name: str
    dataset: ReplayDataset
    registry: Registry
    tasks: dict[str, TaskContext]
    train: ReplayDataset = field(default_factory=lambda: ReplayDataset(()))
    """Prompts the learned policies are rated on before the test prompts (not scored)."""

    def model_name(self, model_id: str) -> str:
        """Dataset model name of a registry id (`replay/<name>`)."""
        return self.registry.models[model_id].model.removeprefix("replay/")


def load_fleet(name: str, data: str | Path | None = None, limit: int | None = None,
               warmup: int | None = None) -> Fleet:
    """`llmrouter` (bundled) or `routerbench` (`data`: a folder of RouterBench CSVs).

    `warmup`: how many of the train split's prompts to rate the learned policies on first
    (None: all; llmrouter bundles its 5,608; a fleet without a train split starts cold).
    """
    folder = fleet_dir(name)
    if not folder.exists():
        raise ValueError(f"unknown dataset {name!r} (llmrouter, routerbench)")
    if name == "routerbench":
        if data is None:
            raise ValueError("routerbench data is not bundled (no licence): pass --data DIR "
                             "with the RouterBench CSVs")
        from graph.replay.convert import from_routerbench

        dataset = ReplayDataset(from_routerbench([data]), source=str(data))
    else:
        dataset = ReplayDataset.load(data or folder / "test.jsonl.gz")
    if limit:
        dataset = ReplayDataset(dataset.records[:limit], source=dataset.source)
    train, train_file = ReplayDataset(()), folder / "train.jsonl.gz"
    if warmup != 0 and train_file.exists():
        train = ReplayDataset(ReplayDataset.load(train_file).records[:warmup], str(train_file))
    fleet = Fleet(name, dataset, load_registry(folder / "model_registry.yaml"),
                  load_task_contexts(folder / "tasks.yaml"), train)
    for split in (fleet.dataset, fleet.train):
        _check_fits(fleet, split)
    return fleet


def _check_fits(fleet: Fleet, split: ReplayDataset) -> None:
    """A ValueError, before any request, for data the fleet cannot route: no prompts, a task
    without a TaskContext, or a model the fleet's registry lacks."""
    if split is fleet.dataset and not split.records:
        raise ValueError(f"{split.source}: no prompts to evaluate")
    served = {e.model.removeprefix("replay/") for e in fleet.registry.models.values()}
    for record in split.records:
        if record.task not in fleet.tasks:
            raise ValueError(f"{split.source}: prompt {record.id!r} has task {record.task!r}, "
                             f"which {fleet.name}'s tasks.yaml lacks (known: "
                             f"{', '.join(sorted(fleet.tasks))})")
        if missing := sorted(set(record.cost_usd) - served):
            raise ValueError(f"{split.source}: prompt {record.id!r} names models "
                             f"{fleet.name}'s registry lacks: {', '.join(missing)}")


@dataclass
class PolicyResult:
    """What one policy did over the dataset."""

    policy: str
    requests: int = 0
    served: int = 0
    mean_quality: float = 0.0
    total_cost_usd: float = 0.0
    cost_per_1k: float = 0.0
    p50_latency_ms: float = 0.0
    p95_latency_ms: float = 0.0
    fallbacks: int = 0
    wall_s: float = 0.0
    picks: dict[str, int] = field(default_factory=dict)
    warmup: int = 0
    """Train prompts rated before these (learned policies)."""


Row = tuple[str | None, float | None, float, float, bool, str]
"""Served model name, its recorded score, cost, simulated latency, fell back, request id."""


def _one(graph: Any, fleet: Fleet, provider: Any, record: Record, policy: str,
         seed: int) -> Row:
    from graph.state import RunSettings

    request = {"context": fleet.tasks[record.task], "prompt": record.prompt}
    out = graph.invoke(request, context=RunSettings(policy=policy, seed=seed,
                                                    require_keys=False), durability="exit")
    latency = sum(provider.simulated_latency_ms(fleet.model_name(a["model_id"]), record)
                  for a in out["attempts"] if a["error_class"] is None or a["latency_ms"])
    if not out["success"]:  # an unserved request scores 0
        return None, 0.0, out["cost_usd"], latency, out["fallback_triggered"], out["thread_id"]
    name = fleet.model_name(out["model_used"])
    # an ungraded prompt (RouterBench has a few empty scores) counts for cost, not quality
    return (name, record.scores.get(name), out["cost_usd"], latency, out["fallback_triggered"],
            out["thread_id"])


def run_policy(graph: Any, fleet: Fleet, provider: Any, policy: str, *, seed: int,
               concurrency: int, progress: Callable[[int], None],
               services: Any = None) -> PolicyResult:
    """Every record through the graph under one policy; a learned one (`services` given)
    starts from no ratings, is rated over the train split, then over the records."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        def route(records: Sequence[Record]) -> Iterator[Row]:
            return pool.map(lambda r: _one(graph, fleet, provider, r, policy, seed), records)

        if services is None:
            rows = []
            for row in route(fleet.dataset.records):
                rows.append(row)
                progress(1)
        else:
            services.store.forget_ratings()
            _rated(route, services, fleet.train.records, concurrency, progress)
            rows = _rated(route, services, fleet.dataset.records, concurrency, progress)
    result = PolicyResult(policy, requests=len(rows), wall_s=time.perf_counter() - started,
                          warmup=len(fleet.train) if services is not None else 0)
    served = [r for r in rows if r[0] is not None]
    result.served = len(served)
    graded = [r[1] for r in rows if r[1] is not None]
    result.mean_quality = sum(graded) / len(graded) if graded else 0.0
    result.total_cost_usd = sum(r[2] for r in rows)
    result.cost_per_1k = 1000 * result.total_cost_usd / len(rows)
    result.p50_latency_ms = percentile([r[3] for r in rows], 50)
    result.p95_latency_ms = percentile([r[3] for r in rows], 95)
    result.fallbacks = sum(1 for r in rows if r[4])
    for name, *_ in served:
        result.picks[name] = result.picks.get(name, 0) + 1
    return result


def _rated(route: Callable[[Sequence[Record]], Iterator[Row]], services: Any,
           records: Sequence[Record], batch: int, progress: Callable[[int], None]) -> list[Row]:
    """Route a batch, then rate each served answer with its recorded score, in order."""
    from graph.ratings import rate  # not at import: the CLI's parser imports this module

    rows: list[Row] = []
    for start in range(0, len(records), batch):
        done = list(route(records[start:start + batch]))
        for name, score, *_, request_id in done:
            if name is not None and score is not None:
                rate(services, request_id, score)
        rows.extend(done)
        progress(len(done))
    return rows


def spec_curve(fleet: Fleet) -> list[Point]:
    """The spec scorer's (cost, quality) points as its cost weight sweeps (selection only)."""
    from graph.registry import ScoringConfig
    from nodes.scoring import effective_weights
    from nodes.selection import Limits, select
    from graph.tokens import count_messages

    points = []
    statuses = {m: e.status for m, e in fleet.registry.models.items()}
    for w in COST_WEIGHT_SWEEP:
        rest = (1 - w) / (1 - 0.30)  # keep the other weights in the spec's proportions
        cfg = ScoringConfig(weights={"capability_match": 0.40 * rest, "cost_efficiency": w,
                                     "latency_priority": 0.20 * rest, "health_status": 0.10 * rest},
                            priority_shift=fleet.registry.scoring.priority_shift,
                            complexity_shift=fleet.registry.scoring.complexity_shift)
        quality = cost = 0.0
        for record in fleet.dataset.records:
            ctx = fleet.tasks[record.task]
            tokens = count_messages([{"role": "user", "content": record.prompt}])
            d = select(fleet.registry, ctx, Limits(tokens, 4096), effective_weights(cfg, ctx),
                       statuses, {}, top_k=1)
            name = fleet.model_name(d.chain[0].model_id)
            quality += record.scores.get(name, 0.0)
            cost += record.cost_usd.get(name, 0.0)
        n = len(fleet.dataset.records)
        points.append((1000 * cost / n, quality / n))
    return points


def summarize(fleet: Fleet, results: Sequence[PolicyResult]) -> dict[str, Any]:
    """Relative figures, single models, oracle and AIQ, ready for the table and the JSON."""
    singles = {m: fleet.dataset.model_outcome(m) for m in fleet.dataset.models}
    best_name = max(singles, key=lambda m: singles[m].mean_score)
    best, oracle = singles[best_name], fleet.dataset.oracle()
    lo = min(o.cost_per_1k for o in singles.values())
    hi = max(o.cost_per_1k for o in singles.values())
    single_points = [(o.cost_per_1k, o.mean_score) for o in singles.values()]
    curve = spec_curve(fleet)
    policies = []
    for r in results:
        row = asdict(r)
        row["quality_vs_best_single"] = r.mean_quality / best.mean_score if best.mean_score else 0
        row["cost_vs_best_single"] = r.cost_per_1k / best.cost_per_1k if best.cost_per_1k else 0
        row["quality_vs_oracle"] = r.mean_quality / oracle.mean_score if oracle.mean_score else 0
        row["cost_vs_oracle"] = r.cost_per_1k / oracle.cost_per_1k if oracle.cost_per_1k else 0
        policies.append(row)
    return {
        "dataset": fleet.name, "source": fleet.dataset.source,
        "requests": len(fleet.dataset.records),
        "best_single": {"model": best_name, "mean_quality": best.mean_score,
                        "cost_per_1k": best.cost_per_1k},
        "oracle": {"mean_quality": oracle.mean_score, "cost_per_1k": oracle.cost_per_1k},
        "single_models": {m: {"mean_quality": o.mean_score, "cost_per_1k": o.cost_per_1k}
                          for m, o in sorted(singles.items())},
        "policies": policies,
        "aiq": {"cost_range_per_1k": [lo, hi],
                "single_models_hull": aiq(single_points, lo, hi),
                "spec_scorer": aiq(curve, lo, hi),
                "spec_scorer_points": curve},
    }


def write_outputs(summary: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """The JSON report and the quality-vs-cost plot (PNG)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"evaluate-{summary['dataset']}"
    json_path = stem.with_suffix(".json")
    json_path.write_text(json.dumps(summary, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    for name, o in summary["single_models"].items():
        ax.scatter(o["cost_per_1k"], o["mean_quality"], color="grey", s=25)
        ax.annotate(name, (o["cost_per_1k"], o["mean_quality"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    curve = sorted(summary["aiq"]["spec_scorer_points"])
    ax.plot([c for c, _ in curve], [q for _, q in curve], "--", color="tab:blue", alpha=0.5,
            label="spec scorer, cost weight swept")
    for row, marker in zip(summary["policies"], "osD^vP"):
        ax.scatter(row["cost_per_1k"], row["mean_quality"], marker=marker, s=80,
                   label=f"policy: {row['policy']}")
    oracle = summary["oracle"]
    ax.scatter(oracle["cost_per_1k"], oracle["mean_quality"], marker="*", s=200, color="gold",
               edgecolor="black", label="oracle (hindsight)")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("USD per 1,000 requests")
    ax.set_ylabel("mean quality")
    ax.set_title(f"{summary['dataset']}: quality vs cost ({summary['requests']} prompts)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    png_path = stem.with_suffix(".png")
    fig.savefig(png_path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return json_path, png_path


def table(summary: dict[str, Any]) -> str:
    """The terminal table."""
    best, oracle = summary["best_single"], summary["oracle"]
    lines = [f"{summary['dataset']}: {summary['requests']} prompts   best single "
             f"{best['model']} {best['mean_quality']:.3f} at ${best['cost_per_1k']:.3f}/1k   "
             f"oracle {oracle['mean_quality']:.3f} at ${oracle['cost_per_1k']:.3f}/1k",
             f"{'policy':<46}{'quality':>8}{'$ total':>10}{'$/1k':>9}{'p50 ms':>8}"
             f"{'p95 ms':>8}{'fallbk':>7}{'q/best':>7}{'$/best':>7}{'q/orcl':>7}{'$/orcl':>7}"]
    for r in summary["policies"]:
        lines.append(f"{r['policy']:<46}{r['mean_quality']:>8.3f}{r['total_cost_usd']:>10.4f}"
                     f"{r['cost_per_1k']:>9.3f}{r['p50_latency_ms']:>8.0f}"
                     f"{r['p95_latency_ms']:>8.0f}{r['fallbacks']:>7}"
                     f"{r['quality_vs_best_single']:>7.2f}{r['cost_vs_best_single']:>7.2f}"
                     f"{r['quality_vs_oracle']:>7.2f}{r['cost_vs_oracle']:>7.2f}")
    a = summary["aiq"]
    lines.append(f"AIQ over ${a['cost_range_per_1k'][0]:.3f}-${a['cost_range_per_1k'][1]:.3f}"
                 f"/1k: single-model hull {a['single_models_hull']:.3f}, "
                 f"spec scorer {a['spec_scorer']:.3f}")
    return "\n".join(lines)
