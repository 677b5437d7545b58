"""Child processes of the bench: hosts (bench.host), plain nodes (``python -m nodes ROLE``), redis-server.

Every child is started here and stopped here, by its own pid (SIGTERM, then SIGKILL after a bounded
wait); every wait is bounded and fails with :class:`BenchError` naming what it waited for and the
tail of the child's log.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ops import harness
from ops.harness import ROOT, RedisServer, child_env, free_port, stop_process
from ops.wait import tail

__all__ = ["BenchError", "Host", "Launcher", "NodeProcess", "RedisServer", "ThreadHost", "free_port", "tcp"]

CLK_TCK = os.sysconf("SC_CLK_TCK")
#: The bench's redis.conf lines: no output-buffer limit for pub/sub clients, so a subscriber that falls
#: behind a pipelined publisher is buffered (and measured), not disconnected.
REDIS_CONF = ("client-output-buffer-limit pubsub 0 0 0",)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads so far (``/proc``, 1/CLK_TCK resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class BenchError(RuntimeError):
    """A case that could not run or did not deliver every message: the bench exits non-zero."""


def tcp() -> str:
    """A fresh loopback endpoint for one side to bind and the other to connect."""
    return f"tcp://127.0.0.1:{free_port()}"


def redis_server(logdir: Path) -> RedisServer:
    """The shared harness's redis-server with the bench's settings, started."""
    return RedisServer(logdir, extra=REDIS_CONF).start()


class Host:
    """A node or baseline in its own process (see :mod:`bench.host`), driven over a pipe."""

    def __init__(self, name: str, spec: dict[str, Any], logdir: Path, timeout: float = 20.0) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.host", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
            env=child_env(),
        )
        self._buf = b""
        self.exited: dict[str, Any] | None = None
        self.info = self.read("ready", timeout)

    def send(self, cmd: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        self.proc.stdin.flush()

    def read(self, ev: str, timeout: float) -> dict[str, Any]:
        """The next protocol line of kind ``ev`` (an early ``exited`` is kept for :meth:`wait_exited`)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                msg = json.loads(line)
                if msg["ev"] == ev:
                    return msg
                if msg["ev"] == "exited":
                    self.exited = msg
                    continue
                if msg["ev"] == "error":
                    raise BenchError(f"{self.name}: {msg['error']}\n{tail(self.log_path)}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.name}: no {ev!r} within {timeout:.0f}s\n{tail(self.log_path)}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise BenchError(
                        f"{self.name}: exited ({self.proc.wait(5)}) while waiting for {ev!r}\n{tail(self.log_path)}"
                    )
                self._buf += chunk

    def arm(self, count: int, timeout: float, counter: str = "received") -> None:
        """Start the delivery monitor; returns once it has read its base count (before any load)."""
        self.send("expect", count=count, timeout=timeout, counter=counter)
        self.read("armed", 10.0)

    def result(self, timeout: float) -> dict[str, Any]:
        return self.read("result", timeout)

    def cpu(self) -> float | None:
        return cpu_seconds(self.proc.pid)

    def pause(self) -> None:
        """SIGSTOP: the receiver stops reading, so a whole batch can queue up in front of it."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def snapshot(self) -> dict[str, Any]:
        self.send("status")
        return self.read("status", 10.0)

    def wait_exited(self, timeout: float) -> dict[str, Any]:
        if self.exited is None:
            self.exited = self.read("exited", timeout)
        return self.exited

    def begin_stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.send("stop")
        except (OSError, ValueError):
            pass

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.begin_stop()
                self.read("stopped", 10.0)
                self.proc.wait(5)
        except (BenchError, OSError, ValueError, subprocess.TimeoutExpired):
            pass
        finally:
            stop_process(self.proc, 5.0)
            self._log.close()


class NodeProcess(harness.NodeProcess):
    """The harness's node process (``python -m nodes ROLE``, as in production) with the party interface
    the :class:`Launcher` gives every node and baseline: snapshot, cpu, wait_exited."""

    def wait_exited(self, timeout: float) -> dict[str, Any]:
        rc = self.wait_exit(timeout)
        return {"rc": rc, "error": None if rc == 0 else self.log_tail(15)}

    def snapshot(self) -> dict[str, Any]:
        doc = self.status()
        return {"counters": doc["counters"], "extra": doc}

    def cpu(self) -> float | None:
        return cpu_seconds(self.proc.pid)


# --- the same parties as threads of the bench process (--threads, used by --quick) --------------


class ThreadHost:
    """:class:`Host`'s interface with the node or baseline in a thread of this process.

    For ``--quick``: every party shares one GIL, so the figures mean nothing, but every case runs
    its real code paths and delivery checks in a couple of seconds.
    """

    def __init__(self, name: str, spec: dict[str, Any], ctx: Any) -> None:
        import threading

        from bench import host

        self.name = name
        self.spec = spec
        self._host = host
        self.stop_event = threading.Event()
        self.target = host.build(spec, ctx, self.stop_event, own_process=False)
        self.rc: int | None = None
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        if not host.wait_ready(self.target, self.thread):
            self.stop()
            raise BenchError(f"{name}: not ready ({self.error or 'timeout'})")
        self._pending: dict[str, Any] = {}
        self._monitor: threading.Thread | None = None

    def _run(self) -> None:
        try:
            self.rc = self.target.run()
        except Exception as exc:  # noqa: BLE001 - reported by wait_exited / result
            self.rc, self.error = 1, f"{type(exc).__name__}: {exc}"

    def arm(self, count: int, timeout: float, counter: str = "received") -> None:
        import threading

        armed = threading.Event()

        def monitor() -> None:
            self._pending["result"] = self._host.expect(
                self.target, self.thread, counter, count, timeout, lambda *_a, **_k: armed.set()
            )

        self._pending.clear()
        self._monitor = threading.Thread(target=monitor, name=f"{self.name}-monitor", daemon=True)
        self._monitor.start()
        armed.wait(10)

    def result(self, timeout: float) -> dict[str, Any]:
        assert self._monitor is not None
        self._monitor.join(timeout)
        if "result" not in self._pending:
            raise BenchError(f"{self.name}: no result within {timeout:.0f}s")
        return self._pending["result"]

    def cpu(self) -> float | None:
        """Threads share the bench's process: no CPU time of their own."""
        return None

    def pause(self) -> None:
        """Threads cannot be frozen: in thread mode the batch flows while it is published."""

    def resume(self) -> None:
        pass

    def snapshot(self) -> dict[str, Any]:
        return {"counters": dict(self.target.stats.counters), "extra": self.target.extra_status()}

    def wait_exited(self, timeout: float) -> dict[str, Any]:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise BenchError(f"{self.name}: still running after {timeout:.0f}s")
        return {"rc": self.rc, "error": self.error, "counters": dict(self.target.stats.counters)}

    def begin_stop(self) -> None:
        if not self.stop_event.is_set():
            self.stop_event.set()
            if hasattr(self.target, "shutdown"):
                self.target.shutdown()

    def stop(self) -> None:
        self.begin_stop()
        self.thread.join(10)


