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
otherwise grows by one entry per request for ever (see `graph.checkpoint_lua.PUT`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import weakref
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

from graph import checkpoint_lua
from graph.outage import Outage
from graph.redis_conn import RedisTarget

log = logging.getLogger(__name__)
T = TypeVar("T")
PREFIX = "model-selector:lg"
VERSION_STEP = 1 << 32
_VERSION_BITS = random.Random()  # its own: a caller's random.seed(n) must not repeat versions
NEW_THREAD = "__model_selector_new_thread__"
"""Configurable flag set by `SelectionGraph` on a thread id it minted (its value a
`Minted`). LangGraph keeps "__" keys out of checkpoint metadata and LangChain out of run
metadata."""


class Minted(int):
    """The flag's value: true, and good for one read. The run's first read of its latest
    checkpoint takes it and skips Redis (nothing can be there yet). LangGraph copies the
    flag into the configs it emits (`stream_mode="checkpoints"` or `"debug"`); a later
    read with one of them, its `checkpoint_id` removed, finds the flag taken and reads the
    thread's checkpoints. A plain `True` (a forged or JSON round-tripped flag) is never
    taken for one."""

    def __new__(cls) -> Minted:
        flag = super().__new__(cls, 1)
        flag.unread = True
        return flag


def _written(config: RunnableConfig, checkpoint: Checkpoint) -> RunnableConfig:
    conf = config["configurable"]
    return {"configurable": {"thread_id": conf["thread_id"],
                             "checkpoint_ns": conf.get("checkpoint_ns", ""),
                             "checkpoint_id": checkpoint["id"]}}


def _put_script_call(saver: RedisSaver | AsyncRedisSaver, config: RunnableConfig,
                     checkpoint: Checkpoint, metadata: CheckpointMetadata,
                     new_versions: ChannelVersions) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of `checkpoint_lua.PUT`, from the package's own key and payload helpers."""
    conf = config["configurable"]
    thread_id, ns, cid = conf["thread_id"], conf.get("checkpoint_ns", ""), checkpoint["id"]
    idx_key = saver._key_index(thread_id, ns)  # noqa: SLF001 - the package's layout, pinned
    blobs = saver._plan_blobs(thread_id, ns, checkpoint.get("channel_values") or {},  # noqa: SLF001
                              new_versions)
    keys = [saver._key_seq(), saver._key_checkpoint(thread_id, ns, cid), idx_key,  # noqa: SLF001
            saver._key_threads(), *(key for key, _ in blobs)]  # noqa: SLF001
    if saver.ttl:  # the values it keeps from earlier puts live as long as it does
        kept = {channel: version for channel, version in checkpoint["channel_versions"].items()
                if channel not in new_versions}
        keys += saver._blob_keys(thread_id, ns, kept)  # noqa: SLF001
    entry = json.dumps({"thread": thread_id, "ns": ns}, ensure_ascii=False)
    payload = saver._payload_for_checkpoint(config, checkpoint, metadata)  # noqa: SLF001
    args = [cid, saver.ttl or 0, payload, entry, *(value for _, value in blobs)]
    return keys, args


def _put_writes_call(saver: RedisSaver | AsyncRedisSaver, config: RunnableConfig,
                     writes: Sequence[tuple[str, Any]],
                     task_id: str) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of `checkpoint_lua.PUT_WRITES`, from the package's own fields."""
    conf = config["configurable"]
    key = saver._key_writes(conf["thread_id"], conf.get("checkpoint_ns", ""),  # noqa: SLF001
                            conf["checkpoint_id"])
    planned = saver._plan_writes(writes, task_id, existing=set())  # noqa: SLF001 - all of them
    args: list[Any] = [saver.ttl or 0]
    for idx, ((channel, _), (field, payload)) in enumerate(zip(writes, planned, strict=True)):
        args += [field, payload, "1" if WRITES_IDX_MAP.get(channel, idx) < 0 else "0"]
    return [key], args


class OneTripRedisSaver(RedisSaver):
    """The package's sync saver: `put` and `put_writes` in one round trip each, and no read
    of a thread the graph has just minted (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._put = self.client.register_script(checkpoint_lua.PUT)
        self._put_writes = self.client.register_script(checkpoint_lua.PUT_WRITES)

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

    def forget_minted(self, thread_id: str) -> None:
        """`delete_thread` of a thread the graph minted, which has only the root namespace.

        The package's `delete_thread` first reads the whole thread registry (every thread
        within the TTL: 0.5 s at 100,000) or, when the thread is not in it, scans the
        keyspace; this deletes the keys of the one thread, as the package does per namespace.
        """
        idx_key = self._key_index(thread_id, "")  # noqa: SLF001 - the package's layout, pinned
        cids = [c.decode() for c in self.client.zrange(idx_key, 0, -1)]
        payloads = self.client.mget([self._key_checkpoint(thread_id, "", c)  # noqa: SLF001
                                     for c in cids]) if cids else []
        pipe = self.client.pipeline()
        pipe.delete(*self._keys_to_delete(thread_id, "", cids, payloads))  # noqa: SLF001
        pipe.hdel(self._key_threads(), idx_key)  # noqa: SLF001
        pipe.execute()


class OneTripAsyncRedisSaver(AsyncRedisSaver):
    """`OneTripRedisSaver` for the package's async saver."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._put = self.client.register_script(checkpoint_lua.PUT)
        self._put_writes = self.client.register_script(checkpoint_lua.PUT_WRITES)

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

    async def aforget_minted(self, thread_id: str) -> None:
        """`OneTripRedisSaver.forget_minted`, awaited."""
        idx_key = self._key_index(thread_id, "")  # noqa: SLF001
        cids = [c.decode() for c in await self.client.zrange(idx_key, 0, -1)]
        payloads = await self.client.mget([self._key_checkpoint(thread_id, "", c)  # noqa: SLF001
                                           for c in cids]) if cids else []
        pipe = self.client.pipeline()
        pipe.delete(*self._keys_to_delete(thread_id, "", cids, payloads))  # noqa: SLF001
        pipe.hdel(self._key_threads(), idx_key)  # noqa: SLF001
        await pipe.execute()


