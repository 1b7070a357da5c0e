"""LangGraph checkpoints in the same Redis, on plain Redis 7 and on the embedded server.

The official `langgraph-checkpoint-redis` needs RedisJSON and RediSearch, which neither has,
so `langgraph-checkpoint-plainredis` (strings, hashes, sorted sets; pinned exactly and
covered by our own conformance test) does the storage. This wrapper adds two things:
one object for `invoke` and `ainvoke` (the package has a sync and an async class), and
outage tolerance: when Redis stops answering, checkpoints are skipped with a warning
instead of failing the request, because serving the agent matters more than its history.

Round trips are saved on every checkpointed request, with the package's key layout
unchanged (its reads, `list` and `delete_thread` are used as they are):
- `put` is one Lua script instead of an INCR and then a MULTI of two commands per channel,
  and `put_writes` one instead of EXISTS, HKEYS and a MULTI;
- a thread id that `SelectionGraph` has just minted has no checkpoint to read.
With a TTL, `put` also prunes expired threads from the package's thread registry, which
otherwise grows by one entry per request for ever (see `PUT_LUA`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph_checkpoint_plainredis import AsyncRedisSaver, RedisSaver

from graph.redis_conn import RedisTarget
from graph.outage import OUTAGE_ERRORS, Outage

log = logging.getLogger(__name__)
T = TypeVar("T")
PREFIX = "model-selector:lg"
NEW_THREAD = "__model_selector_new_thread__"
"""Configurable flag set by `SelectionGraph` on a thread id it minted. LangGraph keeps
"__" keys out of checkpoint metadata and LangChain out of run metadata."""

# The package's `put` as one atomic script: the same keys and values, and SET ... EX in
# place of SET then EXPIRE. KEYS: seq, checkpoint, index, threads registry, prune cursor,
# then one blob key per channel. ARGV: checkpoint id, TTL in seconds (0: none), checkpoint
# payload, registry entry, then the blob payloads in the order of their keys.
#
# With a TTL it also prunes the registry, which the package never does: a thread's entry
# outlives its expired checkpoints, so with one thread per request the hash grew by one
# entry per request for ever. Each put checks the next few entries (HSCAN from a stored
# cursor) and drops those whose index key is gone, more than the one it adds. The index
# keys it checks are not in KEYS: fine on one Redis server, which is what this package
# supports (it is not cluster-aware either).
PUT_LUA = """
local seq = redis.call('INCR', KEYS[1])
local ttl = tonumber(ARGV[2])
local function put(key, value)
  if ttl > 0 then redis.call('SET', key, value, 'EX', ttl) else redis.call('SET', key, value) end
end
put(KEYS[2], ARGV[3])
for i = 6, #KEYS do put(KEYS[i], ARGV[i - 1]) end
redis.call('ZADD', KEYS[3], seq, ARGV[1])
redis.call('HSET', KEYS[4], KEYS[3], ARGV[4])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[3], ttl)
  local page = redis.call('HSCAN', KEYS[4], redis.call('GET', KEYS[5]) or '0', 'COUNT', 16)
  redis.call('SET', KEYS[5], page[1])
  for i = 1, #page[2], 2 do
    if redis.call('EXISTS', page[2][i]) == 0 then redis.call('HDEL', KEYS[4], page[2][i]) end
  end
end
return seq
"""


# The package's `put_writes` as one atomic script (it read EXISTS and HKEYS first, then
# wrote). KEYS: the writes hash. ARGV: TTL in seconds (0: none), then (field, payload,
# replace) triples; a task's regular writes are kept if already there (HSETNX), its
# special ones (error, interrupt, resume, scheduled) replace (HSET), as in the package.
PUT_WRITES_LUA = """
for i = 2, #ARGV, 3 do
  if ARGV[i + 2] == '1' then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  else
    redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
