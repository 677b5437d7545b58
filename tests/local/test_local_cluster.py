"""``python -m ops.local up|status|down``: the whole cluster under supervisord, on a private port range.

Each test gets its own state directory (LOCAL_STATE_DIR) and BASE_PORT, so it never touches a cluster
a person started with ``make up-local``; ``down`` stops only the supervisord that this ``up`` started.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from supervisor.options import ServerOptions

from nodes import roles
from ops import local
from tests.support import ROOT, get_json, wait_until

WORKERS, PIPE_WORKERS, SUBSCRIBERS = 2, 2, 2
REQUESTS, TASKS, MESSAGES = 60, 60, 40


def free_base(plan_of: Any) -> int:
    """A BASE_PORT whose whole port plan is free (below the ephemeral range, so nothing grabs it meanwhile)."""
    for _ in range(50):
        base = random.randrange(20000, 32000, 100)
        try:
            local.check_ports_free(plan_of(base))
            return base
        except local.LocalError:
            continue
    raise AssertionError("no free port range for the local cluster after 50 tries")


class LocalCluster:
    def __init__(self, state: Path, base: int) -> None:
        self.state = state
        self.env = {**os.environ, "LOCAL_STATE_DIR": str(state), "BASE_PORT": str(base), "PYTHONPATH": str(ROOT)}

    def run(self, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ops.local", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def nodes(self) -> dict[str, str]:
        return json.loads((self.state / "nodes.json").read_text())["nodes"]

    def supervisord_pid(self) -> int:
        return int((self.state / "supervisord.pid").read_text())


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    def plan_of(base: int) -> local.Plan:
        return local.Plan(base=base, workers=WORKERS, pipe_workers=PIPE_WORKERS, subscribers=SUBSCRIBERS)

    c = LocalCluster(tmp_path / "state", free_base(plan_of))
    yield c
    c.run("down", timeout=60)  # idempotent: "not running" when the test already stopped it


def test_up_delivers_exact_counts_then_down_stops_everything(cluster: LocalCluster) -> None:
    up = cluster.run(
        "up",
        *("--workers", str(WORKERS), "--pipe-workers", str(PIPE_WORKERS), "--subscribers", str(SUBSCRIBERS)),
        *("--requests", str(REQUESTS), "--tasks", str(TASKS), "--messages", str(MESSAGES), "--rate", "0"),
    )
    assert up.returncode == 0, f"up failed:\n{up.stdout}\n{up.stderr}"
    nodes = cluster.nodes()
    assert set(nodes) == {
        *("client", "broker", "worker-1", "worker-2", "ventilator", "pipeworker-1", "pipeworker-2", "sink"),
        *("publisher", "subscriber-1", "subscriber-2", "zpub", "zsub"),
        *("udpserver", "udpclient", "tcpserver", "tcpclient"),
    }
    assert all(name in up.stdout for name in nodes)  # up ends by printing the table

    def done(name: str) -> dict[str, Any]:
        doc = get_json(nodes[name])
        return doc if doc["state"] == "done" else {}

    client = wait_until(lambda: done("client"), 60, "client state=done")
    counters = client["counters"]
    assert client["requests"] == REQUESTS
    assert counters["replied"] == REQUESTS, counters
    assert counters["sent"] == REQUESTS and counters["failed"] == 0, counters
    assert sum(client["labelled"]["replies_by_worker"].values()) == REQUESTS

    def batch_complete() -> dict[str, Any]:
        batches = get_json(nodes["sink"]).get("batches") or {}
        return next((b for b in batches.values() if b.get("complete")), {})

    batch = wait_until(batch_complete, 60, f"sink ledger of {TASKS} tasks complete")
    assert (batch["size"], batch["distinct"], batch["missing"], batch["duplicates"]) == (TASKS, TASKS, 0, 0)

    for pub, subs in (("publisher", ["subscriber-1", "subscriber-2"]), ("zpub", ["zsub"])):
        assert wait_until(lambda pub=pub: done(pub), 60, f"{pub} state=done")["counters"]["sent"] == MESSAGES
        for sub in subs:
            wait_until(lambda sub=sub: get_json(nodes[sub])["counters"]["received"] == MESSAGES, 30, f"{sub} got all")
            counters = get_json(nodes[sub])["counters"]
            assert (counters["received"], counters["gaps"], counters["rejected"]) == (MESSAGES, 0, 0), (sub, counters)

    for echo in ("udpclient", "tcpclient"):  # plain sockets: every request echoed (loopback)
        counters = wait_until(lambda echo=echo: done(echo), 60, f"{echo} state=done")["counters"]
        assert (counters["sent"], counters["answered"], counters["lost"]) == (REQUESTS, REQUESTS, 0), (echo, counters)

    status = cluster.run("status")
    assert status.returncode == 0, f"{status.stdout}\n{status.stderr}"
    assert "supervisord: pid" in status.stdout and "worker-2" in status.stdout

    supervisord = cluster.supervisord_pid()
    node_pids = [get_json(url)["pid"] for url in nodes.values()]
    down = cluster.run("down", timeout=60)
    assert down.returncode == 0, f"{down.stdout}\n{down.stderr}"
    wait_until(lambda: not local.alive(supervisord), 10, f"supervisord {supervisord} to exit")
    assert [pid for pid in node_pids if local.alive(pid)] == []

    after = cluster.run("status")
    assert after.returncode == 1 and "NOT RUNNING" in after.stdout


def test_up_refuses_a_busy_port_and_starts_nothing(cluster: LocalCluster) -> None:
    busy = int(cluster.env["BASE_PORT"]) + local.ENDPOINT_OFFSETS["frontend"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", busy))
        s.listen()
        up = cluster.run("up", "--workers", "1", "--pipe-workers", "1", "--subscribers", "1", timeout=30)
    assert up.returncode == 1
    assert f"port {busy} (frontend endpoint) is not free" in up.stderr
    assert not (cluster.state / "supervisord.pid").exists()


@pytest.mark.parametrize("base", [local.DEFAULT_BASE_PORT, 5555])
def test_generated_conf_matches_the_port_plan(tmp_path: Path, base: int) -> None:
    """supervisor's own parser expands the conf to exactly the nodes, ports and settings of the plan."""
    state = local.State(tmp_path)
    state.logs.mkdir()
    plan = local.Plan(base=base, workers=3, pipe_workers=2, subscribers=4)
    state.conf.write_text(local.supervisord_conf(plan, state, "pw"))
    options = ServerOptions()
    options.realize(args=["-c", str(state.conf)])
    procs = {p.name: (g.name, p) for g in options.process_group_configs for p in g.process_configs}
    assert set(procs) == {"redis", *plan.nodes()}
    for name, port in plan.nodes().items():
        group, proc = procs[name]
        env = proc.environment
        assert (env["NODE_NAME"], int(env["STATUS_PORT"])) == (name, port)
        assert proc.stdout_logfile == str(state.log_of(name))
        one_shot = plan.roles()[name] in roles.one_shot()
        assert (group == local.BATCH_GROUP, proc.autostart, env.get("HOLD")) == (
            (True, False, "1") if one_shot else (False, True, None)
        ), name
        wired = {*roles.get(plan.roles()[name]).binds, *roles.get(plan.roles()[name]).connects}
        assert wired <= set(env), (name, wired - set(env))  # every endpoint a role binds or connects is planned
    assert procs["ventilator"][1].environment["MIN_PIPEWORKERS"] == "2"
    assert procs["publisher"][1].environment["MIN_SUBSCRIBERS"] == "4"
    assert procs["subscriber-4"][1].environment["REDIS_PASSWORD"] == "pw"
    assert len(set(plan.ports())) == len(plan.nodes()) + len(local.ENDPOINT_OFFSETS)  # no port used twice
