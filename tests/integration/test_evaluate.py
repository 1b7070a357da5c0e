"""`model-selector evaluate` through the real graph, Redis and the replay provider."""

from __future__ import annotations

import json

import pytest

from graph.cli import main
from graph.evaluate_metrics import aiq, hull, percentile
from tests.conftest import REDIS_URL, SHARED_DATA


@pytest.fixture
def env(monkeypatch, prefix):
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("MODEL_SELECTOR_KEY_PREFIX", prefix)


def test_evaluate_bundled_llmrouter_writes_table_json_plot_and_feedback(env, tmp_path, capsys):
    assert main(["evaluate", "--limit", "60", "--warmup", "40", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "llmrouter: 60 prompts" in printed and "AIQ over" in printed
    report = json.loads((tmp_path / "evaluate-llmrouter.json").read_text())
    policies = {p["policy"].split(" ")[0]: p for p in report["policies"]}
    assert set(policies) == {"random", "cheapest", "best-single", "spec", "learned",
                             "learned-quality"}
    assert policies["learned"]["policy"] == "learned (40 warm-up)"
    for p in policies.values():
        assert p["requests"] == 60 and p["served"] == 60
    best = report["best_single"]
    assert policies["best-single"]["mean_quality"] == pytest.approx(best["mean_quality"])
    assert policies["cheapest"]["cost_per_1k"] <= policies["random"]["cost_per_1k"]
    assert report["oracle"]["mean_quality"] >= best["mean_quality"]
    assert (tmp_path / "evaluate-llmrouter.png").read_bytes()[:4] == b"\x89PNG"
    lines = [json.loads(x) for x in (tmp_path / "feedback-llmrouter.jsonl").read_text().splitlines()]
    requests = [x for x in lines if x.get("type") != "rating"]
    ratings = [x for x in lines if x.get("type") == "rating"]
    assert len(requests) == 6 * 60 + 2 * 40  # the warm-up goes through the graph too
    assert len(ratings) == 2 * (60 + 40)  # every served answer of a learned policy is rated


def test_same_command_same_numbers(env, tmp_path):
    for run in ("a", "b"):
        main(["evaluate", "--limit", "30", "--policies", "random,spec", "--out",
              str(tmp_path / run), "--no-progress", "--seed", "7"])
    a, b = (json.loads((tmp_path / r / "evaluate-llmrouter.json").read_text()) for r in "ab")
    strip = lambda rep: [{k: v for k, v in p.items() if k != "wall_s"} for p in rep["policies"]]
    assert strip(a) == strip(b)


def test_learned_policies_learn_from_ratings_and_repeat_exactly(env, tmp_path):
    """Cold (no warm-up) vs warmed up on 1,000 rated train prompts, over the same 100 test
    prompts: the ratings must move the learned policies' choices, and a second run must
    give the same figures (batches are decided, then rated, in order)."""
    def report(run, warmup):
        assert main(["evaluate", "--limit", "100", "--warmup", str(warmup), "--policies",
                     "spec,learned-quality", "--out", str(tmp_path / run), "--no-progress"]) == 0
        rep = json.loads((tmp_path / run / "evaluate-llmrouter.json").read_text())
        return {p["policy"].split(" ")[0]: p for p in rep["policies"]}

    cold, warm, again = report("cold", 0), report("warm", 1000), report("again", 1000)
    assert cold["learned-quality"]["policy"] == "learned-quality (0 warm-up)"
    assert warm["learned-quality"]["picks"] != cold["learned-quality"]["picks"]
    assert warm["learned-quality"]["mean_quality"] > cold["learned-quality"]["mean_quality"]
    assert warm["learned-quality"]["mean_quality"] > warm["spec"]["mean_quality"]
    strip = lambda rep: {k: v for k, v in rep.items() if k != "wall_s"}
    assert strip(again["learned-quality"]) == strip(warm["learned-quality"])


def test_routerbench_needs_its_data(env, tmp_path, capsys):
    assert main(["evaluate", "--dataset", "routerbench", "--out", str(tmp_path)]) == 2
    assert "routerbench data is not bundled" in capsys.readouterr().err


def _replay_file(tmp_path, lines):
    import gzip

    from graph.replay import fleet_dir

    with gzip.open(fleet_dir("llmrouter") / "test.jsonl.gz", "rt") as bundled:
        first = json.loads(bundled.readline())
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({**first, **line}) + "\n" for line in lines))
    return path


