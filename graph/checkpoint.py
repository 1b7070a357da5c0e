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
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

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
from graph.store import OUTAGE_ERRORS

log = logging.getLogger(__name__)
PREFIX = "model-selector:lg"


def _written(config: RunnableConfig, checkpoint: Checkpoint) -> RunnableConfig:
    conf = config["configurable"]
    return {"configurable": {"thread_id": conf["thread_id"],
                             "checkpoint_ns": conf.get("checkpoint_ns", ""),
                             "checkpoint_id": checkpoint["id"]}}


class RedisCheckpointer(BaseCheckpointSaver):
    """Sync and async plain-Redis savers behind one checkpointer, tolerant of outages."""

    def __init__(self, sync: RedisSaver, async_: AsyncRedisSaver | None = None) -> None:
        super().__init__(serde=sync.serde)
        self.sync = sync
        self.async_ = async_
        self._down = False

    def _skipped(self, what: str, exc: Exception) -> None:
        """Warn once per outage, not once per write (a request makes a dozen)."""
        if not self._down:
            log.warning("redis unavailable, checkpoints skipped until it answers: %s (%s)",
                        exc, what)
        self._down = True

    def _ok(self) -> None:
        if self._down:
            log.info("redis answers again: checkpoints resumed")
        self._down = False

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

    # ------------------------------------------------------------------ sync
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:  # noqa: D102
        try:
            return self.sync.get_tuple(config)
        except OUTAGE_ERRORS as exc:
            self._skipped("read", exc)
            return None

    def list(self, config: RunnableConfig | None, **kwargs: Any) -> Iterator[CheckpointTuple]:  # noqa: D102
        return self.sync.list(config, **kwargs)

    def put(self, config: RunnableConfig, checkpoint: Checkpoint,  # noqa: D102
            metadata: CheckpointMetadata, new_versions: ChannelVersions) -> RunnableConfig:
        try:
            written = self.sync.put(config, checkpoint, metadata, new_versions)
            self._ok()
            return written
        except OUTAGE_ERRORS as exc:
            self._skipped("write", exc)
            return _written(config, checkpoint)

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],  # noqa: D102
                   task_id: str, task_path: str = "") -> None:
        try:
            self.sync.put_writes(config, writes, task_id, task_path)
        except OUTAGE_ERRORS as exc:
            self._skipped("writes", exc)

    def delete_thread(self, thread_id: str) -> None:  # noqa: D102
        self.sync.delete_thread(thread_id)

    # ------------------------------------------------------------------ async
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:  # noqa: D102
        try:
            return await self._aio().aget_tuple(config)
        except OUTAGE_ERRORS as exc:
            self._skipped("read", exc)
            return None

    async def alist(self, config: RunnableConfig | None,  # noqa: D102
                    **kwargs: Any) -> AsyncIterator[CheckpointTuple]:
        async for item in self._aio().alist(config, **kwargs):
            yield item

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint,  # noqa: D102
                   metadata: CheckpointMetadata, new_versions: ChannelVersions) -> RunnableConfig:
        try:
            written = await self._aio().aput(config, checkpoint, metadata, new_versions)
            self._ok()
            return written
        except OUTAGE_ERRORS as exc:
            self._skipped("write", exc)
            return _written(config, checkpoint)

    async def aput_writes(self, config: RunnableConfig,  # noqa: D102
                          writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        try:
            await self._aio().aput_writes(config, writes, task_id, task_path)
        except OUTAGE_ERRORS as exc:
            self._skipped("writes", exc)

    async def adelete_thread(self, thread_id: str) -> None:  # noqa: D102
        await self._aio().adelete_thread(thread_id)

    def get_next_version(self, current: Any, channel: Any) -> Any:  # noqa: D102
        return self.sync.get_next_version(current, channel)
