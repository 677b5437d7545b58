"""nodes.core.status (Stats, the HTTP server) and ops.table (the status table built from /status documents)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console

from nodes.core import status
from nodes.core.status import Stats, StatusServer
from ops import table
from tests.support import free_port


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# --- Stats ------------------------------------------------------------------------------------------


def test_snapshot_has_the_documented_keys() -> None:
    stats = Stats("worker-1", "worker")
    stats.incr("received")
    stats.incr("received", 4)
    stats.incr("reconnects")
    stats.incr_label("replies_by_worker", "w1")
    stats.incr_label("replies_by_worker", "w1", 2)
    stats.incr_label("replies_by_worker", "w2")
    snap = stats.snapshot()
    assert set(snap) == {"node", "role", "state", "pid", "uptime_s", "counters", "labelled"}
    assert (snap["node"], snap["role"], snap["state"], snap["pid"]) == ("worker-1", "worker", "starting", os.getpid())
    assert snap["counters"] == {"received": 5, "sent": 0, "rejected": 0, "reconnects": 1}
    assert snap["labelled"] == {"replies_by_worker": {"w1": 3, "w2": 1}}
    assert 0 <= snap["uptime_s"] < 60


def test_snapshot_is_a_copy() -> None:
    stats = Stats("n", "sink")
    stats.incr_label("g", "k")
    snap = stats.snapshot()
    stats.incr("received")
    stats.incr_label("g", "k")
    assert snap["counters"]["received"] == 0 and snap["labelled"]["g"]["k"] == 1


def test_healthy_needs_a_running_state_and_a_recent_beat() -> None:
    stats = Stats("n", "client")
    assert not stats.healthy()  # starting
    for state, ok in (("running", True), ("done", True), ("stopping", False)):
        stats.state = state
        assert stats.healthy() is ok, state
    stats.state = "running"
    stats.last_beat = time.monotonic() - status.STALE_AFTER - 1
    assert not stats.healthy()
    stats.beat()
    assert stats.healthy()


# --- the HTTP server ----------------------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[tuple[Stats, str]]:
    stats = Stats("broker", "broker")
    server = StatusServer(stats, lambda: {"mode": "proxy", "workers_connected": 2}, "127.0.0.1", 0).start()
    assert server.port != 0  # port 0 = any free port, reported back
    try:
        yield stats, f"http://127.0.0.1:{server.port}"
    finally:
        server.close()


def test_healthz_follows_state_and_staleness(served: tuple[Stats, str]) -> None:
    stats, url = served
    code, body = get(url + "/healthz")
    assert code == 503 and json.loads(body) == {"ok": False, "state": "starting", "reason": "state is starting"}
    stats.state = "running"
    assert get(url + "/healthz") == (200, json.dumps({"ok": True, "state": "running", "reason": "ok"}))
    stats.problem = lambda: "0 of 1 peers connected for 20s"  # the node cannot do its job
    code, body = get(url + "/healthz")
    assert code == 503 and json.loads(body)["reason"] == "0 of 1 peers connected for 20s"
    assert json.loads(get(url + "/status")[1])["health"] == {"ok": False, "reason": "0 of 1 peers connected for 20s"}
    stats.problem = lambda: None
    stats.last_beat = time.monotonic() - status.STALE_AFTER - 1  # the loop stopped passing
    code, body = get(url + "/healthz")
    assert code == 503 and json.loads(body)["reason"].startswith("loop has not passed for")


def test_status_is_the_snapshot_plus_extra(served: tuple[Stats, str]) -> None:
    stats, url = served
    stats.state = "running"
    stats.incr("received", 3)
    stats.incr_label("replies_by_worker", "worker-1", 3)
    code, body = get(url + "/status?pretty=1")  # the query string is ignored
    doc = json.loads(body)
    assert code == 200
    assert doc["counters"] == {"received": 3, "sent": 0, "rejected": 0}
    assert doc["labelled"] == {"replies_by_worker": {"worker-1": 3}}
    assert (doc["node"], doc["role"], doc["state"], doc["mode"], doc["workers_connected"]) == (
        "broker",
        "broker",
        "running",
        "proxy",
        2,
    )


def test_metrics_are_prometheus_text(served: tuple[Stats, str]) -> None:
    stats, url = served
    stats.state = "running"
    stats.incr("received", 7)
    stats.incr_label("replies_by_worker", "worker-1", 2)
    code, body = get(url + "/metrics")
    assert code == 200
    assert 'mpc_received_total{node="broker",role="broker"} 7.0' in body
    assert 'mpc_rejected_total{node="broker",role="broker"} 0.0' in body
    assert 'mpc_up{node="broker",role="broker"} 1.0' in body
    assert 'mpc_replies_by_worker_total{key="worker-1",node="broker",role="broker"} 2.0' in body


def test_unknown_path_is_404(served: tuple[Stats, str]) -> None:
    code, body = get(served[1] + "/nope")
    assert code == 404 and "/healthz" in body


# --- the status table --------------------------------------------------------------------------------


def doc(node: str, role: str, received: int = 0, state: str = "running", **extra: Any) -> dict[str, Any]:
    counters = {"received": received, "sent": received, "rejected": 0, **extra.pop("counters", {})}
    return {"node": node, "role": role, "state": state, "counters": counters, "labelled": {}, **extra}


def text_of(rows: list[table.Row]) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(table.render(rows))
    return console.export_text()


def test_share_is_per_role_and_only_for_roles_with_several_nodes() -> None:
    rows = [
        ("w1", doc("w1", "worker", 30)),
        ("w2", doc("w2", "worker", 10)),
        ("w3", doc("w3", "worker", 0)),
        ("sink", doc("sink", "sink", 99)),
        ("gone", None),
    ]
    assert table.shares(rows) == {"w1": 0.75, "w2": 0.25, "w3": 0.0}
    fan_out = [("s1", doc("s1", "subscriber", 5)), ("s2", doc("s2", "subscriber", 5))]
    assert table.shares(fan_out) == {}  # every subscriber gets a full copy: no share to show
    assert table.shares([("a", doc("a", "worker")), ("b", doc("b", "worker"))]) == {}  # nothing received yet


def test_render_shows_counts_share_health_peers_and_summary() -> None:
    rows = [
        ("client", doc("client", "client", state="done", summary="replied 40/40 failed 0 retried 1", peers=None)),
        ("broker", doc("broker", "broker", 40, peers=2, summary="proxy: 2 workers, 40 forwarded")),
        ("worker-1", doc("worker-1", "worker", 30, counters={"rejected": 2})),
        ("worker-2", doc("worker-2", "worker", 10)),
        ("subscriber-1", doc("subscriber-1", "subscriber", 3, summary="catA 2 catB 1 gaps 0")),
        ("zsub", None),
    ]
    text = text_of(rows)
    header = next(line for line in text.splitlines() if "node" in line and "summary" in line)
    assert [c.strip() for c in header.split("┃")[1:-1]][-2:] == ["peers", "summary"]
    lines = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:-1]]
        for line in text.splitlines()
        if line.startswith("│")
    }
    assert lines["client"][-2:] == ["", "replied 40/40 failed 0 retried 1"] and lines["client"][2] == "done"
    assert lines["broker"][-2:] == ["2", "proxy: 2 workers, 40 forwarded"]
    assert lines["worker-1"][-3:] == ["75%", "", ""] and lines["worker-1"][6] == "2"
    assert lines["worker-2"][-3] == "25%"
    assert lines["subscriber-1"][-1] == "catA 2 catB 1 gaps 0"
    assert "unreachable" in lines["zsub"] and "down" in lines["zsub"]


def test_peers_and_summary_are_the_same_keys_for_every_role() -> None:
    """No role is special: the same two keys give the same cells whatever the role says it is."""
    for role in ("client", "broker", "sink", "zpub", "a-role-added-tomorrow"):
        d = doc("n", role, peers=3, summary="said in words")
        assert (table.peers(d), table.detail(d)) == ("3", "said in words"), role
    assert (table.peers(doc("n", "sink")), table.detail(doc("n", "sink"))) == ("", "")


def test_render_survives_missing_and_odd_keys() -> None:
    odd = [
        ("a", {}),
        ("b", {"role": "sink", "batches": "not a dict", "counters": {"received": "many"}, "peers": "many"}),
        ("c", {"role": "client", "counters": None, "labelled": None, "summary": 5, "peers": True}),
        ("d", {"role": "subscriber", "labelled": {"received_by_topic": {}}, "summary": None, "peers": [1, 2]}),
    ]
    text = text_of(odd)
    lines = [line for line in text.splitlines() if line.startswith("│")]
    assert len(lines) == 4 and all("unhealthy" in line for line in lines)  # no state: not healthy
    assert all(table.peers(d) == "" and table.detail(d) == "" for _, d in odd)


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("http://127.0.0.1:8001", ("", "http://127.0.0.1:8001/status")),
        ("http://127.0.0.1:8001/", ("", "http://127.0.0.1:8001/status")),
        ("broker=http://h:1/status", ("broker", "http://h:1/status")),
    ],
)
def test_parse_target(arg: str, expected: tuple[str, str]) -> None:
    assert table.parse_target(arg) == expected


def test_main_exit_codes_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    stats = Stats("worker-9", "worker")
    server = StatusServer(stats, dict, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        assert table.main([url]) == 1  # starting: unhealthy
        capsys.readouterr()
        stats.state = "running"
        assert table.main([url, f"named={url}"]) == 0
        out = capsys.readouterr().out
        assert "worker-9" in out and "named" in out  # unlabelled rows take the node's own name
        assert table.main([url], as_json=True) == 0
        docs = json.loads(capsys.readouterr().out)
        assert docs["worker-9"]["_healthz"] is True and docs["worker-9"]["role"] == "worker"
        dead = f"gone=http://127.0.0.1:{free_port()}"
        assert table.main([url, dead]) == 1
        assert "not healthy: gone" in capsys.readouterr().err
    finally:
        server.close()


def test_fetch_keeps_order_and_is_bounded() -> None:
    port = free_port()
    started = time.monotonic()
    rows = table.fetch([(f"n{i}", f"http://127.0.0.1:{port}/status") for i in range(20)])
    assert [label for label, _ in rows] == [f"n{i}" for i in range(20)]
    assert all(d is None for _, d in rows)
    assert time.monotonic() - started < table.TIMEOUT * 2


def test_the_table_says_why_a_node_is_unhealthy() -> None:
    doc = {"summary": "mode proxy", "health": {"ok": False, "reason": "0 of 1 peers connected for 20s"}}
    assert table.detail(doc) == "UNHEALTHY: 0 of 1 peers connected for 20s; mode proxy"
    assert table.detail({"summary": "fine", "health": {"ok": True, "reason": "ok"}}) == "fine"


# --- Watchdog ---------------------------------------------------------------------------------------


def watched(state: str = "running", limit: float = 10.0) -> tuple[Stats, status.Watchdog]:
    stats = Stats("n", "worker")
    stats.state = state
    return stats, status.Watchdog(stats, limit, lambda _stuck: None)


def test_the_watchdog_fires_only_after_the_loop_missed_its_limit() -> None:
    stats, dog = watched()
    t = stats.last_beat
    for k in range(1, 10):  # ticks every second, the loop never beats again
        assert dog.check(t + k) is None
    assert dog.check(t + 10) == pytest.approx(10)


def test_a_beating_loop_is_never_stuck() -> None:
    stats, dog = watched()
    t = stats.last_beat
    for k in range(1, 100):
        stats.last_beat = t + k - 0.5
        assert dog.check(t + k) is None


def test_a_frozen_process_gets_a_fresh_limit_after_it_thaws() -> None:
    stats, dog = watched()
    t = stats.last_beat
    assert dog.check(t + 1) is None
    assert dog.check(t + 600) is None  # docker pause for ten minutes: this tick came 599 s late
    for k in range(601, 610):  # the thawed loop has its whole limit again ...
        assert dog.check(t + k) is None
    assert dog.check(t + 610) == pytest.approx(610)  # ... and is judged after it


def test_a_node_starting_or_stopping_is_not_judged() -> None:
    for state in ("starting", "stopping"):
        stats, dog = watched(state)
        assert dog.check(stats.last_beat + 100) is None