"""


def _written(config: RunnableConfig, checkpoint: Checkpoint) -> RunnableConfig:
    conf = config["configurable"]
    return {"configurable": {"thread_id": conf["thread_id"],
                             "checkpoint_ns": conf.get("checkpoint_ns", ""),
                             "checkpoint_id": checkpoint["id"]}}


def _put_script_call(saver: RedisSaver | AsyncRedisSaver, config: RunnableConfig,
                     checkpoint: Checkpoint, metadata: CheckpointMetadata,
                     new_versions: ChannelVersions) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of `PUT_LUA`, built with the package's own key and payload helpers."""
    conf = config["configurable"]
    thread_id, ns, cid = conf["thread_id"], conf.get("checkpoint_ns", ""), checkpoint["id"]
    idx_key = saver._key_index(thread_id, ns)  # noqa: SLF001 - the package's layout, pinned
    blobs = saver._plan_blobs(thread_id, ns, checkpoint.get("channel_values") or {},  # noqa: SLF001
                              new_versions)
    keys = [saver._key_seq(), saver._key_checkpoint(thread_id, ns, cid), idx_key,  # noqa: SLF001
            saver._key_threads(), saver._key_threads() + ":prune",  # noqa: SLF001
            *(key for key, _ in blobs)]
    entry = json.dumps({"thread": thread_id, "ns": ns}, ensure_ascii=False)
    args = [cid, saver.ttl or 0, saver._payload_for_checkpoint(config, checkpoint, metadata),  # noqa: SLF001
            entry, *(value for _, value in blobs)]
    return keys, args


def _put_writes_call(saver: RedisSaver | AsyncRedisSaver, config: RunnableConfig,
                     writes: Sequence[tuple[str, Any]], task_id: str) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of `PUT_WRITES_LUA`, with the package's own fields and payloads."""
    conf = config["configurable"]
    key = saver._key_writes(conf["thread_id"], conf.get("checkpoint_ns", ""),  # noqa: SLF001
                            conf["checkpoint_id"])
    planned = saver._plan_writes(writes, task_id, existing=set())  # noqa: SLF001 - all of them
    args: list[Any] = [saver.ttl or 0]
    for idx, ((channel, _), (field, payload)) in enumerate(zip(writes, planned, strict=True)):
        args += [field, payload, "1" if WRITES_IDX_MAP.get(channel, idx) < 0 else "0"]
    return [key], args


