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


def test_processes_starting_together_share_one_embedded_server(tmp_path):
    """`uvicorn --workers 2` without REDIS_URL: each worker started its own server on the
    one data file, so a request served by one worker could not be rated on the other and
    the last to exit overwrote the file with its half of the state."""
    code = textwrap.dedent("""
        import sys, time
        from graph import redis_conn
        time.sleep(float(sys.argv[1]) - time.time())  # start together
        target = redis_conn.target()
        target.client().incr("started")
        print(target.socket_path, flush=True)
        time.sleep(1.5)  # all still up: each sees the others' count
        print(target.client().get("started"))
    """)
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    import time

    at = str(time.time() + 2.0)
    procs = [subprocess.Popen([sys.executable, "-c", code, at], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**env, "MODEL_SELECTOR_HOME": str(tmp_path)})
             for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    sockets = {out.split()[0] for out, _ in outs}
    assert len(sockets) == 1, sockets  # one server
    assert {out.split()[1] for out, _ in outs} == {"3"}
