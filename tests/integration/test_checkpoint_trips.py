"""The checkpointer's writes on the real server: `put` and `put_writes` as one script each,
writing exactly what the package's own methods write; no read for a minted thread; expired
threads pruned from the package's thread registry."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis
from langgraph.checkpoint.base import WRITES_IDX_MAP, empty_checkpoint
from langgraph_checkpoint_plainredis import RedisSaver

from graph.checkpoint import NEW_THREAD, Minted, RedisCheckpointer
from graph.redis_conn import RedisTarget
from graph.state import RunSettings
from tests.conftest import PORT_HEALER, REDIS_URL

ERROR = next(channel for channel, idx in WRITES_IDX_MAP.items() if idx == -1)  # "__error__"


def _checkpoint(thread: str = "t:1") -> tuple[dict, dict, dict]:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"prompt": "fix the port", "attempts": [{"ok": True}],
                                    "position": 0}
    checkpoint["channel_versions"] = {"prompt": "1.0", "attempts": "1.0", "position": "1.0",
                                      "branch:to:score": "1.0"}
    new_versions = dict(checkpoint["channel_versions"])  # branch:to:score has no value
    config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    return config, checkpoint, new_versions


def _stored(client: redis.Redis, prefix: str) -> dict[str, tuple[object, bool]]:
    """Every key under `prefix` (prefix removed): its value, and whether it expires."""
    out: dict[str, tuple[object, bool]] = {}
    for raw in client.scan_iter(match=f"{prefix}:*", count=1000):
        key = raw.decode()
        kind = client.type(key).decode()
        value: object
        if kind == "string":
            value = client.get(key)
        elif kind == "zset":
            value = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        else:
            value = {f.decode().replace(prefix, "P"): v for f, v in client.hgetall(key).items()}
        out[key.replace(prefix, "P")] = (value, client.ttl(key) > 0)
    return out


def _saver(prefix: str, ttl_s: int | None = 600) -> RedisCheckpointer:
    return RedisCheckpointer.for_target(RedisTarget(url=REDIS_URL, socket_path=None),
                                        prefix=prefix, ttl_s=ttl_s)


def test_put_writes_the_package_layout_with_the_same_expiry(prefix):
    client = redis.Redis.from_url(REDIS_URL)
    ours, theirs = f"{prefix}ours", f"{prefix}theirs"
    for ttl in (600, None):
        config, checkpoint, versions = _checkpoint(f"user:{ttl}")
        _saver(ours, ttl).put(config, checkpoint, {"source": "loop", "step": 1}, versions)
        RedisSaver(client=client, prefix=theirs, ttl=ttl).put(
            config, checkpoint, {"source": "loop", "step": 1}, versions)
    mine = _stored(client, ours)
    assert mine == _stored(client, theirs)
    assert sum(1 for key in mine if ":blob:" in key) == 8  # 4 channels x 2 threads
    expiring = {key for key, (_, expires) in mine.items() if expires}
    assert len(expiring) == 4 + 1 + 1  # the TTL run's blobs, its checkpoint and the index


def _expired_threads(prefix: str, count: int) -> redis.Redis:
    """`count` threads registered under `prefix`lg whose checkpoints have expired."""
    client = redis.Redis.from_url(REDIS_URL)
    saver = _saver(f"{prefix}lg", ttl_s=1)
    for i in range(count):
        config, checkpoint, versions = _checkpoint(f"old:{i}")
        saver.put(config, checkpoint, {"source": "loop", "step": 1}, versions)
    assert client.hlen(f"{prefix}lg:threads") == count
    time.sleep(2.1)
    return client


def _registered(client: redis.Redis, prefix: str) -> list[str]:
    return [json.loads(v)["thread"] for v in client.hvals(f"{prefix}lg:threads")]


# 20: a listpack; 700: over any server's hash-max-listpack-entries (128 by default, 512 on
# some), a hashtable
@pytest.mark.parametrize("threads", [20, 700])
def test_expired_threads_leave_the_registry(prefix, threads):
    """The package's registry kept one entry per thread for ever; with a thread per request
    it grew without bound. Each put drops the expired among 16 distinct entries drawn at
    random, so one live thread put again and again clears any number of them: at least 15
    a put until 16 or fewer entries are left, then all."""
    client = _expired_threads(prefix, threads)
    live = _saver(f"{prefix}lg", ttl_s=600)
    puts = 0
    while puts < threads // 15 + 2:
        config, checkpoint, versions = _checkpoint("live")
        live.put(config, checkpoint, {"source": "loop", "step": puts}, versions)
        puts += 1
    assert _registered(client, prefix) == ["live"]
    assert [t.config["configurable"]["thread_id"] for t in live.list(None)] == ["live"] * puts


def test_a_put_checks_at_most_16_registry_entries(prefix):
    """A put's cost is fixed: it checks 16 entries, not the whole registry (HSCAN returns
    a small hash whole, and checking it all cost 0.41 ms of server time at 500 entries)."""
    client = _expired_threads(prefix, 40)
    config, checkpoint, versions = _checkpoint("live")
    _saver(f"{prefix}lg", ttl_s=600).put(config, checkpoint, {"source": "loop", "step": 1},
                                         versions)
    stale = [t for t in _registered(client, prefix) if t != "live"]
    assert 40 - 16 <= len(stale) <= 40 - 15  # 16 drawn; the live entry may be one of them
    assert "live" in _registered(client, prefix)


def test_put_is_one_round_trip_and_reads_back(prefix, monkeypatch):
    saver = _saver(f"{prefix}lg")
    config, checkpoint, versions = _checkpoint()
    sent: list[str] = []
    real = redis.Redis.execute_command

    def counted(self, *args, **kwargs):
        sent.append(str(args[0]))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "execute_command", counted)
    written = saver.put(config, checkpoint, {"source": "loop", "step": 1}, versions)
    assert sent == ["EVALSHA"]
    back = saver.get_tuple(written)
    assert back is not None
    assert back.checkpoint["channel_values"] == checkpoint["channel_values"]
    assert back.metadata["step"] == 1
    # After SCRIPT FLUSH (a restarted Redis) the script is loaded again.
    redis.Redis.from_url(REDIS_URL).script_flush()
    _, second, versions = _checkpoint()
    second["channel_values"]["position"] = 1
    second["channel_versions"]["position"] = "2.0"
    saver.put(written, second, {"source": "loop", "step": 2}, {"position": "2.0"})
    assert saver.get_tuple(config).checkpoint["channel_values"]["position"] == 1  # latest
    assert [t.metadata["step"] for t in saver.list(config)] == [2, 1]


def test_put_writes_is_one_round_trip_with_the_package_semantics(prefix, monkeypatch):
    """Same hash as the package's; a task's regular write is kept on a replay, its error
    write replaced (LangGraph's rule); one script sent, sync and async."""
    client = redis.Redis.from_url(REDIS_URL)
    ours, theirs = _saver(f"{prefix}ours"), RedisSaver(client=client, prefix=f"{prefix}theirs",
                                                      ttl=600)
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "c1"}}
    first = [("prompt", "a"), (ERROR, ValueError("first"))]
    again = [("prompt", "b"), (ERROR, ValueError("second"))]
    sent: list[str] = []
    real = redis.Redis.execute_command

    def counted(self, *args, **kwargs):
        sent.append(str(args[0]))
        return real(self, *args, **kwargs)

    for saver in (ours, theirs):
        saver.put_writes(config, first, "task-1")
        monkeypatch.setattr(redis.Redis, "execute_command", counted)
        sent.clear()
        saver.put_writes(config, again, "task-1")
        monkeypatch.setattr(redis.Redis, "execute_command", real)
        if saver is ours:
            assert sent == ["EVALSHA"]
    assert _stored(client, f"{prefix}ours") == _stored(client, f"{prefix}theirs")
    raw = client.hgetall(f"{prefix}ours:wr:t::c1")
    assert raw[b"task-1:0"] == ours.sync._encode_write("task-1", "prompt", "a")  # kept
    assert raw[b"task-1:-1"] == ours.sync._encode_write("task-1", ERROR, ValueError("second"))
    asyncio.run(ours.aput_writes(config, [("prompt", "c")], "task-2"))
    assert sorted(client.hkeys(f"{prefix}ours:wr:t::c1")) == [b"task-1:-1", b"task-1:0",
                                                              b"task-2:0"]
    assert client.ttl(f"{prefix}ours:wr:t::c1") > 0


