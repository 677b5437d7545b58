"""Fixtures of the local-process tests: a private, password-protected redis-server per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.harness import REDIS_SERVER, RedisServer


def require_redis_server() -> None:
    """FAIL (never skip) when redis-server is missing: the Redis tests need a real server."""
    if not (os.path.isfile(REDIS_SERVER) and os.access(REDIS_SERVER, os.X_OK)):
        pytest.fail(
            f"redis-server not found at {REDIS_SERVER}: install it (apt-get install redis-server) "
            "or set REDIS_SERVER=/path/to/redis-server; the Redis pub/sub tests need a real server",
            pytrace=False,
        )


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """Starts redis-server on a free port with a random password; FAILS (never skips) if it is missing."""
    require_redis_server()
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(workdir)
    try:
        yield server.start()
    finally:
        server.stop()
