"""dashboard: a read-only web page of the running cluster, served by the cluster itself; binds DASHBOARD_PORT.

Every DASHBOARD_INTERVAL (1 s) it finds the nodes (:mod:`nodes.dashboard.discovery`: DNS names in
compose, a list of status URLs from the local port plan), GETs every node's ``/status`` at once,
and feeds the documents to :class:`nodes.dashboard.model.Tracker` (rates, events, load balance).
Its page server (stdlib ``http.server``, no framework) answers:

- ``/``             the page (:mod:`nodes.dashboard.page`: inline HTML/CSS/JS, no asset from anywhere);
- ``/api/cluster``  the one JSON document the page polls every second.

Why polling one JSON endpoint rather than server-sent events: a browser's fetch every second is as
live as the poll behind it, every request is independent (no connection to keep per viewer), and
a person or a test can read exactly what the page shows with ``curl``.

Read-only: it only GETs ``/status``; it connects to nothing and binds only its page and status
servers. It is an observer, so it needs no peers to be healthy.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any

from nodes.core import config
from nodes.core.lifecycle import Node
from nodes.core.log import event
from nodes.core.status import QuietHTTPServer, get_json
from nodes.dashboard.discovery import Discovery, Target, url_of
from nodes.dashboard.model import Tracker, view
from nodes.dashboard.page import PAGE

log = logging.getLogger(__name__)

#: Seconds one /status may take: a poll is over well within a second even when nodes hang.
FETCH_TIMEOUT = 0.8


def fetch(target: Target) -> dict[str, Any] | None:
    try:
        doc = get_json(target.url, FETCH_TIMEOUT)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def label_for(target: Target, doc: dict[str, Any] | None) -> str:
    """The target's own label, else the node's name, else where it is."""
    if target.label:
        return target.label
    if doc and doc.get("node"):
        return str(doc["node"])
    return f"{target.service or 'node'}@{target.url.split('://', 1)[-1].rsplit('/', 1)[0]}"


class Dashboard(Node):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        s = self.settings
        self.tracker = Tracker()
        self.discovery = Discovery(s.services, s.node_port, s.nodes)
        self.pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="dashboard-fetch")
        self._view: bytes = b"{}"
        self._counts = {"nodes": 0, "ok": 0, "lost": 0}
        self.page_url = ""
        self.own_status = ""

    def peer_count(self) -> int:
        return self._counts["nodes"] - self._counts["lost"]

    def summary(self) -> str:
        c = self._counts
        return f"watching {c['nodes']} nodes: {c['ok']} healthy, {c['lost']} lost; page {self.page_url}"

    def extra_status(self) -> dict[str, Any]:
        return {"page": self.page_url, "polls": self.tracker.polls}

    def poll(self) -> None:
        targets = [t for t in self.discovery.targets() if t.url != self.own_status]
        docs = list(self.pool.map(fetch, targets))
        observed: dict[str, dict[str, Any] | None] = {}
        for target, doc in zip(targets, docs, strict=True):
            label = label_for(target, doc)
            if label not in observed or observed[label] is None:
                observed[label] = doc
        now = time.time()
        self.tracker.update(now, observed)
        extra = {"interval": self.settings.interval, "prometheus": self.settings.prometheus_url or None}
        doc = view(self.tracker, now, extra)
        self._view, self._counts = json.dumps(doc).encode(), doc["counts"]

    def serve(self) -> int:
        s = self.settings
        if not s.services and not s.nodes:
            raise config.ConfigError("dashboard: give DASHBOARD_SERVICES (DNS names) and/or DASHBOARD_NODES (URLs)")
        try:
            httpd = QuietHTTPServer((s.http_host, s.http_port), self._handler())
        except OSError as exc:
            raise config.ConfigError(
                f"DASHBOARD_PORT={s.http_port} cannot be bound on {s.http_host}: {exc.strerror or exc}"
            ) from None
        httpd.daemon_threads = True
        self.page_url = f"http://{s.http_host}:{httpd.server_address[1]}/"
        if self.status_server is not None:
            self.own_status = url_of(s.status_host, self.status_server.port)
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        thread.start()
        event(log, "dashboard", url=self.page_url, services=",".join(s.services), nodes=len(s.nodes))
        try:
            while self.running():
                started = time.monotonic()
                try:
                    self.poll()
                except Exception:  # a surprise in one poll must not take the page down; the next poll retries
                    log.exception("dashboard poll failed")
                self.stop.wait(max(0.05, s.interval - (time.monotonic() - started)))
        finally:
            httpd.shutdown()
            httpd.server_close()
            self.discovery.close()
            self.pool.shutdown(wait=False, cancel_futures=True)
        return 0

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0]
                if path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", PAGE)
                elif path == "/api/cluster":
                    self._send(200, "application/json", node._view)
                else:
                    self._send(404, "application/json", b'{"error": "try / or /api/cluster"}')

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence access logs
                pass

        return Handler
