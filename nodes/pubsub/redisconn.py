"""Redis connection helpers shared by the publisher and the subscriber.

One place decides how this project talks to Redis: redis-py's own retry is switched off so that a
broken connection surfaces at once, and :class:`RedisCall` retries it with backoff (tenacity) while
logging the outage, so the gap it causes can be matched to the sequence gaps subscribers report.
A wrong password is not retried: :func:`fatal` reports it as one clear line.
"""

from __future__ import annotations

import ctypes
import logging
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
import tenacity
from redis.backoff import NoBackoff
from redis.retry import Retry

from nodes.core.lifecycle import Node
from nodes.core.log import event

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds between PINGs on an idle subscriber connection (redis-py runs it inside get_message()).
HEALTH_CHECK_INTERVAL = 10
SOCKET_TIMEOUT = 5.0


#: Blocks above this many bytes are mmap'd and handed back to the OS when freed (glibc's M_MMAP_THRESHOLD,
#: fixed). glibc's default *raises* the threshold to the largest block freed (up to 32 MiB), after which big
#: payloads are carved from the heap and the heap stays grown: a subscriber kept +15 MB after a few 2 MiB
#: messages. Fixed at 128 KiB (glibc's own starting value), each big payload costs its size only while held.
MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def release_big_buffers() -> bool:
    """Fix the C allocator's mmap threshold at :data:`MMAP_THRESHOLD` (glibc; elsewhere a no-op). True if set."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not a glibc-like libc
        return False
    return bool(mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(MMAP_THRESHOLD)))


def redis_client(settings: Any, name: str) -> redis.Redis:
    """A client whose only retrying is ours: redis-py's own retry is off, so failures surface at once."""
    return redis.Redis.from_url(
        settings.redis_url,
        username=settings.redis_user or None,
        password=settings.redis_password,
        client_name=re.sub(r"\s", "_", name),
        socket_connect_timeout=SOCKET_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        retry=Retry(NoBackoff(), 0),
    )


def transient(exc: BaseException) -> bool:
    """Worth retrying: the connection broke. A wrong password (an AuthenticationError is a ConnectionError) is not."""
    return isinstance(exc, (redis.ConnectionError, redis.TimeoutError)) and not isinstance(
        exc, redis.AuthenticationError
    )


def redacted(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url)


def fatal(node: Node, exc: redis.RedisError) -> int:
    """Report an error retrying cannot fix (e.g. a wrong password) as one clear log line; exit code 1."""
    hint = "check REDIS_PASSWORD" if isinstance(exc, redis.AuthenticationError) else "check REDIS_URL and the server"
    event(
        log,
        "redis_error",
        logging.ERROR,
        error=f"{type(exc).__name__}: {exc}",
        url=redacted(node.settings.redis_url),
        hint=hint,
    )
    return 1


class RedisCall:
    """Runs one Redis call, retrying connection errors with backoff and logging the outage as a gap.

    ``attempts=None`` retries until the node stops (a subscriber must outlive a Redis restart). The
    backoff sleeps on the stop event, so SIGTERM is never held up by a retry.
    """

    def __init__(self, node: Node, what: str, attempts: int | None) -> None:
        self.node = node
        self.what = what
        self.down_since: float | None = None
        self.node.stats.counters.setdefault("reconnects", 0)
        stop = tenacity.stop_when_event_set(node.stop)
        self.retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(transient),
            wait=tenacity.wait_exponential(multiplier=0.1, max=2.0),
            stop=stop if attempts is None else stop | tenacity.stop_after_attempt(attempts),
            sleep=node.stop.wait,
            before_sleep=self._lost,
            reraise=True,
        )

    def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        result = self.retrying(fn, *args)
        if self.down_since is not None:
            self.node.stats.incr("reconnects")
            event(log, "redis_recovered", what=self.what, gap_s=round(time.monotonic() - self.down_since, 3))
            self.down_since = None
        return result

    def _lost(self, state: tenacity.RetryCallState) -> None:
        self.node.stats.beat()  # retrying is alive: keep /healthz green, /status shows the reconnects
        if self.down_since is None:
            self.down_since = time.monotonic()
        exc = state.outcome.exception() if state.outcome else None
        event(
            log,
            "redis_retry",
            logging.WARNING,
            what=self.what,
            attempt=state.attempt_number,
            error=f"{type(exc).__name__}: {exc}",
            next_wait_s=round(state.upcoming_sleep, 3),
        )
