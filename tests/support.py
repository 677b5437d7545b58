"""Helpers shared by the local-process and integration tests: free ports, node processes,
reading ``/status``, and bounded waits that fail with a message naming what they waited for."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nodes.core.status import get_json

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``pred`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = pred()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - the node may not be listening yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else "")
    )


class NodeProc:
    """One node as a real process (``python -m nodes ROLE``) with its own status port."""

    def __init__(self, role: str, env: dict[str, str], logdir: Path, name: str | None = None) -> None:
        self.role = role
        self.name = name or f"{role}-{free_port()}"
        self.status_port = free_port()
        full_env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "NODE_NAME": self.name,
            "STATUS_HOST": "127.0.0.1",
            "STATUS_PORT": str(self.status_port),
            **env,
        }
        self.log_path = logdir / f"{self.name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nodes", role], env=full_env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.status_port}"

    def status(self) -> dict[str, Any]:
        return get_json(self.url + "/status")

    def wait_healthy(self, timeout: float = 15.0) -> NodeProc:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            return get_json(self.url + "/healthz").get("ok", False)

        wait_until(healthy, timeout, f"{self.name} /healthz")
        return self

    def wait_state(self, state: str, timeout: float) -> dict[str, Any]:
        return wait_until(lambda: (s := self.status())["state"] == state and s, timeout, f"{self.name} state={state}")

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout}s:\n{self.log_tail()}") from None

    def log_tail(self, n: int = 30) -> str:
        self._log.flush()
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode
