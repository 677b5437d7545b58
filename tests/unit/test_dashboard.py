"""The dashboard's pure parts: rates, events, shares, discovery labels, and its place in the registry/compose."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from nodes import roles
from nodes.core import config
from nodes.dashboard import discovery, model
from nodes.dashboard.dashboard import label_for
from ops.compose import COMPOSE_FILE
from ops.local.plan import OBSERVERS, Plan


def doc(role: str, node: str, pid: int = 1, state: str = "running", ok: bool = True, **counters: int) -> dict:
    c = {"received": 0, "sent": 0, "rejected": 0, **counters}
    return {
        "node": node,
        "role": role,
        "pid": pid,
        "state": state,
        "counters": c,
        "labelled": {},
        "health": {"ok": ok, "reason": "ok" if ok else "0 of 1 peers connected for 20s"},
        "summary": f"{role} summary",
    }


def texts(tracker: model.Tracker) -> list[str]:
    return [e["text"] for e in tracker.events]


# --- rates and counter events ------------------------------------------------------------------------


def test_rate_is_growth_per_second_and_zero_without_history_or_after_a_restart() -> None:
    assert model.rate(100, 150, 0.5) == 100.0
    assert model.rate(None, 150, 1.0) == 0.0
    assert model.rate(100, 150, 0.0) == 0.0
    assert model.rate(100, 3, 1.0) == 0.0  # a restarted process counts from 0 again


def test_counter_events_name_what_grew() -> None:
    before = doc("client", "c", retried=1, failed=0)
    after = doc("client", "c", retried=4, failed=1, rejected=2)
    assert model.counter_events("client-1", before, after) == [
        ("bad", "client-1: rejected +2 (total 2)"),
        ("bad", "client-1: failed +1 (total 1)"),
        ("warn", "client-1: retried +3 (total 4)"),
    ]
    assert model.counter_events("client-1", None, after) == []
    assert model.counter_events("client-1", after, doc("client", "c", pid=2, retried=9)) == []  # a new process


def test_restart_is_a_new_pid_or_a_counter_going_down() -> None:
    assert model.restarted(doc("worker", "w", pid=1), doc("worker", "w", pid=2))
    assert model.restarted(doc("worker", "w", received=10), doc("worker", "w", received=2))
    assert not model.restarted(doc("worker", "w", received=10), doc("worker", "w", received=12))
    assert not model.restarted(None, doc("worker", "w"))


# --- the tracker: joined, lost, back, rates -----------------------------------------------------------


def test_tracker_rates_between_polls() -> None:
    t = model.Tracker()
    t.update(100.0, {"broker": doc("broker", "broker", received=10, sent=10)})
    t.update(101.0, {"broker": doc("broker", "broker", received=60, sent=40)})
    row = model.node_row(t.nodes["broker"])
    assert (row["in_rate"], row["out_rate"], row["state"], row["ok"]) == (50.0, 30.0, "running", True)
    assert texts(t) == ["broker joined (broker, running)"]


def test_tracker_marks_a_node_gone_from_discovery_lost_then_back() -> None:
    t = model.Tracker()
    w1, w2 = doc("worker", "worker-a", received=5), doc("worker", "worker-b")
    t.update(1.0, {"worker-1": w1, "worker-2": w2})
    t.update(2.0, {"worker-1": w1})  # worker-2 left DNS: killed or stopped
    row = model.node_row(t.nodes["worker-2"])
    assert (row["state"], row["lost"], row["ok"], row["in_rate"]) == ("lost", True, False, 0.0)
    assert "gone from discovery" in row["reason"]
    assert texts(t)[0] == "worker-2 lost: gone from discovery (stopped or removed)"
    t.update(3.0, {"worker-1": w1})
    assert sum("lost" in x for x in texts(t)) == 1  # said once, not at every poll
    t.update(10.0, {"worker-1": w1, "worker-2": w2})
    assert texts(t)[0] == "worker-2 is back (running) after 8s"
    assert not t.nodes["worker-2"].lost
    t.update(11.0, {"worker-1": w1})
    t.update(12.0, {"worker-1": w1, "worker-2": doc("worker", "worker-c", pid=7)})  # recreated: back, not "restarted"
    assert texts(t)[0] == "worker-2 is back (running) after 1s" and "restarted" not in " ".join(texts(t))


def test_a_node_found_before_it_answers_is_starting_not_lost() -> None:
    t = model.Tracker()
    t.update(1.0, {"worker-4": None})
    row = model.node_row(t.nodes["worker-4"])
    assert (row["state"], row["lost"], row["ok"]) == ("starting", False, False) and texts(t) == []
    t.update(2.0, {"worker-4": doc("worker", "w4")})
    assert texts(t) == ["worker-4 joined (worker, running)"] and model.node_row(t.nodes["worker-4"])["ok"]
    t.update(3.0, {"worker-5": None})
    t.update(3.0 + model.STARTING_GRACE_S + 1, {"worker-5": None})
    assert texts(t)[0] == "worker-5 lost: not answering"


def test_a_node_that_does_not_answer_is_lost_and_forgotten_after_keep_lost() -> None:
    t = model.Tracker(keep_lost=60)
    t.update(1.0, {"sink": doc("sink", "sink")})
    t.update(2.0, {"sink": None})
    assert model.node_row(t.nodes["sink"])["reason"] == "not answering"
    t.update(70.0, {})
    assert "sink" not in t.nodes


def test_health_and_state_changes_and_restarts_are_events() -> None:
    t = model.Tracker()
    t.update(1.0, {"zpub": doc("zpub", "zpub")})
    t.update(2.0, {"zpub": doc("zpub", "zpub", ok=False)})
    t.update(3.0, {"zpub": doc("zpub", "zpub", state="done")})
    t.update(4.0, {"zpub": doc("zpub", "zpub", pid=9, state="done")})
    assert texts(t)[:4] == [
        "zpub restarted: a new process, its counters start again",
        "zpub healthy again",
        "zpub: running -> done",
        "zpub unhealthy: 0 of 1 peers connected for 20s",
    ]


def test_events_are_bounded_newest_first() -> None:
    t = model.Tracker(max_events=3)
    for i in range(10):
        t.event(float(i), "info", f"e{i}")
    assert texts(t) == ["e9", "e8", "e7"]


# --- load balance -------------------------------------------------------------------------------------


def tracker_with_balance() -> model.Tracker:
    broker = doc("broker", "broker")
    broker["labelled"] = {"replies_by_worker": {"worker-aaa": 30, "worker-bbb": 10}}
    client = doc("client", "client-x")
    client["labelled"] = {"replies_by_worker": {"worker-aaa": 3, "worker-bbb": 1}}
    sink = doc("sink", "sink")
    sink["batches"] = {
        "old": {"size": 5, "distinct": 5, "complete": True, "by_worker": {"pw-1": 5}},
        "new": {"size": 9, "distinct": 4, "complete": False, "by_worker": {"pw-1": 1, "pw-2": 3}},
    }
    sub = doc("subscriber", "sub-z")
    sub["labelled"] = {"received_by_topic": {"catA": 4, "catB": 2}, "plain_by_topic": {"catA": 1}}
    t = model.Tracker()
    t.update(
        1.0,
        {
            "broker": broker,
            "client-1": client,
            "worker-1": doc("worker", "worker-aaa"),
            "worker-2": doc("worker", "worker-bbb"),
            "sink": sink,
            "subscriber-1": sub,
        },
    )
    return t


def test_balance_uses_the_broker_the_clients_the_latest_batch_and_subscriber_topics() -> None:
    b = model.balance(tracker_with_balance())
    assert b["reqrep"]["broker"] == [
        {"key": "worker-aaa", "label": "worker-1", "count": 30, "share": 0.75},
        {"key": "worker-bbb", "label": "worker-2", "count": 10, "share": 0.25},
    ]
    assert [r["count"] for r in b["reqrep"]["clients"]] == [3, 1]
    assert (b["pipeline"]["batch"], b["pipeline"]["distinct"], b["pipeline"]["complete"]) == ("new", 4, False)
    assert {r["key"]: r["count"] for r in b["pipeline"]["by_worker"]} == {"pw-1": 1, "pw-2": 3}
    assert b["pubsub"] == [{"label": "subscriber-1", "role": "subscriber", "topics": {"catA": 5, "catB": 2}}]


def test_shares_of_nothing_are_zero() -> None:
    assert model.shares({}) == []
    assert model.shares({"a": 0}) == [{"key": "a", "label": "a", "count": 0, "share": 0.0}]


def test_view_groups_accounting_by_pattern_and_counts() -> None:
    v = model.view(tracker_with_balance(), 5.0, {"prometheus": None})
    assert v["counts"] == {"nodes": 6, "ok": 6, "lost": 0}
    assert [r["label"] for r in v["accounting"]["reqrep"]] == ["broker", "client-1", "worker-1", "worker-2"]
    assert v["accounting"]["pipeline"] == [{"label": "sink", "summary": "sink summary", "ok": True}]
    assert v["prometheus"] is None and v["topology"]["reqrep"] == [["client"], ["broker"], ["worker"]]


def test_the_topology_covers_every_role_of_the_registry() -> None:
    assert set(model.PATTERN_OF) == set(roles.NAMES)
    assert all(model.PATTERN_OF[name] == role.pattern for name, role in roles.ROLES.items())


# --- discovery ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "hostname", "label"),
    [
        ("worker", "mpc-worker-2.mpc_back", "worker-2"),
        ("worker", "mpc_worker_3.mpc_back", "worker-3"),
        ("worker", "mpc-it-ab12cd-worker-11.mpc-it-ab12cd_back", "worker-11"),
        ("worker", "mpc-pipeworker-1.mpc_pipeline", None),
        ("sink", None, None),
        ("sink", "172.18.0.5", None),
    ],
)
def test_replica_label_from_the_reverse_name(service: str, hostname: str | None, label: str | None) -> None:
    assert discovery.replica_label(service, hostname) == label


def test_discovery_resolves_every_service_and_labels_replicas() -> None:
    addresses = {"worker": ["10.0.0.3", "10.0.0.2"], "sink": ["10.0.1.9"], "client": []}
    names = {"10.0.0.2": "p-worker-1.p_back", "10.0.0.3": "p-worker-2.p_back"}
    d = discovery.Discovery(
        ["worker", "sink", "client"], 8000, ["x=http://127.0.0.1:9/status"], resolve=addresses.get, lookup=names.get
    )
    try:
        got = [(t.service, t.label, t.url) for t in d.targets()]
    finally:
        d.close()
    assert got == [
        ("", "x", "http://127.0.0.1:9/status"),
        ("worker", "worker-2", "http://10.0.0.3:8000/status"),
        ("worker", "worker-1", "http://10.0.0.2:8000/status"),
        ("sink", None, "http://10.0.1.9:8000/status"),
    ]


def test_static_targets_and_labels() -> None:
    assert discovery.parse_static(["broker=http://127.0.0.1:17010", "http://h:1/status"]) == [
        discovery.Target("http://127.0.0.1:17010/status", "", "broker"),
        discovery.Target("http://h:1/status", "", None),
    ]
    target = discovery.Target("http://10.0.1.9:8000/status", "sink")
    assert label_for(target, {"node": "sink"}) == "sink"
    assert label_for(target, None) == "sink@10.0.1.9:8000"


# --- settings, compose and the local plan -------------------------------------------------------------


def test_settings_parse_and_name_the_variable() -> None:
    s = roles.load("dashboard", environ={"DASHBOARD_SERVICES": "broker, worker", "DASHBOARD_NODES": "a=http://h:1"})
    assert (s.services, s.nodes, s.http_port, s.interval) == (("broker", "worker"), ("a=http://h:1",), 8080, 1.0)
    with pytest.raises(config.ConfigError, match=r"^DASHBOARD_NODES='ftp://x' has 'ftp://x'"):
        roles.load("dashboard", environ={"DASHBOARD_NODES": "ftp://x"})


def test_compose_dashboard_watches_every_other_role_and_is_published_on_localhost_only() -> None:
    service: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["dashboard"]
    env = service["environment"]
    assert set(env["DASHBOARD_SERVICES"].split(",")) == set(roles.NAMES) - {"dashboard"}
    assert set(service["networks"]) == {"front", "back", "pipeline", "pubsub", "sockets"}
    assert all(p.startswith("127.0.0.1:") for p in service["ports"])
    assert "127.0.0.1:${DASHBOARD_PORT:-8080}:8080" in service["ports"] and env["DASHBOARD_PORT"] == "8080"


def test_local_plan_gives_the_dashboard_every_node_and_a_port() -> None:
    plan = Plan(base=20000, workers=2)
    assert OBSERVERS == ("dashboard",) and "dashboard" in plan.nodes() and "dashboard" not in plan.status_urls()
    env = plan.role_env("dashboard", "pw")
    nodes = dict(item.split("=", 1) for item in env["DASHBOARD_NODES"].split(","))
    assert nodes == plan.status_urls() and "worker-2" in nodes
    assert env["DASHBOARD_PORT"] == "20007" and env["DASHBOARD_HOST"] == "127.0.0.1"
    assert plan.ports()[20007] == "dashboard endpoint" and plan.dashboard_url == "http://127.0.0.1:20007/"
    assert len(plan.ports()) == len(set(plan.ports()))


# --- make demo's progress bars --------------------------------------------------------------------------


def test_demo_progress_counts_what_each_pattern_has_done() -> None:
    from ops.cluster import batch_progress

    clients = [{"counters": {"replied": 40, "failed": 2}}, {"counters": {"replied": 50}}]
    sink = {"batches": {"demo-1": {"distinct": 7, "size": 10}}}
    assert batch_progress("client", clients, sink, "demo-1") == 92
    assert batch_progress("ventilator", [{"counters": {"sent": 10}}], sink, "demo-1") == 7  # in the ledger, not sent
    assert batch_progress("ventilator", [], None, "demo-1") == 0
    assert batch_progress("zpub", [{"counters": {"sent": 33}}], sink, "demo-1") == 33
