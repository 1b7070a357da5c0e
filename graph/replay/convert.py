"""Converters into the replay format, so real recorded results can drive the router offline.

Three sources: the LLMRouter benchmark (scores only; cost estimated from real prompt
tokens and a per-task output-length assumption), RouterBench's CSV layout (real responses
and real costs), and this project's own feedback log. Run as
`python -m graph.replay.convert {llmrouter,routerbench,feedback} SRC -o OUT.jsonl.gz`.
"""

from __future__ import annotations

import argparse
import ast
import bisect
import csv
import hashlib
import json
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graph import tokens
from graph.replay.records import Record, ReplayDataset, ReplayFormatError, write_records

# Output tokens assumed per LLMRouter task (the data has no responses): a letter or a few
# words for multiple choice, a short span for open QA, a sentence for commongen, a worked
# solution for math word problems, a longer derivation for MATH, a function for code.
OUTPUT_TOKENS: dict[str, int] = {
    "mmlu": 16, "gpqa": 16, "arc_challenge": 16, "openbook_qa": 16, "commonsense_qa": 16,
    "agentverse-logicgrid": 16,
    "natural_qa": 32, "trivia_qa": 32,
    "commongen": 48,
    "gsm8k": 256, "agentverse-mgsm": 256,
    "math": 384,
    "mbpp": 256, "human_eval": 256,
}  # fmt: skip
DEFAULT_OUTPUT_TOKENS = 128
"""For tasks not in the table."""


def assumed_output_tokens(task: str) -> int:
    """Completion tokens assumed for a task whose responses were not recorded."""
    return OUTPUT_TOKENS.get(task, DEFAULT_OUTPUT_TOKENS)


def prompt_tokens(prompt: str) -> int:
    """Tokens of the prompt sent as one user message (what the replay provider reports)."""
    return tokens.count_messages([{"role": "user", "content": prompt}])


def _why(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg}"
    return f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)


def _llmrouter_tasks(path: Path) -> dict[str, str]:
    """query -> task_name; a query listed under two tasks keeps the first (6 in train)."""
    tasks: dict[str, str] = {}
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    tasks.setdefault(row["query"], row["task_name"])
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise ReplayFormatError(f"{path}:{number}: {_why(exc)}") from None
    return tasks


def from_llmrouter(
    scores_path: str | Path,
    queries_path: str | Path | None = None,
    prices_path: str | Path | None = None,
) -> list[Record]:
    """LLMRouter `test.json`/`train.json` joined to its query file for the task name.

    Cost per model = prompt tokens x input price + assumed output tokens x output price,
    prices from `default_llm.json` (USD per 1M). Both files default to the ones beside it.
    """
    src = Path(scores_path)
    queries = Path(queries_path or src.with_name(f"default_query_{src.stem}.jsonl"))
    prices_raw = json.loads(Path(prices_path or src.with_name("default_llm.json")).read_text())
    prices = {m: (float(p["input_price"]), float(p["output_price"])) for m, p in prices_raw.items()}
    tasks = _llmrouter_tasks(queries)
    records = []
    for index, item in enumerate(json.loads(src.read_text(encoding="utf-8"))):
        question, scores = item["question"], item["scores"]
        task = tasks.get(question)
        if task is None:
            raise ReplayFormatError(f"{src}: item {index}: question not in {queries.name}")
        unpriced = sorted(set(scores) - set(prices))
        if unpriced:
            raise ReplayFormatError(f"{src}: item {index}: no price for {unpriced}")
        n_in, n_out = prompt_tokens(question), assumed_output_tokens(task)
        cost = {m: round((n_in * prices[m][0] + n_out * prices[m][1]) / 1e6, 12) for m in scores}
        records.append(
            Record(
                id=f"llmrouter-{src.stem}-{index:05d}",
                prompt=question,
                task=task,
                scores=scores,
                cost_usd=cost,
            )
        )
    return records


def _decode(cell: str) -> str:
    """RouterBench stores texts as a Python list repr (`"['D']"`); several are joined."""
    if cell.startswith("[") and cell.endswith("]"):
        try:
            value = ast.literal_eval(cell)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return cell
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return "\n\n".join(value)
    return cell


def _csv_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.csv")) if p.is_dir() else [p])
    return files


def _routerbench_row(row: dict[str, str], models: Sequence[str], rid: str) -> Record:
    cost, scores, responses = {}, {}, {}
    for m in models:
        spent = (row.get(f"{m}|total_cost") or "").strip()
        if not spent:
            continue  # never called: the model is absent for this prompt
        cost[m] = float(spent)
        if (text := row.get(f"{m}|model_response")) is not None:
            responses[m] = _decode(text)
        if grade := (row.get(m) or "").strip():
            scores[m] = float(grade)  # empty grade: called and paid, not graded
    return Record(
        id=rid,
        prompt=_decode(row["prompt"]),
        task=row["eval_name"],
        scores=scores,
        cost_usd=cost,
        responses=responses,
    )