class OneTripRedisSaver(RedisSaver):
    """The package's sync saver with `put` in one round trip (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._put = self.client.register_script(PUT_LUA)
        self._put_writes = self.client.register_script(PUT_WRITES_LUA)

    def put(self, config: RunnableConfig, checkpoint: Checkpoint,  # noqa: D102
            metadata: CheckpointMetadata, new_versions: ChannelVersions) -> RunnableConfig:
        keys, args = _put_script_call(self, config, checkpoint, metadata, new_versions)
        self._put(keys=keys, args=args)
        return _written(config, checkpoint)

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],  # noqa: D102
                   task_id: str, task_path: str = "") -> None:
        keys, args = _put_writes_call(self, config, writes, task_id)
        self._put_writes(keys=keys, args=args)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:  # noqa: D102
        return None if _is_new_thread(config) else super().get_tuple(config)


class OneTripAsyncRedisSaver(AsyncRedisSaver):
    """The package's async saver with `aput` in one round trip (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._put = self.client.register_script(PUT_LUA)
        self._put_writes = self.client.register_script(PUT_WRITES_LUA)

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint,  # noqa: D102
                   metadata: CheckpointMetadata, new_versions: ChannelVersions) -> RunnableConfig:
        keys, args = _put_script_call(self, config, checkpoint, metadata, new_versions)
        await self._put(keys=keys, args=args)
        return _written(config, checkpoint)

    async def aput_writes(self, config: RunnableConfig,  # noqa: D102
                          writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        keys, args = _put_writes_call(self, config, writes, task_id)
        await self._put_writes(keys=keys, args=args)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:  # noqa: D102
        return None if _is_new_thread(config) else await super().aget_tuple(config)


def _is_new_thread(config: RunnableConfig) -> bool:
    """A minted thread's latest checkpoint: none can exist, so no read is needed."""
    conf = config.get("configurable") or {}
    return bool(conf.get(NEW_THREAD)) and not conf.get("checkpoint_id")


class RedisCheckpointer(BaseCheckpointSaver):
    """Sync and async plain-Redis savers behind one checkpointer, tolerant of outages.

    After a failed call Redis is left alone for a while (reads find nothing, writes are
    dropped), so a Redis that hangs costs one socket timeout, not one per write.
    """

    def __init__(self, sync: RedisSaver, async_: AsyncRedisSaver | None = None,
                 outage: Outage | None = None) -> None:
        super().__init__(serde=sync.serde)
        self.sync = sync
        self.async_ = async_
        self.outage = outage or Outage()
        """Shared with the Store by `compile_graph`: one Redis, one view of its health."""

    @classmethod
    def for_target(cls, target: RedisTarget, prefix: str = PREFIX,
                   ttl_s: int | None = None) -> RedisCheckpointer:
        """Savers on the configured Redis (bytes clients, as the package expects)."""
        return cls(OneTripRedisSaver(client=target.client(decode=False), prefix=prefix,
                                     ttl=ttl_s),
                   OneTripAsyncRedisSaver(client=target.async_client(decode=False),
                                          prefix=prefix, ttl=ttl_s))

    def _aio(self) -> AsyncRedisSaver:
        if self.async_ is None:
            raise RuntimeError("this checkpointer was built without an async Redis client")
        return self.async_

    def _guard(self, call: Callable[[], T], fallback: T) -> T:
        return self.outage.guard(call, lambda: fallback)

    async def _aguard(self, call: Callable[[], Awaitable[T]], fallback: T) -> T:
        if self.outage.resting:
            return fallback
        try:
            result = await call()
        except OUTAGE_ERRORS as exc:
            self.outage.failed(exc)
            return fallback
        self.outage.answered()
        return result

    # ------------------------------------------------------------------ sync
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:  # noqa: D102
        return self._guard(lambda: self.sync.get_tuple(config), None)

    def list(self, config: RunnableConfig | None, **kwargs: Any) -> Iterator[CheckpointTuple]:  # noqa: D102
        return self.sync.list(config, **kwargs)

    def put(self, config: RunnableConfig, checkpoint: Checkpoint,  # noqa: D102
            metadata: CheckpointMetadata, new_versions: ChannelVersions) -> RunnableConfig:
        return self._guard(lambda: self.sync.put(config, checkpoint, metadata, new_versions),
                           _written(config, checkpoint))

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],  # noqa: D102
                   task_id: str, task_path: str = "") -> None:
        self._guard(lambda: self.sync.put_writes(config, writes, task_id, task_path), None)

    def delete_thread(self, thread_id: str) -> None:  # noqa: D102
        self.sync.delete_thread(thread_id)

    # ------------------------------------------------------------------ async
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:  # noqa: D102
        return await self._aguard(lambda: self._aio().aget_tuple(config), None)

    async def alist(self, config: RunnableConfig | None,  # noqa: D102
                    **kwargs: Any) -> AsyncIterator[CheckpointTuple]:
        async for item in self._aio().alist(config, **kwargs):
            yield item

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint,  # noqa: D102
                   metadata: CheckpointMetadata, new_versions: ChannelVersions) -> RunnableConfig:
        return await self._aguard(
            lambda: self._aio().aput(config, checkpoint, metadata, new_versions),
            _written(config, checkpoint))

    async def aput_writes(self, config: RunnableConfig,  # noqa: D102
                          writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        await self._aguard(lambda: self._aio().aput_writes(config, writes, task_id, task_path),
                           None)

    async def adelete_thread(self, thread_id: str) -> None:  # noqa: D102
        await self._aio().adelete_thread(thread_id)

    def get_next_version(self, current: Any, channel: Any) -> Any:  # noqa: D102
        return self.sync.get_next_version(current, channel)
