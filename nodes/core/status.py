"""Counters and the tiny HTTP server every node runs: ``/healthz``, ``/status``, ``/metrics``.

The node's loop is the only writer of its :class:`Stats`; the HTTP thread only reads. Plain
``dict`` updates in the loop and ``dict.copy()`` in the reader are each atomic under the GIL,
so no lock sits on the hot path and ``/status`` never blocks forwarding.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from nodes.core.log import event

log = logging.getLogger(__name__)

#: /healthz fails when the node's loop has not passed for this long (it polls every <=0.25 s).
STALE_AFTER = 5.0


class Stats:
    """Everything a node counts: flat counters plus labelled ones (e.g. replies per worker)."""

    def __init__(self, node: str, role: str) -> None:
        self.node = node
        self.role = role
        self.state = "starting"
        self.started_at = time.time()
        self.counters: dict[str, int] = {"received": 0, "sent": 0, "rejected": 0}
        self.labelled: dict[str, dict[str, int]] = {}
        self.last_beat = time.monotonic()
        #: Why the node cannot do its job right now (e.g. no peer), or None; set by the node (runs in the HTTP thread).
        self.problem: Callable[[], str | None] = lambda: None

    def incr(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def incr_label(self, group: str, key: str, n: int = 1) -> None:
        bucket = self.labelled.get(group)
        if bucket is None:
            bucket = self.labelled[group] = {}
        bucket[key] = bucket.get(key, 0) + n

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def healthy(self) -> bool:
        return self.health()[0]

    def health(self) -> tuple[bool, str]:
        """``(ok, reason)``: ok while the loop runs, is not stuck, and the node reports no problem."""
        if self.state not in ("running", "done"):
            return False, f"state is {self.state}"
        stuck = time.monotonic() - self.last_beat
        if stuck >= STALE_AFTER:
            return False, f"loop has not passed for {stuck:.1f}s"
        problem = self.problem()
        return (False, problem) if problem else (True, "ok")

    def snapshot(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "role": self.role,
            "state": self.state,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_at, 3),
            "counters": self.counters.copy(),
            "labelled": {k: v.copy() for k, v in list(self.labelled.items())},
        }


class Watchdog:
    """Ends a process whose loop is stuck, so the container's restart policy starts it again.

    Why: docker (compose v1 and v2) never restarts a container for being *unhealthy*; only swarm replaces
    an unhealthy task. A loop that stopped turning (a bug, a wedged call) would otherwise sit there red
    for ever. So when the loop has not passed for ``limit`` seconds - far longer than /healthz's
    STALE_AFTER, and than any wait in a node, which all beat at least every POLL_MS - ``on_stuck`` runs
    (the process entry point logs one line and exits with EXIT_STUCK), and ``restart: on-failure``
    restarts the container. Only a stuck *loop* is worth a restart: a node without peers or without
    Redis is waiting for them, and a restart would not bring them (that stays a health verdict).

    A frozen process (``docker pause``, SIGSTOP, a starved machine) stops this thread too; when it
    wakes up after a tick much longer than asked, the loop gets a fresh ``limit`` from that moment, so
    a paused-then-resumed node is never killed for the pause. Started only for a node that is its own
    process (``python -m nodes ROLE``), never for nodes run as threads of a test or benchmark.
    """

    TICK = 1.0
    #: A tick this much longer than asked means the whole process was frozen, not the loop stuck.
    FROZEN_AFTER = 3.0

    def __init__(self, stats: Stats, limit: float, on_stuck: Callable[[float], None]) -> None:
        self.stats = stats
        self.limit = limit
        self.on_stuck = on_stuck
        self._tick = time.monotonic()
        self._thawed = float("-inf")  # when the process last woke from a freeze
        self._stop = threading.Event()

    def check(self, now: float) -> float | None:
        """One tick at ``now``: how long the loop has been stuck if that is over the limit, else None."""
        if now - self._tick >= self.TICK + self.FROZEN_AFTER:
            self._thawed = now
        self._tick = now
        if self.stats.state not in ("running", "done"):
            return None
        stuck = now - max(self.stats.last_beat, self._thawed)
        return now - self.stats.last_beat if stuck >= self.limit else None

    def _run(self) -> None:
        while not self._stop.wait(self.TICK):
            stuck = self.check(time.monotonic())
            if stuck is not None:
                self.on_stuck(stuck)
                return

    def start(self) -> Watchdog:
        if self.limit > 0:
            threading.Thread(target=self._run, name="watchdog", daemon=True).start()
        return self

    def close(self) -> None:
        self._stop.set()


class _Collector:
    """Exposes a :class:`Stats` snapshot to Prometheus without touching the hot path."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        snap = self.stats.snapshot()
        labels = ["node", "role"]
        up = GaugeMetricFamily("mpc_up", "1 while the node is healthy", labels=labels)
        up.add_metric([snap["node"], snap["role"]], 1.0 if self.stats.healthy() else 0.0)
        yield up
        for name, value in snap["counters"].items():
            fam = CounterMetricFamily(f"mpc_{name}", f"messages {name}", labels=labels)
            fam.add_metric([snap["node"], snap["role"]], value)
            yield fam
        for group, bucket in snap["labelled"].items():
            fam = CounterMetricFamily(f"mpc_{group}", f"messages {group} by key", labels=[*labels, "key"])
            for key, value in bucket.items():
                fam.add_metric([snap["node"], snap["role"], key], value)
            yield fam