@pytest.mark.parametrize(("lines", "message"), [
    ([], "data.jsonl: no prompts to evaluate"),
    ([{}, {"id": "p2", "task": "poetry"}],
     "data.jsonl: prompt 'p2' has task 'poetry', which llmrouter's tasks.yaml lacks (known: "),
    ([{"cost_usd": {"gpt-9": 0.1}, "scores": {"gpt-9": 1.0}}],
     "names models llmrouter's registry lacks: gpt-9"),
])
def test_data_the_fleet_cannot_route_is_named_before_any_request(env, tmp_path, capsys, lines,
                                                                  message):
    data = _replay_file(tmp_path, lines)
    out = tmp_path / "out"
    assert main(["evaluate", "--data", str(data), "--warmup", "0", "--out", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("model-selector: error: ") and message in err
    assert err.count("\n") == 1 and not out.exists()


def test_an_out_that_is_a_file_is_refused_before_the_run(env, tmp_path, capsys):
    taken = tmp_path / "report"
    taken.write_text("kept")
    assert main(["evaluate", "--limit", "5", "--warmup", "0", "--out", str(taken),
                 "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        f"model-selector: error: --out {taken}: exists and is not a folder\n")
    assert taken.read_text() == "kept"


def test_an_out_that_cannot_be_written_is_named_as_out(env, tmp_path, capsys):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "feedback-llmrouter.jsonl").mkdir()  # a folder where the log goes
    assert main(["evaluate", "--limit", "5", "--warmup", "0", "--out", str(tmp_path / "ro"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "feedback-llmrouter.jsonl (--out) cannot be written" in err
    assert "FEEDBACK_LOG_PATH" not in err


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data is beside the project only")
def test_routerbench_single_model_figures_through_the_graph(env, tmp_path, capsys):
    data = SHARED_DATA / "routerbench-0shot-train"
    assert main(["evaluate", "--dataset", "routerbench", "--data", str(data), "--policies",
                 "best-single", "--limit", "200", "--out", str(tmp_path), "--no-progress"]) == 0
    report = json.loads((tmp_path / "evaluate-routerbench.json").read_text())
    [routed] = report["policies"]
    assert routed["policy"] == "best-single (gpt-4-1106-preview)"
    single = report["single_models"]["gpt-4-1106-preview"]
    # the graph bills the recorded cost of each call, so routing everything to one model
    # reproduces that model's recorded figures exactly
    assert routed["mean_quality"] == pytest.approx(single["mean_quality"], abs=1e-9)
    assert routed["cost_per_1k"] == pytest.approx(single["cost_per_1k"], rel=1e-9)


def test_metrics():
    assert percentile([5, 1, 3, 2, 4], 50) == 3
    assert hull([(0, 0.2), (1, 0.1), (2, 0.8), (3, 0.9)]) == [(0, 0.2), (2, 0.8), (3, 0.9)]
    assert aiq([(0.0, 0.5), (1.0, 1.0)], 0.0, 1.0) == pytest.approx(0.75, abs=1e-3)
    assert aiq([(0.5, 0.6)], 0.0, 1.0) == pytest.approx(0.6)


def test_a_second_run_into_the_same_folder_keeps_only_its_own_feedback(env, tmp_path, capsys):
    """The log was appended to: a second run mixed its records with the first's."""
    for _ in range(2):
        assert main(["evaluate", "--limit", "5", "--warmup", "0", "--policies", "cheapest",
                     "--out", str(tmp_path), "--no-progress"]) == 0
    lines = (tmp_path / "feedback-llmrouter.jsonl").read_text().splitlines()
    assert len(lines) == 5


def test_data_that_is_the_log_a_run_starts_afresh_is_refused_not_deleted(env, tmp_path,
                                                                        capsys):
    import gzip

    from graph.evaluate import fleet_dir

    data = tmp_path / "feedback-llmrouter.jsonl"
    with gzip.open(fleet_dir("llmrouter") / "test.jsonl.gz", "rt") as fh:
        data.write_text("".join(fh.readline() for _ in range(5)))
    before = data.read_text()
    assert main(["evaluate", "--data", str(data), "--warmup", "0", "--policies", "cheapest",
                 "--out", str(tmp_path), "--no-progress"]) == 2
    assert "is where this run writes its feedback log" in capsys.readouterr().err
    assert data.read_text() == before
