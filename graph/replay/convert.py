"""Converters into the replay format, so real recorded results can drive the router offline.

Three sources: the LLMRouter benchmark (scores only; cost estimated from real prompt
tokens and a per-task output-length assumption), RouterBench's CSV layout (real responses
and real costs), and this project's own feedback log. Run as
`python -m graph.replay.convert {llmrouter,routerbench,feedback} SRC -o OUT.jsonl.gz`.
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import json
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
    skipped_torn: tuple[int, ...] = ()
    """Line numbers that are not JSON: a write cut short (a full disk), whose record the
    log wrote again in full afterwards (graph/feedback.py)."""


def _feedback_score(row: dict[str, Any]) -> float:
    quality = row.get("quality")
    score = float(quality) if quality is not None else (1.0 if row["success"] else 0.0)
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"quality {score} outside [0, 1]")
    return score


def from_feedback(path: str | Path) -> tuple[list[Record], FeedbackSummary]:
    """The project's feedback log: lines carrying a prompt become records.

    Lines for the same prompt are merged into one record; a model seen several times on
    it gets its mean score, cost and latency. Lines without a prompt, and torn lines (not
    JSON), are counted and skipped; a JSON line that is not a record is an error.
    """
    path = Path(path)
    groups: dict[str, dict[str, list[tuple[float, float, float | None]]]] = {}
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
                if not row.get("prompt"):
                    skipped += 1
                    continue
                entry = (
                    _feedback_score(row),
                    float(row.get("cost_usd") or 0.0),
                    row.get("latency_ms"),
                )
                groups.setdefault(row["prompt"], defaultdict(list))[row["model_id"]].append(entry)
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise ReplayFormatError(f"{path}:{number}: {_why(exc)}") from None
            task_of.setdefault(row["prompt"], row.get("task_type") or "unknown")
    records = [_feedback_record(p, per_model, task_of[p]) for p, per_model in groups.items()]
    return records, FeedbackSummary(lines, len(records), skipped, tuple(torn))


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
                    f"prompt")
            if summary.skipped_torn:
                note += f" and torn lines {', '.join(map(str, summary.skipped_torn))}"
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
