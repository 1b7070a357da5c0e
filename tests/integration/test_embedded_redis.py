"""The embedded Redis (no REDIS_URL): saved and stopped on demand, and started again."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_stop_embedded_saves_and_a_later_target_starts_it_again(tmp_path):
    code = textwrap.dedent("""
        import os, psutil
        from graph import redis_conn
        client = redis_conn.target().client()
        client.set("kept", "yes")
        pid = redis_conn._embedded().pid
        redis_conn.stop_embedded()
        print(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie")
        print(os.path.getsize(os.path.join(os.environ["MODEL_SELECTOR_HOME"], "redis",
                                           "model-selector.db")) > 0)
        print(redis_conn.target().client().get("kept"))
    """)
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**env, "MODEL_SELECTOR_HOME": str(tmp_path)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "yes"]  # stopped, saved, back with its data
