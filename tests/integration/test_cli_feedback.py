"""`model-selector run` with a feedback log it cannot write: the answer, and the record."""

from __future__ import annotations

import json

from tests.integration.test_cli import cli, env  # noqa: F401  # env is a fixture

RUN = ["run", "--task-type", "code_fix", "--domain", "self_heal", "--complexity", "simple",
       "--priority", "critical", "--prompt", "free port 8080", "--mock-response", "fuser -k"]


def test_an_unwritable_log_still_prints_the_answer_and_logs_the_record(env, tmp_path):  # noqa: F811
    (tmp_path / "logs").write_text("a file where the log's folder should be")
    out = cli({**env, "FEEDBACK_LOG_PATH": str(tmp_path / "logs" / "fb.jsonl")}, *RUN)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "fuser -k"
    assert "(FEEDBACK_LOG_PATH) cannot be written" in out.stderr
    [record] = [json.loads(line.split(".jsonl: ", 1)[1]) for line in out.stderr.splitlines()
                if line.startswith("feedback record not written to ")]
    assert record["success"] is True and record["task_type"] == "code_fix"