def _is_new_thread(config: RunnableConfig) -> bool:
    """A minted thread's latest checkpoint, read for the first time: none can exist, so no
    read is needed (and the flag is taken: see `Minted`)."""
    conf = config.get("configurable") or {}
    flag = conf.get(NEW_THREAD)
    if not isinstance(flag, Minted) or not flag.unread or conf.get("checkpoint_id"):
        return False
    flag.unread = False
    return True


class RedisCheckpointer(BaseCheckpointSaver):
    """Sync and async plain-Redis savers behind one checkpointer, tolerant of outages.

    After a failed call Redis is left alone for a while (reads find nothing, writes are
    dropped), so a Redis that hangs costs one socket timeout, not one per write.
    """

    def __init__(self, sync: RedisSaver, async_: AsyncRedisSaver | None = None,
                 outage: Outage | None = None,
                 new_async: Callable[[], AsyncRedisSaver] | None = None) -> None:
        super().__init__(serde=sync.serde)
        self.sync = sync
        self.async_ = async_
        self.outage = outage or Outage()
        """Shared with the Store by `compile_graph`: one Redis, one view of its health."""
        self._new_async = new_async
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncRedisSaver] = \
            weakref.WeakKeyDictionary()
        self._async_unused = True

    @classmethod
    def for_target(cls, target: RedisTarget, prefix: str = PREFIX,
                   ttl_s: int | None = None) -> RedisCheckpointer:
        """Savers on the configured Redis (bytes clients, as the package expects)."""
        def new_async() -> AsyncRedisSaver:
            return OneTripAsyncRedisSaver(client=target.async_client(decode=False),
                                          prefix=prefix, ttl=ttl_s)

        return cls(OneTripRedisSaver(client=target.client(decode=False), prefix=prefix,
                                     ttl=ttl_s), new_async(), new_async=new_async)

    def _aio(self) -> AsyncRedisSaver:
        """The async saver, on a client of the running event loop.

        An asyncio Redis connection belongs to the loop that opened it: a script calling
        `asyncio.run(graph.ainvoke(...))` twice got "Event loop is closed" from the second
        run on, for good. Each loop gets a client of its own (loops in several threads at
        once each keep theirs); those of closed loops are let go."""
        if self.async_ is None:
            raise RuntimeError("this checkpointer was built without an async Redis client")
        loop = asyncio.get_running_loop()
        saver = self._by_loop.get(loop)
        if saver is None:
            for closed in [other for other in self._by_loop if other.is_closed()]:
                del self._by_loop[closed]  # its connections point at it: it would live on
            if self._async_unused or self._new_async is None:
                saver = self.async_  # the first loop takes the one built with the graph
            else:
                saver = self.async_ = self._new_async()  # the latest: what shutdown closes
            self._async_unused = False
            self._by_loop[loop] = saver
        return saver

    def _guard(self, call: Callable[[], T], fallback: T) -> T:
        return self.outage.guard(call, lambda: fallback)

    async def _aguard(self, call: Callable[[], Awaitable[T]], fallback: T) -> T:
        return await self.outage.aguard(call, fallback)

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

    def delete_thread(self, thread_id: str) -> None:
        """Every key of the thread (an int id is the thread its string names, as a run's)."""
        self.sync.delete_thread(str(thread_id))

    def forget_minted(self, thread_id: str) -> None:
        """Delete a thread the graph minted for a request it then refused (skipped while
        Redis is out, like every write)."""
        self._guard(lambda: self.sync.forget_minted(thread_id), None)

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
        await self._aio().adelete_thread(str(thread_id))

    async def aforget_minted(self, thread_id: str) -> None:  # noqa: D102
        await self._aguard(lambda: self._aio().aforget_minted(thread_id), None)

    def get_next_version(self, current: int | None, channel: Any) -> int:
        """Versions unique to their branch: the blob keys hold the version, so with 1, 2, 3
        a fork from an older checkpoint wrote over the original branch's values.
        InMemorySaver appends a random fraction to a string for the same reason; an int
        (a step in the high bits, 32 random low bits) still compares with the plain ints
        threads saved before hold."""
        step = (current or 0) // VERSION_STEP + 1
        return step * VERSION_STEP + _VERSION_BITS.getrandbits(32)
