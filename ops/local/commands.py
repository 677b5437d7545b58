"""``up``, ``down`` and ``status`` of the local cluster.

Start-up is two handshakes rather than sleeps: first the servers (redis and every long-running role)
until every /healthz answers ok, then the one-shot batch roles with ``HOLD=1`` so they keep showing
their final counts. The batch roles still wait for their own peers (``MIN_PIPEWORKERS``,
``MIN_SUBSCRIBERS``). Any failure stops what started and leaves the logs for a person to read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import xmlrpc.client
from collections.abc import Callable

from nodes import roles
from ops.harness import ROOT, healthz_ok, redis_conf, redis_ok
from ops.local.plan import ENDPOINT_OFFSETS, SOCKET_TRANSPORTS, LocalError, Plan, tcp
from ops.local.supervisor import BATCH_GROUP, State, alive, supervisor_env, supervisord_conf, wait_healthy
from ops.wait import TimedOut, WaitError, tail, until


def check_ports_free(plan: Plan) -> None:
    for port, what in sorted(plan.ports().items()):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError as exc:
                raise LocalError(
                    f"port {port} ({what}) is not free: {exc.strerror}; set BASE_PORT to move the whole plan"
                ) from None


def _write_private(path: os.PathLike[str], text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def prepare(plan: Plan, state: State) -> str:
    """Check the plan, the ports and that nothing runs; write the configs and nodes.json. Returns the password."""
    plan.validate()
    if len(str(state.sock)) > 100:
        raise LocalError(f"state dir path too long for a unix socket: {state.sock}; set LOCAL_STATE_DIR shorter")
    if (pid := state.pid()) is not None:
        raise LocalError(f"already running (supervisord pid {pid}, {state.conf}); run `down` first to change it")
    check_ports_free(plan)
    for d in (state.root, state.logs, state.redis_dir):
        d.mkdir(parents=True, exist_ok=True)
    for stale in (state.sock, state.pidfile):  # left by a supervisord that did not stop cleanly
        stale.unlink(missing_ok=True)
    password = secrets.token_hex(16)
    _write_private(state.conf, supervisord_conf(plan, state, password))
    _write_private(state.redis_conf, redis_conf(plan.endpoint("redis"), password, state.redis_dir))
    nodes = plan.status_urls()
    doc = {
        "nodes": nodes,
        "dashboard": {
            "page": plan.dashboard_url,
            "status": f"http://127.0.0.1:{plan.status_port('dashboard', 'dashboard')}/status",
        },
        "logs": {name: str(state.log_of(name)) for name in ["redis", *plan.nodes()]},
        "endpoints": {name: tcp(plan.endpoint(name)) for name in ENDPOINT_OFFSETS if name not in ("redis", "dashboard")}
        | {name: f"{kind}://127.0.0.1:{plan.endpoint(name)}" for name, kind in SOCKET_TRANSPORTS.items()},
        "redis_url": plan.redis_url,
        "plan": dataclasses.asdict(plan),
        "supervisord_conf": str(state.conf),
    }
    state.plan_file.write_text(json.dumps(doc, indent=2) + "\n")
    return password


def start_supervisord(state: State) -> None:
    """Start supervisord (it starts redis and the servers) and wait for its pidfile and socket."""
    # Output to a file, not a pipe: the daemonised child could hold a pipe open and hang the wait.
    start_log = state.logs / "supervisord.start.log"
    with open(start_log, "wb") as out:
        rc = subprocess.call(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(state.conf)],
            env=supervisor_env(),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=30,
        )
    if rc != 0:
        raise LocalError(f"supervisord failed to start (exit {rc}):\n{tail(start_log, indent='    ')}")
    until(state.pid, 15, f"supervisord to write {state.pidfile}", error=LocalError)
    until(state.sock.exists, 15, f"supervisord socket {state.sock}", error=LocalError)


def health_checks(plan: Plan, one_shot: bool) -> dict[str, Callable[[], bool]]:
    """Node name -> its /healthz check, for the batch roles or for the servers."""
    batch = set(roles.one_shot())
    ports = {name: port for name, port in plan.nodes().items() if (plan.roles()[name] in batch) == one_shot}
    return {name: (lambda p=port: healthz_ok(f"http://127.0.0.1:{p}")) for name, port in ports.items()}


def up(plan: Plan, state: State, timeout: float) -> int:
    """prepare -> start the servers -> wait healthy -> start the batches -> wait healthy -> the table."""
    password = prepare(plan, state)
    servers = {"redis": lambda: redis_ok(plan.redis_url, password), **health_checks(plan, one_shot=False)}
    try:
        print(f"==> starting supervisord ({state.conf})", flush=True)
        start_supervisord(state)
        print(f"==> waiting for redis and {len(servers) - 1} server nodes to be healthy (<= {timeout:g}s)", flush=True)
        wait_healthy(state, servers, timeout)
        print(f"==> starting the batch roles: {', '.join(roles.one_shot())}", flush=True)
        state.rpc().startProcessGroup(BATCH_GROUP, False)
        wait_healthy(state, health_checks(plan, one_shot=True), timeout)
    except (LocalError, WaitError, OSError, xmlrpc.client.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"==> stopping what started; logs stay in {state.logs}", file=sys.stderr)
        down(state)
        return 1
    print(
        f"==> up: {len(plan.nodes())} nodes + redis; logs in {state.logs}; port plan in {state.plan_file}", flush=True
    )
    print(f"==> dashboard          {plan.dashboard_url}   (live page of every node)", flush=True)
    print("==> from your own program:", flush=True)
    print(f"    your REQ client    tcp://127.0.0.1:{plan.endpoint('frontend')}  (broker frontend)")
    print(f"    your REP worker    tcp://127.0.0.1:{plan.endpoint('backend')}  (broker backend)")
    print(f"    your SUB socket    tcp://127.0.0.1:{plan.endpoint('zpub')}  (zpub)")
    print(f"    your Redis client  {plan.redis_url}  (password: requirepass in {state.redis_conf})")
    return status(state)


def down(state: State, timeout: float = 30.0) -> int:
    """Stop the supervisord this state dir started (and so every node), bounded."""
    pid = state.pid()
    if pid is None:
        print(f"==> not running ({state.pidfile} names no live supervisord)")
        return 0
    children: list[int] = []
    print(f"==> stopping supervisord pid {pid} and its nodes", flush=True)
    try:
        rpc = state.rpc()
        children = [i["pid"] for i in rpc.getAllProcessInfo() if i["pid"]]
        rpc.shutdown()
    except (OSError, xmlrpc.client.Error) as exc:
        print(f"warning: supervisor RPC failed ({exc}); sending SIGTERM to {pid}", file=sys.stderr)
        os.kill(pid, signal.SIGTERM)
    try:
        until(lambda: not alive(pid), timeout, f"supervisord {pid} to exit")
    except TimedOut:
        print(f"warning: supervisord {pid} still up after {timeout:g}s; SIGKILL", file=sys.stderr)
        os.kill(pid, signal.SIGKILL)
    for child in children:  # only if supervisord could not stop them: by pid, never by name
        if alive(child):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
    print("==> down")
    return 0


def _password(state: State) -> str:
    with contextlib.suppress(OSError):
        for line in state.redis_conf.read_text().splitlines():
            if line.startswith("requirepass "):
                return line.split(" ", 1)[1]
    return ""


def status(state: State, as_json: bool = False) -> int:
    from ops import table  # rich: only for the table

    try:
        plan_doc = json.loads(state.plan_file.read_text())
    except (OSError, ValueError):
        print(f"no local cluster: {state.plan_file} is missing; run `python -m ops.local up`", file=sys.stderr)
        return 1
    pid = state.pid()
    redis_up = pid is not None and redis_ok(plan_doc["redis_url"], _password(state))
    if not as_json:
        print(f"supervisord: {'pid ' + str(pid) if pid else 'NOT RUNNING'} ({state.conf})")
        print(f"redis: {plan_doc['redis_url']} {'ok' if redis_up else 'NOT ANSWERING'}")
        if plan_doc.get("dashboard"):
            print(f"dashboard: {plan_doc['dashboard']['page']}")
    if pid is None:
        return 1
    rc = table.main([f"{name}={url}" for name, url in plan_doc["nodes"].items()], as_json=as_json)
    return rc or (0 if redis_up else 1)
