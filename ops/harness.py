"""Node processes and a private redis-server on loopback: the harness the tests and the bench share.

Why one harness: a node under test or under measurement must start exactly as in production
(``python -m nodes ROLE`` with its environment), on ports nobody else uses, and be stopped by its own
pid - never by name - so parallel runs and a person's cluster are left alone. Every wait here is
bounded (:func:`ops.wait.until`) and a failure quotes the tail of the process's log.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from nodes.core.status import get_json
from ops.wait import Gone, TimedOut, tail, until

ROOT = Path(__file__).resolve().parent.parent
REDIS_SERVER = os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice, so runs never collide)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment plus this checkout on PYTHONPATH and unbuffered output (logs appear live)."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(extra or {})}


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """SIGTERM this one process (a node's graceful stop), SIGKILL it if it has not exited within ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def healthz_ok(base_url: str) -> bool:
    """Whether ``base_url/healthz`` answers ok now (a 503 or no answer is simply "not yet")."""
    try:
        return bool(get_json(base_url + "/healthz", timeout=1).get("ok"))
    except (OSError, ValueError):
        return False


class NodeProcess:
    """One node as a real process with its own status port on 127.0.0.1 and its own log file."""

    def __init__(self, role: str, env: Mapping[str, str], logdir: Path, name: str | None = None) -> None:
        self.role = role
        self.status_port = free_port()
        self.name = name or f"{role}-{self.status_port}"
        self.log_path = logdir / f"{self.name}.log"
        own = {"NODE_NAME": self.name, "STATUS_HOST": "127.0.0.1", "STATUS_PORT": str(self.status_port), **env}
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nodes", role],
                env=child_env(own),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.status_port}"

    def get(self, path: str) -> dict[str, Any]:
        return get_json(self.url + path)

    def status(self) -> dict[str, Any]:
        return self.get("/status")

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)

    def _alive(self) -> None:
        if self.proc.poll() is not None:
            raise Gone(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def wait_healthy(self, timeout: float = 15.0, interval: float = 0.05) -> Self:
        """Until /healthz says ok; fails at once if the process exits, naming its exit code and log."""

        def healthy() -> bool:
            self._alive()
            return healthz_ok(self.url)

        until(healthy, timeout, lambda: f"{self.name} /healthz ok; its log:\n{self.log_tail()}", interval=interval)
        return self

    def wait_state(self, state: str, timeout: float) -> dict[str, Any]:
        """Until /status reports ``state`` (e.g. ``done``); returns that document."""

        def reached() -> dict[str, Any] | None:
            self._alive()
            doc = self.status()
            return doc if doc.get("state") == state else None

        return until(reached, timeout, f"{self.name} state={state}", ignore=(OSError, ValueError))

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimedOut(f"{self.name} did not exit within {timeout:g}s:\n{self.log_tail()}") from None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def begin_stop(self) -> None:
        """SIGTERM without waiting, so several nodes can drain at once."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> int | None:
        return stop_process(self.proc, timeout)


def redis_conf(port: int, password: str, workdir: Path, extra: Sequence[str] = ()) -> str:
    """A private, memory-only redis on 127.0.0.1, logging to stdout; the password stays in a 0600 file."""
    lines = ["bind 127.0.0.1", f"port {port}", f"requirepass {password}", 'save ""', "appendonly no"]
    lines += [f"dir {workdir}", "daemonize no", 'logfile ""', *extra, ""]
    return "\n".join(lines)


def redis_ok(url: str, password: str) -> bool:
    """Whether the redis at ``url`` answers PING with this password now."""
    import redis

    try:
        with redis.Redis.from_url(url, password=password, socket_timeout=1) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


class RedisServer:
    """Our own redis-server: a free port, a random password, no persistence, stopped by its pid.

    ``start`` again after ``stop`` reuses port and password (a test restarts Redis mid-batch).
    ``extra``: more redis.conf lines (the bench lifts the pub/sub output-buffer limit).
    """

    def __init__(
        self, workdir: Path, extra: Sequence[str] = (), server: str = REDIS_SERVER, password: str | None = None
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        #: the default user's; ``password`` given: one an ``aclfile`` in ``extra`` also holds (ops.keys)
        self.password = password or secrets.token_hex(12)
        self.server = server
        self.conf_path = workdir / f"redis-{self.port}.conf"
        self.log_path = workdir / f"redis-{self.port}.log"
        self.extra = tuple(extra)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, timeout: float = 2.0) -> Any:
        """A new redis-py client (close it, or use it as a context manager)."""
        import redis

        return redis.Redis.from_url(self.url, password=self.password, socket_timeout=timeout)

    def start(self, timeout: float = 10.0) -> Self:
        fd = os.open(self.conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as conf:
            conf.write(redis_conf(self.port, self.password, self.workdir, self.extra))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.server, str(self.conf_path)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

        def answers() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise Gone(f"redis-server exited with {self.proc.returncode}:\n{self.log_tail()}")
            return redis_ok(self.url, self.password)

        until(answers, timeout, f"redis-server on port {self.port} to answer PING", interval=0.02)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 5.0)
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)