def get_json(url: str, timeout: float = 2.0) -> dict[str, Any]:
    """GET one node's JSON document (``/status``, ``/healthz``); raises OSError when it does not answer."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def parse_target(arg: str) -> tuple[str, str]:
    """``[LABEL=]http://host:port[/status]`` -> (label, status URL); label "" when not given.

    How a person names a node on a command line or in DASHBOARD_NODES: the table and the dashboard share it.
    """
    label, sep, url = arg.partition("=")
    if not sep or "://" in label:
        label, url = "", arg
    url = url.rstrip("/")
    if not url.endswith("/status"):
        url += "/status"
    return label, url


class QuietHTTPServer(ThreadingHTTPServer):
    """socketserver prints a traceback to stderr for any error in a handler; a node logs one line instead.

    The usual one is harmless: the asker gave up before the answer was written (a healthcheck's
    timeout on a loaded machine, a poller's Ctrl-C) - a reset connection, counted under DEBUG only.
    """

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        gone = isinstance(exc, ConnectionError)
        event(
            log,
            "http_client_gone" if gone else "http_handler_error",
            logging.DEBUG if gone else logging.WARNING,
            client=str(client_address[0]) if client_address else "?",
            error=f"{type(exc).__name__}: {exc}",
        )


class StatusServer:
    """Serves the node's state over HTTP in a daemon thread."""

    def __init__(self, stats: Stats, extra: Callable[[], dict[str, Any]], host: str, port: int) -> None:
        self.stats = stats
        self.extra = extra
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(stats))  # type: ignore[arg-type]
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    ok, reason = server.stats.health()
                    body = {"ok": ok, "state": server.stats.state, "reason": reason}
                    self._send(200 if ok else 503, "application/json", json.dumps(body).encode())
                elif path == "/status":
                    self._send(200, "application/json", json.dumps(server.document()).encode())
                elif path == "/metrics":
                    self._send(200, "text/plain; version=0.0.4", generate_latest(registry))
                else:
                    self._send(404, "application/json", b'{"error": "try /healthz, /status or /metrics"}')

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence access logs
                pass

        self.httpd = QuietHTTPServer((host, port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="status-http", daemon=True
        )

    def document(self) -> dict[str, Any]:
        doc = self.stats.snapshot()
        ok, reason = self.stats.health()
        doc["health"] = {"ok": ok, "reason": reason}
        doc.update(self.extra())
        return doc

    def start(self) -> StatusServer:
        self.thread.start()
        event(log, "status_server", url=f"http://{self.httpd.server_address[0]}:{self.port}/status")
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
