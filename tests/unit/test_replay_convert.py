"""Converters on small slices, and the published reference figures on the full shared sets."""

from __future__ import annotations

import csv
import json
import re
import statistics
from pathlib import Path

import pytest

from graph import tokens
from graph.registry import load_registry
from graph.replay.convert import (
    OUTPUT_TOKENS,
    assumed_output_tokens,
    from_feedback,
    from_llmrouter,
    from_routerbench,
    main,
)
from graph.replay.records import ReplayDataset, ReplayFormatError, fleet_dir, read_records

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LLMROUTER = SHARED / "llmrouter"
ROUTERBENCH = SHARED / "routerbench-0shot-train"
needs_llmrouter = pytest.mark.skipif(not LLMROUTER.exists(), reason="no shared LLMRouter data")
needs_routerbench = pytest.mark.skipif(not ROUTERBENCH.exists(), reason="no shared RouterBench")


# ---------------------------------------------------------------- LLMRouter


def write_llmrouter(tmp: Path, items: list[dict], queries: list[dict], prices: dict) -> Path:
    (tmp / "test.json").write_text(json.dumps(items))
    (tmp / "default_query_test.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (tmp / "default_llm.json").write_text(json.dumps(prices))
    return tmp / "test.json"


PRICES = {
    "m1": {"input_price": 0.2, "output_price": 0.6},
    "m2": {"input_price": 1, "output_price": 1},
}


def test_llmrouter_joins_tasks_and_prices_real_tokens(tmp_path: Path) -> None:
    items = [
        {"question": "What is the capital of France?", "scores": {"m1": 1.0, "m2": 0.5}},
        {"question": "Solve: 12 * 7 = ?", "scores": {"m1": 0.0, "m2": 1.0}},
    ]
    queries = [
        {"task_name": "natural_qa", "query": items[0]["question"]},
        {"task_name": "gsm8k", "query": items[1]["question"]},
        {"task_name": "mmlu", "query": items[1]["question"]},  # listed twice: first wins
    ]
    records = from_llmrouter(write_llmrouter(tmp_path, items, queries, PRICES))
    assert [r.id for r in records] == ["llmrouter-test-00000", "llmrouter-test-00001"]
    assert [r.task for r in records] == ["natural_qa", "gsm8k"]
    first = records[0]
    n_in = tokens.count_messages([{"role": "user", "content": first.prompt}])
    assert n_in > tokens.count_text(first.prompt)  # message framing counted too
    expected = (n_in * 0.2 + OUTPUT_TOKENS["natural_qa"] * 0.6) / 1e6
    assert first.cost_usd["m1"] == pytest.approx(expected)
    n_in2 = tokens.count_messages([{"role": "user", "content": records[1].prompt}])
    assert records[1].cost_usd["m2"] == pytest.approx((n_in2 + 256) * 1 / 1e6)  # gsm8k: 256
    assert first.scores == {"m1": 1.0, "m2": 0.5} and first.responses == {}


def test_output_length_assumption_is_short_for_choices_long_for_math_and_code() -> None:
    assert assumed_output_tokens("mmlu") < assumed_output_tokens("natural_qa")
    assert assumed_output_tokens("natural_qa") < assumed_output_tokens("gsm8k")
    assert assumed_output_tokens("gsm8k") < assumed_output_tokens("math")
    assert assumed_output_tokens("mbpp") >= 256
    assert assumed_output_tokens("some_new_task") == 128


def test_llmrouter_errors_name_the_item(tmp_path: Path) -> None:
    items = [{"question": "q?", "scores": {"m1": 1.0, "m9": 0.0}}]
    src = write_llmrouter(tmp_path, items, [{"task_name": "mmlu", "query": "q?"}], PRICES)
    with pytest.raises(ReplayFormatError, match=r"item 0: no price for \['m9'\]"):
        from_llmrouter(src)
    src = write_llmrouter(tmp_path, items, [{"task_name": "mmlu", "query": "other"}], PRICES)
    with pytest.raises(ReplayFormatError, match="item 0: question not in"):
        from_llmrouter(src)


@needs_llmrouter
def test_llmrouter_test_split_reproduces_the_reference_figures() -> None:
    data = ReplayDataset(from_llmrouter(LLMROUTER / "test.json"))
    assert len(data) == 500 and len(data.tasks) == 10
    best = data.model_outcome("llama-3.1-nemotron-51b-instruct")
    small = data.model_outcome("llama-3.1-8b-instruct")
    assert round(best.mean_score, 3) == 0.563
    assert round(small.mean_score, 3) == 0.508
    assert small.cost_per_1k < best.cost_per_1k / 4  # "at under a quarter of its price"
    assert round(data.oracle().mean_score, 3) == 0.743
    assert max(data.model_outcome(m).mean_score for m in data.models) == best.mean_score


@needs_llmrouter
def test_bundled_replay_is_the_conversion_of_the_shared_test_split() -> None:
    bundled = list(read_records(fleet_dir("llmrouter") / "test.jsonl.gz"))
    assert bundled == from_llmrouter(LLMROUTER / "test.json")


@needs_llmrouter
def test_bundled_train_split_is_the_conversion_of_the_shared_one() -> None:
    """The learned policies' warm-up (evaluate --warmup) reads this copy."""
    bundled = list(read_records(fleet_dir("llmrouter") / "train.jsonl.gz"))
    assert bundled == from_llmrouter(LLMROUTER / "train.json")


@needs_llmrouter
def test_llmrouter_train_split_has_all_14_tasks() -> None:
    data = ReplayDataset(from_llmrouter(LLMROUTER / "train.json"))
    assert len(data) == 5608 and len(data.tasks) == 14


# ---------------------------------------------------------------- RouterBench

HEADER = [
    "",
    "sample_id",
    "prompt",
    "eval_name",
    "m/a",
    "b",
    "m/a|model_response",
    "b|model_response",
    "m/a|total_cost",
    "b|total_cost",
    "oracle_model_to_route_to",
]


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    return path


def test_routerbench_keeps_responses_costs_and_ungraded_calls(tmp_path: Path) -> None:
    multi = "['Line one,\\nline \"two\"\\n\\nAnswer:']"
    rows = [
        [
            "0",
            "s.1",
            multi,
            "arc-challenge",
            "1.0",
            "0.0",
            "['B\\n']",
            "['C']",
            "0.002",
            "1e-4",
            "m/a",
        ],
        [
            "1",
            "s.2",
            "['q2']",
            "arc-challenge",
            "",
            "1.0",
            "['A']",
            "['A']",
            "0.003",
            "0.0002",
            "b",
        ],
        [
            "2",
            "s.1",
            "['q3', 'q3']",
            "arc-challenge",
            "0.0",
            "1.0",
            "['x']",
            "['y']",
            "0.004",
            "",
            "b",
        ],
    ]
    records = from_routerbench([write_csv(tmp_path / "arc_train.csv", rows)])
    assert [r.id for r in records] == ["arc_train/s.1", "arc_train/s.2", "arc_train/s.1#2"]
    first, second, third = records
    assert first.prompt == 'Line one,\nline "two"\n\nAnswer:'
    assert first.task == "arc-challenge"
    assert first.responses == {"m/a": "B\n", "b": "C"}
    assert first.cost_usd == {"m/a": 0.002, "b": 0.0001}
    assert first.scores == {"m/a": 1.0, "b": 0.0}
    assert second.scores == {"b": 1.0} and set(second.cost_usd) == {"m/a", "b"}  # ungraded
    assert third.prompt == "q3\n\nq3"
    assert set(third.cost_usd) == {"m/a"} and set(third.responses) == {"m/a"}  # never called


def test_routerbench_reads_directories_and_rejects_other_layouts(tmp_path: Path) -> None:
    write_csv(tmp_path / "b.csv", [["0", "x", "['p']", "mbpp", "1", "1", "r", "r", "1", "1", "b"]])
    write_csv(tmp_path / "a.csv", [["0", "x", "['q']", "mbpp", "1", "1", "r", "r", "1", "1", "b"]])
    assert [r.id for r in from_routerbench([tmp_path])] == ["a/x", "b/x"]
    bad = write_csv(tmp_path / "other.txt", [["1", "2"]], header=["question", "answer"])
    with pytest.raises(ReplayFormatError, match="not in RouterBench's CSV layout"):
        from_routerbench([bad])
    row = ["0", "x", "['p']", "mbpp", "high", "1", "r", "r", "1", "1", "b"]
    with pytest.raises(ReplayFormatError, match=r"bad\.csv:2:"):
        from_routerbench([write_csv(tmp_path / "bad.csv", [row])])


@needs_routerbench
def test_routerbench_slice_of_the_real_csv(tmp_path: Path) -> None:
    with (ROUTERBENCH / "mbpp_train.csv").open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        rows = [next(reader) for _ in range(6)]
    records = from_routerbench([write_csv(tmp_path / "mbpp_train.csv", rows[1:], rows[0])])
    assert len(records) == 5 and {r.task for r in records} == {"mbpp"}
    assert all(len(r.cost_usd) == 11 and len(r.responses) == 11 for r in records)
    assert all(not r.prompt.startswith("['") for r in records)
    assert "def " in records[0].responses["gpt-4-1106-preview"]


@pytest.fixture(scope="module")
def routerbench() -> ReplayDataset:
    if not ROUTERBENCH.exists():
        pytest.skip("no shared RouterBench data")
    return ReplayDataset(from_routerbench([ROUTERBENCH]))


def test_routerbench_train_split_reproduces_the_reference_figures(
    routerbench: ReplayDataset,
) -> None:
    assert len(routerbench) == 2225
    assert routerbench.tasks == ("arc-challenge", "mbpp", "winogrande")
    expected = {
        "gpt-4-1106-preview": (0.880, 5.04),
        "zero-one-ai/Yi-34B-Chat": (0.771, 0.33),
        "mistralai/mixtral-8x7b-chat": (0.739, 0.25),
    }
    for model, (score, per_1k) in expected.items():
        outcome = routerbench.model_outcome(model)
        assert (round(outcome.mean_score, 3), round(outcome.cost_per_1k, 2)) == (score, per_1k)
    oracle = routerbench.oracle()
    assert (round(oracle.mean_score, 3), round(oracle.cost_per_1k, 2)) == (0.975, 0.21)


def test_routerbench_registry_prices_reproduce_the_recorded_costs(
    routerbench: ReplayDataset,
) -> None:
    # Multiple-choice answers are a token or two, so cost / input price is the prompt's
    # token count: it must come out the same for every model at the registry's prices.
    registry = load_registry(fleet_dir("routerbench") / "model_registry.yaml")
    choice = [r for r in routerbench if r.task in {"arc-challenge", "winogrande"}]
    for entry in registry.models.values():
        model = entry.model.removeprefix("replay/")
        ratios = [
            r.cost_usd[model] / entry.input_cost_per_1m / r.cost_usd["gpt-3.5-turbo-1106"]
            for r in choice
        ]
        assert statistics.median(ratios) == pytest.approx(1.0, abs=0.01), entry.id


# ---------------------------------------------------------------- feedback log


def test_a_callers_bad_request_grades_no_model(tmp_path: Path) -> None:
    """It scored the model that refused the caller's malformed request 0.0."""
    path = tmp_path / "fb.jsonl"
    line = {"timestamp": "2025-01-01T00:00:00Z", "task_type": "code_fix", "prompt": "fix it",
            "model_id": "m1", "success": False, "latency_ms": 10, "cost_usd": 0.0}
    path.write_text("\n".join(json.dumps(x) for x in (
        {**line, "stop_reason": "bad_request"}, {**line, "stop_reason": "exhausted"})) + "\n")
    [record], summary = from_feedback(path)
    assert record.scores == {"m1": 0.0} and summary.skipped_no_prompt == 1


def test_feedback_lines_with_a_prompt_become_records(tmp_path: Path) -> None:
    base = {
        "timestamp": "2025-01-01T00:00:00Z",
        "task_type": "code_fix",
        "agent_id": "a1",
        "user_feedback": None,
    }
    lines = [
        {
            **base,
            "model_id": "m1",
            "success": True,
            "latency_ms": 800,
            "cost_usd": 0.002,
            "prompt": "fix it",
            "request_id": "r1",
        },
        {
            **base,
            "model_id": "m2",
            "success": False,
            "latency_ms": 3000,
            "cost_usd": 0.0,
            "prompt": "fix it",
        },
        {
            **base,
            "model_id": "m1",
            "success": True,
            "latency_ms": 1200,
            "cost_usd": 0.004,
            "prompt": "fix it",
            "quality": 0.5,
        },
        {**base, "model_id": "m1", "success": True, "latency_ms": 500, "cost_usd": 0.001},
        {
            **base,
            "model_id": "m3",
            "success": True,
            "cost_usd": None,
            "prompt": "other",
            "task_type": "sql_tuning",
            "quality": 0.75,
        },
    ]
    path = tmp_path / "feedback.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + "\n")
    records, summary = from_feedback(path)
    assert (summary.lines, summary.records, summary.skipped_no_prompt) == (5, 2, 1)
    fix, other = records
    assert fix.id.startswith("feedback-") and fix.task == "code_fix"
    assert fix.scores == {"m1": pytest.approx(0.75), "m2": 0.0}  # m1: mean of 1.0 and 0.5
    assert fix.cost_usd == {"m1": pytest.approx(0.003), "m2": 0.0}
    assert fix.latency_ms == {"m1": 1000.0}  # m2's 3000 ms: every model tried, not its own
    assert other.scores == {"m3": 0.75} and other.cost_usd == {"m3": 0.0}
    assert other.latency_ms == {} and other.task == "sql_tuning"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("[1, 2]", "expected a JSON object, got list"),
        ("null", "expected a JSON object, got NoneType"),
        ('{"prompt": ["p"], "model_id": "m", "success": true}', "must be strings"),
        ('{"prompt": "p", "model_id": "m", "success": true, "cost_usd": NaN}',
         "cost_usd nan: must be a finite number >= 0"),
        ('{"prompt": "p", "model_id": "m", "success": true, "latency_ms": "fast"}',
         "latency_ms 'fast': must be a finite number >= 0"),
        ('{"prompt": "p", "success": true, "cost_usd": 0}', "missing field 'model_id'"),
        ('{"prompt": "p", "model_id": "m", "quality": 2, "cost_usd": 0}', "outside [0, 1]"),
    ],
)
def test_feedback_bad_lines_name_the_line(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "fb.jsonl"
    path.write_text('{"model_id": "m", "success": true}\n' + line + "\n")
    with pytest.raises(ReplayFormatError, match=rf"fb\.jsonl:2: .*{re.escape(reason)}"):
        from_feedback(path)


def test_a_request_no_model_could_try_is_skipped(tmp_path: Path) -> None:
    """Its record (model_id null) stopped the conversion with a pydantic traceback."""
    path = tmp_path / "fb.jsonl"
    path.write_text('{"prompt": "p", "model_id": null, "success": false, "cost_usd": 0}\n'
                    '{"prompt": "p", "model_id": "m", "success": true, "cost_usd": 0.1}\n')
    [record], summary = from_feedback(path)
    assert record.scores == {"m": 1.0} and summary.skipped_no_prompt == 1


def test_feedback_torn_lines_are_skipped_and_named(tmp_path: Path) -> None:
    good = '{"prompt": "p", "model_id": "m", "success": true, "cost_usd": 0.001}'
    path = tmp_path / "fb.jsonl"
    path.write_text(good + '\n{"prompt": "p", "model_id": "m", "succ\n' + good + "\n")
    records, summary = from_feedback(path)  # a full disk cut line 2; its record is line 3
    assert summary.skipped_torn == (2,) and summary.lines == 3
    assert records[0].scores == {"m": 1.0}


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fb.jsonl"
    path.write_text('{"prompt": "p", "success": true}\n')
    with pytest.raises(SystemExit) as exit_:
        main(["feedback", str(path), "-o", str(tmp_path / "out.jsonl")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"python -m graph.replay.convert: error: {path}:1: missing field 'model_id'")


# ---------------------------------------------------------------- ratings in the feedback log


def served(rid: str | None, model: str, prompt: str | None = "fix it", **extra: object) -> dict:
    """A request line as nodes/record_feedback.py writes it (with FEEDBACK_INCLUDE_PROMPT=1)."""
    line = {"timestamp": "2025-01-01T00:00:00Z", "model_id": model, "task_type": "code_fix",
            "success": True, "latency_ms": 800, "cost_usd": 0.001, "agent_id": "",
            "user_feedback": None, "request_id": rid, "domain": "self_heal", **extra}
    if prompt is not None:
        line["prompt"] = prompt
    return line


def rating(rid: str, quality: object, model: str = "m1", **extra: object) -> dict:
    """A rating line as graph/ratings.py appends it."""
    return {"timestamp": "2025-01-01T00:05:00Z", "type": "rating", "request_id": rid,
            "model_id": model, "domain": "self_heal", "task_type": "code_fix",
            "user_feedback": quality, "replaces": None, **extra}


def write_log(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


# r1 rated twice (the second wins), r3 logged without a prompt, r9 never in the log
RATED_LOG = [
    served("r1", "m1"),
    served("r2", "m2"),
    served("r3", "m1", prompt=None),
    rating("r1", 0.25),
    rating("r1", 0.5, replaces=0.25),
    rating("r3", 0.9),
    rating("r9", 0.1),
]


def test_a_rating_sets_its_requests_score_and_the_last_rating_wins(tmp_path: Path) -> None:
    records, summary = from_feedback(write_log(tmp_path / "fb.jsonl", RATED_LOG))
    [fix] = records
    assert fix.scores == {"m1": 0.5, "m2": 1.0}  # m1: rated 0.5 (not 0.25, not success 1.0)
    assert fix.cost_usd == {"m1": 0.001, "m2": 0.001}  # ratings add no calls
    assert (summary.lines, summary.records, summary.skipped_no_prompt) == (7, 1, 1)
    assert (summary.ratings, summary.rated, summary.ratings_unmatched) == (4, 1, 2)


def test_a_rating_replaces_the_lines_own_quality_and_joins_the_models_mean(
    tmp_path: Path,
) -> None:
    lines = [served("a", "m1", quality=0.9), served("b", "m1"), rating("a", 0.0)]
    [fix], summary = from_feedback(write_log(tmp_path / "fb.jsonl", lines))
    assert fix.scores == {"m1": 0.5}  # mean of the rated 0.0 and b's success 1.0
    assert summary.rated == 1 and summary.ratings_unmatched == 0


def test_a_reused_thread_id_rates_the_request_served_before_the_rating(tmp_path: Path) -> None:
    lines = [
        rating("late", 0.3),  # its record was written after it (queued on a full disk)
        served("t", "m1", prompt="first"),
        rating("t", 0.2),
        served("t", "m2", prompt="second"),  # the caller reused thread id t
        rating("t", 0.7, model="m2"),
        served("late", "m3", prompt="third"),
    ]
    records, summary = from_feedback(write_log(tmp_path / "fb.jsonl", lines))
    assert {r.prompt: r.scores for r in records} == {
        "first": {"m1": 0.2}, "second": {"m2": 0.7}, "third": {"m3": 0.3}}
    assert (summary.ratings, summary.rated, summary.ratings_unmatched) == (3, 3, 0)


def test_a_rating_of_an_unserved_request_is_counted_not_applied(tmp_path: Path) -> None:
    lines = [served("f", "m1", success=False), rating("f", 1.0)]
    [fix], summary = from_feedback(write_log(tmp_path / "fb.jsonl", lines))
    assert fix.scores == {"m1": 0.0}
    assert (summary.ratings, summary.rated, summary.ratings_unmatched) == (1, 0, 1)


def test_a_log_of_ratings_only_gives_no_records_and_no_error(tmp_path: Path) -> None:
    records, summary = from_feedback(write_log(tmp_path / "fb.jsonl", [rating("x", 0.5)]))
    assert records == [] and summary.skipped_no_prompt == 0
    assert (summary.lines, summary.ratings, summary.ratings_unmatched) == (1, 1, 1)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"type": "rating", "user_feedback": 0.5}, "missing field 'request_id'"),
        ({"type": "rating", "request_id": "r1"}, "missing field 'user_feedback'"),
        (rating("r1", 1.5), "rating user_feedback 1.5: must be a number in [0, 1]"),
        (rating("r1", None), "rating user_feedback None: must be a number in [0, 1]"),
        (rating("r1", True), "rating user_feedback True: must be a number in [0, 1]"),
        (rating("", 0.5), "rating with request_id '': must be a non-empty string"),
    ],
)
def test_bad_rating_lines_name_the_line(tmp_path: Path, bad: dict, reason: str) -> None:
    path = write_log(tmp_path / "fb.jsonl", [served("r1", "m1"), bad])
    with pytest.raises(ReplayFormatError, match=rf"fb\.jsonl:2: {re.escape(reason)}$"):
        from_feedback(path)


