"""Per-node context: a busy STATUS_PORT is one config line and exit 2; nodes in threads log as themselves."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import socket
import subprocess
import sys
import threading

from nodes import roles
from nodes.core.log import JsonFormatter, event, setup
from tests.support import ROOT


def test_a_busy_status_port_is_one_line_naming_it_and_exit_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {"STATUS_PORT": str(port), "BROKER_BACKEND": "tcp://127.0.0.1:1", "PATH": "/usr/bin:/bin"}
        proc = subprocess.run(
            [sys.executable, "-m", "nodes", "worker"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("config error: STATUS_PORT=") and str(port) in lines[0]


def test_nodes_run_as_threads_log_under_their_own_names() -> None:
    setup("process", "-")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().handlers[:] = [handler]
    sink = roles.get("sink")
    env = [{"NODE_NAME": f"sink-{i}", "STATUS_PORT": "0", "SINK_BIND": f"inproc://sink-{i}"} for i in range(2)]
    nodes = [sink.node_class()(roles.load("sink", e)) for e in env]
    threads = [threading.Thread(target=n.run) for n in nodes]
    for t in threads:
        t.start()
    for n in nodes:
        n.stop.set()
    for t in threads:
        t.join(10)
    event(logging.getLogger("test"), "after")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    started = sorted(line["node"] for line in lines if line["event"] == "started")
    assert started == ["sink-0", "sink-1"]
    assert lines[-1]["node"] == "process"


def test_a_node_short_of_peers_turns_unhealthy_after_the_grace(monkeypatch) -> None:
    env = {"NODE_NAME": "s", "SINK_BIND": "inproc://s", "PEER_GRACE": "3600"}
    node = roles.get("sink").node_class()(roles.load("sink", env))
    node.stats.state = "running"
    have = {"n": 0}
    monkeypatch.setattr(node, "required_peers", lambda: 1)
    monkeypatch.setattr(node, "peer_count", lambda: have["n"])
    assert node.stats.health() == (True, "ok")  # inside the grace
    monkeypatch.setattr(node, "settings", dataclasses.replace(node.settings, peer_grace=0.0))
    ok, reason = node.stats.health()
    assert not ok and reason.startswith("0 of 1 peers connected for")
    have["n"] = 1
    assert node.stats.health() == (True, "ok")
