"""Fixtures of the local-process tests: a private, password-protected redis-server per test."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.support import free_port, wait_until

REDIS_SERVER = os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"


@dataclass
class RedisServer:
    """A redis-server process on 127.0.0.1 that the test owns (stopped by its pid, nothing else)."""

    port: int
    password: str
    workdir: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, password=self.password, socket_timeout=2)

    def start(self) -> RedisServer:
        args = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--requirepass", self.password]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no"]
        args += ["--logfile", str(self.workdir / "redis.log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.proc.returncode}: {self.log_tail()}")
            with self.client() as c:
                return c.ping()

        wait_until(answers, 10, f"redis-server on port {self.port} to answer PING")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log_tail(self) -> str:
        path = self.workdir / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """Starts redis-server on a free port with a random password; FAILS (never skips) if it is missing."""
    if not (os.path.isfile(REDIS_SERVER) and os.access(REDIS_SERVER, os.X_OK)):
        pytest.fail(
            f"redis-server not found at {REDIS_SERVER}: install it (apt-get install redis-server) "
            "or set REDIS_SERVER=/path/to/redis-server; the Redis pub/sub tests need a real server",
            pytrace=False,
        )
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(port=free_port(), password=secrets.token_hex(12), workdir=workdir)
    try:
        yield server.start()
    finally:
        server.stop()