def test_cli_reports_the_ratings_apart_from_the_lines_without_a_prompt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fb.jsonl.gz"
    assert main(["feedback", str(write_log(tmp_path / "fb.jsonl", RATED_LOG)), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"wrote 1 records (2 models, 1 tasks) to {out}; skipped 1 of 7 lines without a prompt or a model; "
        "ratings: 4 lines, 1 requests rated, 2 for requests not in the log or logged without "
        "a prompt")
    [record] = read_records(out)
    assert record.scores == {"m1": 0.5, "m2": 1.0}


# ---------------------------------------------------------------- command line


def test_cli_converts_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = [{"question": "q?", "scores": {"m1": 1.0}}]
    src = write_llmrouter(tmp_path, items, [{"task_name": "mmlu", "query": "q?"}], PRICES)
    out = tmp_path / "out" / "r.jsonl.gz"
    assert main(["llmrouter", str(src), "-o", str(out)]) == 0
    assert "wrote 1 records (1 models, 1 tasks)" in capsys.readouterr().out
    assert [r.prompt for r in read_records(out)] == ["q?"]

    fb = tmp_path / "fb.jsonl"
    fb.write_text('{"model_id": "m", "success": true}\n')
    assert main(["feedback", str(fb), "-o", str(tmp_path / "fb.jsonl.gz")]) == 0
    assert "skipped 1 of 1 lines without a prompt or a model" in capsys.readouterr().out

    with pytest.raises(SystemExit):
        main(["llmrouter", str(src), str(src), "-o", str(out)])
