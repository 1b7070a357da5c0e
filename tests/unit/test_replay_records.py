"""The replay format, the dataset index and the bundled replay fleets."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from graph.registry import load_registry
from graph.replay.records import (
    Record,
    ReplayDataset,
    ReplayFormatError,
    fleet_dir,
    load_task_contexts,
    read_records,
    write_records,
)

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
ROUTERBENCH = SHARED / "routerbench-0shot-train"


def rec(rid: str, prompt: str, **fields: object) -> Record:
    data: dict[str, object] = {"task": "t", "scores": {"a": 1.0}, "cost_usd": {"a": 0.01}}
    return Record.model_validate({"id": rid, "prompt": prompt, **data, **fields})


RECORDS = [
    rec("r1", "What is 2+2?", responses={"a": "4"}, latency_ms={"a": 120.0}),
    rec(
        "r2",
        "Write a haiku\nabout rain",
        task="u",
        scores={"a": 0.5, "b": 0.25},
        cost_usd={"a": 0.002, "b": 0.001},
    ),
    rec("r3", "ünïcödé ✓", scores={}, cost_usd={"a": 0.0}),
]


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz"])
def test_write_then_read_gives_the_same_records(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    assert write_records(path, RECORDS) == 3
    assert list(read_records(path)) == RECORDS


def test_gzip_output_is_byte_identical_across_writes(tmp_path: Path) -> None:
    write_records(tmp_path / "a.jsonl.gz", RECORDS)
    write_records(tmp_path / "b.jsonl.gz", RECORDS)
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()
    with gzip.open(tmp_path / "a.jsonl.gz", "rt", encoding="utf-8") as fh:
        first = json.loads(fh.readline())
    assert first == {
        "id": "r1",
        "prompt": "What is 2+2?",
        "task": "t",
        "scores": {"a": 1.0},
        "cost_usd": {"a": 0.01},
        "responses": {"a": "4"},
        "latency_ms": {"a": 120.0},
    }


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"id":"x","prompt":"p","task":"t","scores":{"a":1.5},"cost_usd":{"a":0}}', "scores.a"),
        (
            '{"id":"x","prompt":"p","task":"t","scores":{"b":1},"cost_usd":{"a":0}}',
            "without a cost",
        ),
        ('{"id":"x","prompt":"p","task":"t","scores":{},"cost_usd":{"a":-1}}', "cost_usd.a"),
        ('{"id":"x","prompt":"p","task":"t","scores":{},"cost_usd":{}}', "cost_usd"),
        ('{"id":"x","prompt":"p","task":"t","scores":{},"cost_usd":{"a":Infinity}}',
         "cost_usd.a: Input should be a finite number"),
        ('{"id":"x","prompt":"p","task":"t","scores":{"a":NaN},"cost_usd":{"a":0}}',
         "scores.a: Input should be a finite number"),
        ('{"id":"x","prompt":"p","scores":{},"cost_usd":{"a":0}}', "task"),
        ('{"id":"x","prompt":"p","task":"t","scores":{},"cost_usd":{"a":0},"extra":1}', "extra"),
    ],
)
def test_bad_line_names_file_line_and_reason(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps(RECORDS[0].to_json())
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    with pytest.raises(ReplayFormatError) as err:
        list(read_records(path))
    assert f"{path}:3:" in str(err.value)
    assert reason in str(err.value)


def test_missing_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(ReplayFormatError, match="file not found"):
        list(read_records(tmp_path / "nope.jsonl"))


def test_a_directory_is_named_as_one(tmp_path: Path) -> None:
    with pytest.raises(ReplayFormatError, match=f"^{tmp_path}: is a directory, not a replay"):
        list(read_records(tmp_path))


def test_dataset_looks_up_by_id_and_exact_prompt() -> None:
    data = ReplayDataset(RECORDS)
    assert len(data) == 3
    assert data.by_id("r2").task == "u"
    assert data.by_prompt("Write a haiku\nabout rain") is RECORDS[1]
    assert data.by_prompt("Write a haiku\nabout rain ") is None
    assert data.by_prompt("what is 2+2?") is None
    assert data.models == ("a", "b")
    assert data.tasks == ("t", "u")
    with pytest.raises(KeyError):
        data.by_id("r9")


def test_duplicate_ids_are_rejected_and_first_prompt_wins() -> None:
    with pytest.raises(ReplayFormatError, match="duplicate id 'r1'"):
        ReplayDataset([RECORDS[0], RECORDS[0]])
    twin = rec("r1b", "What is 2+2?", scores={"a": 0.0})
    assert ReplayDataset([RECORDS[0], twin]).by_prompt("What is 2+2?") is RECORDS[0]


def test_outcomes_grade_over_scored_prompts_and_cost_over_all_calls() -> None:
    data = ReplayDataset(RECORDS)
    a = data.model_outcome("a")
    assert a.mean_score == pytest.approx((1.0 + 0.5) / 2)  # r3's call was not graded
    assert a.cost_per_1k == pytest.approx(1000 * (0.01 + 0.002 + 0.0) / 3)
    assert a.prompts == 3
    with pytest.raises(KeyError):
        data.model_outcome("zzz")


def test_oracle_breaks_ties_by_lowest_cost() -> None:
    tie = rec(
        "t", "p", scores={"a": 1.0, "b": 1.0, "c": 0.0}, cost_usd={"a": 0.03, "b": 0.01, "c": 0.0}
    )
    worse = rec("w", "q", scores={"a": 0.0, "b": 0.5}, cost_usd={"a": 0.0, "b": 0.02})
    oracle = ReplayDataset([tie, worse]).oracle()
    assert oracle.mean_score == pytest.approx(0.75)
    assert oracle.cost_per_1k == pytest.approx(1000 * (0.01 + 0.02) / 2)
    assert oracle.prompts == 2


# ---------------------------------------------------------------- the bundled fleets


def test_bundled_llmrouter_replay_reproduces_the_published_figures() -> None:
    data = ReplayDataset.load(fleet_dir("llmrouter") / "test.jsonl.gz")
    assert len(data) == 500 and len(data.models) == 9 and len(data.tasks) == 10
    assert round(data.model_outcome("llama-3.1-nemotron-51b-instruct").mean_score, 3) == 0.563
    assert round(data.model_outcome("llama-3.1-8b-instruct").mean_score, 3) == 0.508
    assert round(data.oracle().mean_score, 3) == 0.743
    assert all(not r.responses for r in data)  # LLMRouter recorded no responses


def test_bundled_llmrouter_keeps_its_licence_and_source() -> None:
    text = (fleet_dir("llmrouter") / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert "Permission is hereby granted" in text
    assert "SOURCE: ulab-uiuc/LLMRouter, commit 4e7a796942ce" in text


def test_no_routerbench_data_is_bundled() -> None:
    files = {p.name for p in (REPO / "config" / "replay" / "routerbench").iterdir()}
    assert files == {"model_registry.yaml", "fallback_policies.yaml", "tasks.yaml"}
    tracked = [p for p in (REPO / "config").rglob("*") if p.suffix in {".csv", ".jsonl"}]
    assert tracked == []


def _dataset_models(fleet: str) -> set[str]:
    if fleet == "llmrouter":
        return set(ReplayDataset.load(fleet_dir(fleet) / "test.jsonl.gz").models)
    if not ROUTERBENCH.exists():
        pytest.skip("shared RouterBench data not available")
    with (ROUTERBENCH / "mbpp_train.csv").open(encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh))
    return {c.removesuffix("|total_cost") for c in header if c.endswith("|total_cost")}


@pytest.mark.parametrize("fleet", ["llmrouter", "routerbench"])
def test_fleet_registry_matches_its_tasks_and_dataset(fleet: str) -> None:
    registry = load_registry(fleet_dir(fleet) / "model_registry.yaml")
    tasks = load_task_contexts(fleet_dir(fleet) / "tasks.yaml")
    task_types = {ctx.task_type for ctx in tasks.values()}
    domains = {ctx.domain for ctx in tasks.values()}
    assert {e.model.removeprefix("replay/") for e in registry.models.values()} == _dataset_models(
        fleet
    )
    for entry in registry.models.values():
        assert entry.group == "specialized" and entry.status == "alive"
        assert set(entry.capabilities) == task_types
        assert set(entry.domains) == domains
        assert entry.key_env is None  # no key needed: never leaves the process
        assert entry.cost_per_1m_tokens == entry.input_cost_per_1m
    assert set(registry.policies) == domains


def test_llmrouter_tasks_cover_every_task_of_both_splits() -> None:
    tasks = load_task_contexts(fleet_dir("llmrouter") / "tasks.yaml")
    assert len(tasks) == 14
    bundled = ReplayDataset.load(fleet_dir("llmrouter") / "test.jsonl.gz")
    assert set(bundled.tasks) <= set(tasks)
    queries = SHARED / "llmrouter" / "default_query_train.jsonl"
    if queries.exists():
        names = {json.loads(line)["task_name"] for line in queries.open(encoding="utf-8")}
        assert names == set(tasks)


def test_routerbench_tasks_are_its_eval_names() -> None:
    tasks = load_task_contexts(fleet_dir("routerbench") / "tasks.yaml")
    assert set(tasks) == {"arc-challenge", "mbpp", "winogrande"}


def test_llmrouter_registry_prices_are_the_datasets(tmp_path: Path) -> None:
    prices_file = SHARED / "llmrouter" / "default_llm.json"
    if not prices_file.exists():
        pytest.skip("shared LLMRouter data not available")
    prices = json.loads(prices_file.read_text())
    registry = load_registry(fleet_dir("llmrouter") / "model_registry.yaml")
    for entry in registry.models.values():
        listed = prices[entry.model.removeprefix("replay/")]
        assert (entry.input_cost_per_1m, entry.output_cost_per_1m) == (
            listed["input_price"],
            listed["output_price"],
        )


def test_task_file_errors_name_the_task(tmp_path: Path) -> None:
    path = tmp_path / "tasks.yaml"
    path.write_text(
        "tasks:\n  x: {task_type: a, domain: nowhere, complexity: simple, priority: low}\n"
    )
    with pytest.raises(ReplayFormatError, match=r"tasks\.x: domain"):
        load_task_contexts(path)