def test_async_put_is_one_script_and_matches_sync(prefix):
    saver = _saver(f"{prefix}lg")
    config, checkpoint, versions = _checkpoint()

    async def run():
        written = await saver.aput(config, checkpoint, {"source": "loop", "step": 1}, versions)
        return await saver.aget_tuple(written)

    back = asyncio.run(run())
    assert back.checkpoint["channel_values"] == checkpoint["channel_values"]
    assert saver.get_tuple(config).checkpoint["id"] == checkpoint["id"]


def test_a_minted_thread_is_not_read_but_a_named_checkpoint_is(prefix, monkeypatch):
    saver = _saver(f"{prefix}lg")
    config, checkpoint, versions = _checkpoint()
    written = saver.put(config, checkpoint, {"source": "loop", "step": 1}, versions)
    sent: list[str] = []
    real = redis.Redis.execute_command
    monkeypatch.setattr(redis.Redis, "execute_command",
                        lambda self, *a, **k: sent.append(str(a[0])) or real(self, *a, **k))
    minted = {"configurable": {**config["configurable"], NEW_THREAD: Minted()}}
    assert saver.get_tuple(minted) is None
    assert asyncio.run(saver.aget_tuple(
        {"configurable": {**config["configurable"], NEW_THREAD: Minted()}})) is None
    assert sent == []
    # Good for one read: a config that carries the flag later reads the thread.
    assert saver.get_tuple(minted).checkpoint["id"] == checkpoint["id"]
    # The flag never hides a checkpoint asked for by id, nor a thread without the flag,
    # nor one whose flag is a plain true (forged, or a config read back from JSON).
    named = {"configurable": {**written["configurable"], NEW_THREAD: Minted()}}
    assert saver.get_tuple(named).checkpoint["id"] == checkpoint["id"]
    assert saver.get_tuple(config).checkpoint["id"] == checkpoint["id"]
    forged = {"configurable": {**config["configurable"], NEW_THREAD: True}}
    assert saver.get_tuple(forged).checkpoint["id"] == checkpoint["id"]