class Launcher:
    """Starts the parties of a case as processes (default) or as threads (``--threads``), and stops them."""

    def __init__(self, logdir: Path, threads: bool) -> None:
        import zmq

        self.logdir = logdir
        self.threads = threads
        self.ctx = zmq.Context()
        self.started: list[Any] = []

    def host(self, name: str, spec: dict[str, Any]) -> Host | ThreadHost:
        """A node or baseline whose deliveries the bench times (see :mod:`bench.host`)."""
        if "node" in spec:
            spec = {**spec, "env": {"NODE_NAME": name, "STATUS_PORT": "0", **spec.get("env", {})}}
        h = ThreadHost(name, spec, self.ctx) if self.threads else Host(name, spec, self.logdir)
        self.started.append(h)
        return h

    def node(
        self, role: str, name: str, env: dict[str, str], oneshot: bool = False, lab: str | None = None
    ) -> Host | ThreadHost | NodeProcess:
        """A node as in production (``python -m nodes ROLE``); in thread mode, a node thread.

        ``lab``: a :mod:`bench.lab` variant of the role instead, in a host process of its own.
        """
        if self.threads or lab:
            spec = {"node": role, "env": env, "oneshot": oneshot}
            return self.host(name, {**spec, "lab": lab} if lab else spec)
        proc = NodeProcess(role, env, self.logdir, name)
        self.started.append(proc)
        if not oneshot:
            proc.wait_healthy(20.0)
        return proc

    def stop(self, party: Any) -> None:
        if party in self.started:
            self.started.remove(party)
        party.stop()

    def stop_all(self) -> None:
        """Ask every party to stop at once (each loop needs up to a poll interval), then wait for each."""
        parties, self.started = self.started[::-1], []
        for party in parties:
            party.begin_stop()
        for party in parties:
            party.stop()
