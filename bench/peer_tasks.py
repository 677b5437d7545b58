"""The task every peer of the ``peers`` case runs, as its workers import it (see :mod:`bench.peers`).

One no-op task for all three peers: it does nothing but hand its number back, ``RPUSH key i`` on the
bench's redis-server, which is how the bench verifies every task ran exactly once and times its
result (the peers' own result stores are left off, as their docs advise when results are not needed,
so every peer pays the same one round trip for its result). ``probe`` tells the bench which worker
processes are up. ``PEER_REDIS_URL`` (password and database included) is set by the bench.
"""

from __future__ import annotations

import os
import time
from typing import Any

URL = os.environ.get("PEER_REDIS_URL", "")

_client: Any = None
_pid = 0


def _redis() -> Any:
    """A client per process (workers fork after import), shared by the threads of a process."""
    global _client, _pid
    if _client is None or _pid != os.getpid():
        import redis

        _client, _pid = redis.Redis.from_url(URL), os.getpid()
    return _client


def noop(i: int, key: str) -> None:
    _redis().rpush(key, i)


def probe(key: str, sleep_s: float) -> None:
    """Busy a worker for ``sleep_s`` so the next probe goes to another process, then say which process ran it."""
    time.sleep(sleep_s)
    _redis().rpush(key, os.getpid())
