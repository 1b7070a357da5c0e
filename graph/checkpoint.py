"""LangGraph checkpoints in the same Redis, on plain Redis 7 and on the embedded server.

The official `langgraph-checkpoint-redis` needs RedisJSON and RediSearch, which neither has,
so `langgraph-checkpoint-plainredis` (strings, hashes, sorted sets; pinned exactly and
covered by our own conformance test) does the storage. This wrapper adds two things:
one object for `invoke` and `ainvoke` (the package has a sync and an async class), and
outage tolerance: when Redis stops answering, checkpoints are skipped with a warning
instead of failing the request, because serving the agent matters more than its history.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
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


def _written(config: RunnableConfig, checkpoint: Checkpoint) -> RunnableConfig:
    conf = config["configurable"]
    return {"configurable": {"thread_id": conf["thread_id"],
                             "checkpoint_ns": conf.get("checkpoint_ns", ""),
                             "checkpoint_id": checkpoint["id"]}}


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
        return cls(RedisSaver(client=target.client(decode=False), prefix=prefix, ttl=ttl_s),
                   AsyncRedisSaver(client=target.async_client(decode=False), prefix=prefix,
                                   ttl=ttl_s))

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
