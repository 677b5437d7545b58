"""A private rabbitmq-server on loopback for the tests (issue 14): Debian's package, no docker, no service.

Why its own epmd: Erlang nodes register with the port mapper daemon (epmd, default port 4369), and
rabbitmq-server would start a shared one that outlives it. Here epmd runs in the foreground on a free
port (``ERL_EPMD_PORT``) as our child, and the broker, its data, logs, Erlang cookie ($HOME) and
config all live in one work directory; both processes are stopped by their pids. The management plugin
stays off: readiness is ``rabbitmq-diagnostics check_port_connectivity`` (its AMQP listener accepts a
connection: ``ping`` answers earlier, while the broker is still starting; the compose healthcheck is the same).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Self

from ops.harness import free_port, stop_process
from ops.wait import Gone, tail, until

#: Debian's rabbitmq-server puts the real scripts here (/usr/sbin's wrappers switch to the rabbitmq user).
RABBIT_BIN = Path(os.environ.get("RABBITMQ_BIN") or "/usr/lib/rabbitmq/bin")
EPMD = shutil.which("epmd") or "/usr/bin/epmd"


def rabbit_missing() -> str | None:
    """Why a private broker cannot start here (None: it can)."""
    for path in (RABBIT_BIN / "rabbitmq-server", Path(EPMD)):
        if not os.access(path, os.X_OK):
            return f"{path} not found: install rabbitmq-server (make install does: apt-get install rabbitmq-server)"
    return None


class RabbitServer:
    """Our own rabbitmq-server: free ports, a random user and password, stopped by its pid."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir.resolve()  # the broker runs in it: a relative path would not be found from there
        self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        self.user, self.password = "mpc", secrets.token_hex(12)
        self.nodename = f"mpc-test-{self.port}@localhost"
        self.log_path = workdir / "rabbitmq.log"
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.port}/%2F"

    def env(self) -> dict[str, str]:
        w = self.workdir
        return {
            **os.environ,
            "HOME": str(w),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(w / "mnesia"),
            "RABBITMQ_LOG_BASE": str(w / "log"),
            "RABBITMQ_LOGS": "-",
            # exec the Erlang VM itself (no signal-forwarding shell): our pid is the broker's, SIGTERM stops it
            "RUNNING_UNDER_SYSTEMD": "true",
        }

    def start(self, timeout: float = 90.0) -> Self:
        conf = [
            f"listeners.tcp.default = 127.0.0.1:{self.port}",
            f"default_user = {self.user}",
            f"default_pass = {self.password}",
            "loopback_users = none",
        ]
        fd = os.open(self.workdir / "rabbitmq.conf", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(conf) + "\n")
        (self.workdir / "enabled_plugins").write_text("[].\n")
        env = self.env()
        with open(self.log_path, "ab") as log:
            for cmd in ([EPMD, "-port", str(self.epmd_port)], [str(RABBIT_BIN / "rabbitmq-server")]):
                self.procs.append(
                    subprocess.Popen(cmd, env=env, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
                )
        until(self.ready, timeout, f"rabbitmq-server on port {self.port} to answer ping", interval=0.5)
        return self

    def ready(self) -> bool:
        for proc in self.procs:
            if proc.poll() is not None:
                raise Gone(f"{proc.args[0]} exited with {proc.returncode}:\n{self.log_tail()}")
        ping = subprocess.run(
            [str(RABBIT_BIN / "rabbitmq-diagnostics"), "-q", "check_port_connectivity"],
            env=self.env(),
            capture_output=True,
            timeout=30,
            check=False,
        )
        return ping.returncode == 0

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc, 15.0)
        self.procs.clear()

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)