def from_routerbench(paths: Iterable[str | Path]) -> list[Record]:
    """RouterBench CSVs (files or directories of them), recorded responses and costs kept.

    Ids are `<file stem>/<sample_id>`, with `#2`, `#3`... where a file repeats a sample_id.
    """
    csv.field_size_limit(sys.maxsize)
    records = []
    for path in _csv_files(paths):
        seen: Counter[str] = Counter()
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            models = [f.removesuffix("|total_cost") for f in fields if f.endswith("|total_cost")]
            if not models or not {"sample_id", "prompt", "eval_name"} <= set(fields):
                raise ReplayFormatError(f"{path}: not in RouterBench's CSV layout")
            for row in reader:
                seen[row["sample_id"]] += 1
                n = seen[row["sample_id"]]
                rid = f"{path.stem}/{row['sample_id']}" + (f"#{n}" if n > 1 else "")
                try:
                    records.append(_routerbench_row(row, models, rid))
                except ValueError as exc:
                    raise ReplayFormatError(f"{path}:{reader.line_num}: {exc}") from None
    return records


@dataclass(frozen=True, slots=True)
class FeedbackSummary:
    """What a feedback conversion used and skipped."""

    lines: int
    records: int
    skipped_no_prompt: int
    """Request lines without a prompt (logged without FEEDBACK_INCLUDE_PROMPT=1), or
    without a model (a request no model could try)."""
    skipped_torn: tuple[int, ...] = ()
    """Line numbers that are not JSON: a write cut short (a full disk), whose record the
    log wrote again in full afterwards (graph/feedback.py)."""
    ratings: int = 0
    """Rating lines (`"type": "rating"`, graph/ratings.py), counted apart from the requests."""
    rated: int = 0
    """Request lines whose score a rating set (a request rated again counts once)."""
    ratings_unmatched: int = 0
    """Ratings of a request not in the log, or logged without a prompt: counted, unused."""


def _feedback_score(row: dict[str, Any]) -> float:
    quality = row.get("quality")
    score = float(quality) if quality is not None else (1.0 if row["success"] else 0.0)
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"quality {score} outside [0, 1]")
    return score


def _rating(row: dict[str, Any]) -> tuple[str, float]:
    """A rating line's request id and rating (its `user_feedback`, in [0, 1])."""
    request_id, value = row["request_id"], row["user_feedback"]
    if not request_id or not isinstance(request_id, str):
        raise ValueError(f"rating with request_id {request_id!r}: must be a non-empty string")
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0.0 <= value <= 1.0:
        raise ValueError(f"rating user_feedback {value!r}: must be a number in [0, 1]")
    return request_id, float(value)


Entry = tuple[str, str, float, float, float | None]
"""One request line with a prompt: prompt, model, score, cost, latency."""


def _request_entry(row: dict[str, Any]) -> Entry | None:
    """A request line as an entry; None without a prompt, without a model (a request no
    model was called on), or refused as the caller's bad request (no model's quality).
    An unserved line's latency is every model's tried, so it is not its model's."""
    prompt = row.get("prompt")
    if not prompt:
        return None
    model_id = row["model_id"]  # the log writes it always: null when no model was called
    if model_id is None or row.get("stop_reason") == "bad_request":
        return None
    if not isinstance(prompt, str) or not isinstance(model_id, str):
        raise ValueError("prompt and model_id: must be strings")
    cost, latency = row.get("cost_usd") or 0.0, row.get("latency_ms")
    if not row.get("success"):
        latency = None
    for name, value in (("cost_usd", cost), ("latency_ms", latency)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not 0.0 <= value < math.inf):
            raise ValueError(f"{name} {value!r}: must be a finite number >= 0")
    return prompt, model_id, _feedback_score(row), float(cost), latency


def from_feedback(path: str | Path) -> tuple[list[Record], FeedbackSummary]:
    """The project's feedback log: lines carrying a prompt become records.

    Lines for the same prompt are merged into one record; a model seen several times on
    it gets its mean score, cost and latency. A rating line (`"type": "rating"`) sets the
    score of the served request line with its `request_id` to its `user_feedback`; the
    last rating of a request wins. Lines without a prompt or a model (a request no model
    was called on), the caller's bad requests, ratings of a request not in the log (or
    logged without a prompt), and torn lines (not JSON) are counted and skipped; a JSON
    line that is neither a request nor a rating, or one whose fields have the wrong types,
    is an error naming the line.
    """
    path = Path(path)
    entries: list[Entry] = []
    # request id -> its served request lines (only those can be rated) in log order: (line
    # number, index in entries or None without a prompt); a thread id may be reused
    by_request: dict[str, list[tuple[int, int | None]]] = {}
    ratings: list[tuple[int, str, float]] = []
    task_of: dict[str, str] = {}
    lines = skipped = 0
    torn: list[int] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            lines += 1
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                torn.append(number)
                continue
            try:
                if not isinstance(row, dict):
                    raise ValueError(f"expected a JSON object, got {type(row).__name__}")
                if row.get("type") == "rating":
                    ratings.append((number, *_rating(row)))
                    continue
                index = None
                entry = _request_entry(row)
                if entry is not None:
                    index = len(entries)
                    entries.append(entry)
                else:
                    skipped += 1
                if row.get("success") and isinstance(row.get("request_id"), str):
                    by_request.setdefault(row["request_id"], []).append((number, index))
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise ReplayFormatError(f"{path}:{number}: {_why(exc)}") from None
            if index is not None:
                task_of.setdefault(row["prompt"], row.get("task_type") or "unknown")
    rated, unmatched = _apply_ratings(ratings, by_request)
    groups: dict[str, dict[str, list[tuple[float, float, float | None]]]] = {}
    for index, (prompt, model_id, score, cost, latency) in enumerate(entries):
        groups.setdefault(prompt, defaultdict(list))[model_id].append(
            (rated.get(index, score), cost, latency))
    records = [_feedback_record(p, per_model, task_of[p]) for p, per_model in groups.items()]
    return records, FeedbackSummary(lines, len(records), skipped, tuple(torn),
                                    len(ratings), len(rated), unmatched)


def _rated_line(number: int, request_id: str,
                by_request: dict[str, list[tuple[int, int | None]]]) -> int | None:
    """The entry a rating on line `number` rates: the last served request line with its id
    before it (a reused thread id names several), else the first after it (a record the log
    wrote late, after a full disk); None when there is none, or that line has no prompt."""
    seen = by_request.get(request_id)
    if not seen:
        return None
    before = bisect.bisect_left(seen, number, key=lambda line: line[0]) - 1
    return seen[before][1] if before >= 0 else seen[0][1]


def _apply_ratings(ratings: Sequence[tuple[int, str, float]],
                   by_request: dict[str, list[tuple[int, int | None]]],
                   ) -> tuple[dict[int, float], int]:
    """Entry index -> its rating (the last rating in the log wins), and how many ratings
    rated no entry."""
    rated: dict[int, float] = {}
    unmatched = 0
    for number, request_id, quality in ratings:
        index = _rated_line(number, request_id, by_request)
        if index is None:
            unmatched += 1
        else:
            rated[index] = quality
    return rated, unmatched


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _feedback_record(
    prompt: str, per_model: dict[str, list[tuple[float, float, float | None]]], task: str
) -> Record:
    latency = {m: [e[2] for e in v if e[2] is not None] for m, v in per_model.items()}
    return Record(
        id="feedback-" + hashlib.sha256(prompt.encode()).hexdigest()[:16],
        prompt=prompt,
        task=task,
        scores={m: _mean([e[0] for e in v]) for m, v in per_model.items()},
        cost_usd={m: _mean([e[1] for e in v]) for m, v in per_model.items()},
        latency_ms={m: _mean(v) for m, v in latency.items() if v},
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: convert one source and write a replay file."""
    parser = argparse.ArgumentParser(prog="python -m graph.replay.convert")
    parser.add_argument("source", choices=["llmrouter", "routerbench", "feedback"])
    parser.add_argument("src", nargs="+", help="input file(s); routerbench takes dirs too")
    parser.add_argument("-o", "--out", required=True, help="output .jsonl or .jsonl.gz")
    parser.add_argument("--queries", help="llmrouter: default_query_*.jsonl (default: beside)")
    parser.add_argument("--prices", help="llmrouter: default_llm.json (default: beside)")
    args = parser.parse_args(argv)
    if args.source != "routerbench" and len(args.src) != 1:
        parser.error(f"{args.source} takes one input file")
    note = ""
    try:
        if args.source == "llmrouter":
            records = from_llmrouter(args.src[0], args.queries, args.prices)
        elif args.source == "routerbench":
            records = from_routerbench(args.src)
        else:
            records, summary = from_feedback(args.src[0])
            note = (f"; skipped {summary.skipped_no_prompt} of {summary.lines} lines without a "
                    f"prompt or a model")
            if summary.skipped_torn:
                note += f" and torn lines {', '.join(map(str, summary.skipped_torn))}"
            if summary.ratings:
                note += (f"; ratings: {summary.ratings} lines, {summary.rated} requests "
                         f"rated, {summary.ratings_unmatched} for requests not in the log or "
                         "logged without a prompt")
    except (ReplayFormatError, OSError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    data = ReplayDataset(records)
    write_records(args.out, data)
    print(
        f"wrote {len(data)} records ({len(data.models)} models, {len(data.tasks)} tasks) "
        f"to {args.out}{note}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