def test_a_graph_run_without_a_thread_sends_one_checkpoint_script(selection, monkeypatch):
    """durability="exit": the checkpointer's whole Redis traffic is the final put."""
    sent: list[tuple[str, int]] = []
    real_cmd = redis.Redis.execute_command

    def counted(self, *args, **kwargs):
        sent.append((str(args[0]), self.get_encoder().decode_responses))
        return real_cmd(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "execute_command", counted)
    out = selection.invoke({"context": PORT_HEALER, "prompt": "free port 8080"},
                           context=RunSettings(mock_responses={"*": "kill it"}),
                           durability="exit")
    assert out["success"] is True
    checkpointer_sent = [name for name, decoded in sent if not decoded]  # bytes client
    assert checkpointer_sent == ["EVALSHA"]
    history = list(selection.get_state_history(
        {"configurable": {"thread_id": out["thread_id"]}}))
    assert len(history) == 1 and history[0].values["model_used"] == out["model_used"]
    assert NEW_THREAD not in history[0].metadata


@pytest.mark.parametrize("mode", ["checkpoints", "debug"])
def test_a_config_the_run_emitted_reads_its_thread_later(selection, mode):
    """LangGraph copies the minted flag into the configs it streams; one of them, without
    its checkpoint id, read an empty state (the flag said "nothing written yet")."""
    configs = []
    for chunk in selection.stream({"context": PORT_HEALER, "prompt": "free port 8080"},
                                  context=RunSettings(mock_responses={"*": "kill it"}),
                                  stream_mode=mode):
        payload = chunk.get("payload", chunk) if mode == "debug" else chunk
        if "config" in payload:
            configs.append(payload["config"])
    assert configs
    configurable = {k: v for k, v in configs[-1]["configurable"].items() if k != "checkpoint_id"}
    state = selection.get_state({"configurable": configurable})
    assert state.values["response"] == "kill it"



def test_a_put_keeps_alive_the_values_its_checkpoint_keeps_from_earlier_puts(prefix):
    """A checkpoint written late (a paused run resumed, `update_state`) pointed at values
    written earlier, which expired first: the thread read back missing most of its state."""
    client = redis.Redis.from_url(REDIS_URL)
    saver = _saver(f"{prefix}lg", ttl_s=600)
    config, checkpoint, versions = _checkpoint("late")
    saver.put(config, checkpoint, {"source": "loop", "step": 1}, versions)
    blobs = [key for key in client.scan_iter(match=f"{prefix}lg:blob:*")]
    assert len(blobs) == 4
    for key in blobs:
        client.expire(key, 5)  # written long ago: about to expire
    later = {**checkpoint, "id": "later", "channel_versions": {**versions, "position": "2.0"},
             "channel_values": {**checkpoint["channel_values"], "position": 1}}
    saver.put(config, later, {"source": "update", "step": 2}, {"position": "2.0"})
    assert sorted(client.ttl(key) > 500 for key in blobs) == [False, True, True, True]
    # the one not kept: the superseded position; the new one is written with the TTL
    assert client.ttl(next(k for k in blobs if b":position:" in k)) <= 5


def test_a_put_drops_expired_checkpoints_from_the_threads_timeline(prefix):
    """A thread reused within its TTL kept every checkpoint id it ever had in its index."""
    client = redis.Redis.from_url(REDIS_URL)
    saver = _saver(f"{prefix}lg", ttl_s=600)
    config, checkpoint, versions = _checkpoint("reused")
    for i in range(5):
        saver.put(config, {**checkpoint, "id": f"c{i}"}, {"source": "loop", "step": i}, versions)
    index = f"{prefix}lg:idx:reused:"
    assert client.zcard(index) == 5
    for i in range(4):
        client.delete(f"{prefix}lg:cp:reused::c{i}")  # expired
    saver.put(config, {**checkpoint, "id": "c5"}, {"source": "loop", "step": 5}, versions)
    saver.put(config, {**checkpoint, "id": "c6"}, {"source": "loop", "step": 6}, versions)
    assert [m.decode() for m in client.zrange(index, 0, -1)] == ["c4", "c5", "c6"]
    assert len(list(saver.list(config))) == 3
