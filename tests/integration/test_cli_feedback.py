"""`model-selector run` and `rate` with a feedback log they cannot write."""

from __future__ import annotations

import pytest

from tests.integration.test_cli import cli, env  # noqa: F401  # env is a fixture
from tests.integration.test_cli_rate import RUN


@pytest.mark.parametrize("command", [["rate", "some-id", "0.5"], RUN])
def test_a_feedback_log_it_cannot_write_is_said_before_anything_is_recorded(
        env, redis_client, prefix, tmp_path, command):  # noqa: F811
    """A rating reached Redis and the request its model, while their log lines went only
    to stderr, and the command exited 0."""
    (tmp_path / "logs").write_text("a file where the log's folder should be")
    out = cli({**env, "FEEDBACK_LOG_PATH": str(tmp_path / "logs" / "fb.jsonl")}, *command)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith(f"model-selector: error: feedback log {tmp_path}/logs/fb.jsonl "
                                 "(FEEDBACK_LOG_PATH) cannot be written: ")
    assert len(out.stderr.strip().splitlines()) == 1
    assert list(redis_client.scan_iter(f"{prefix}*")) == []
