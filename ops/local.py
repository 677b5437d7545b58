"""The whole cluster as plain processes under supervisord, no docker: ``python -m ops.local up|down|status``.

Why supervisor: one daemon owns every node process (and a private redis-server), restarts the
long-running ones, keeps one log file a node, and stops them all with one call. ``up`` writes
everything under one state directory (``build/local`` or ``$LOCAL_STATE_DIR``):

    supervisord.conf   generated from a :class:`Plan` (ports, counts, redis password)
    nodes.json         the port plan: node name -> /status URL (``status`` reads it)
    supervisord.pid, supervisor.sock, logs/<node>.log, redis/

Start-up is two handshakes rather than sleeps: first the servers (redis, broker, workers, sink,
pipeworkers, subscribers, zsub) until every /healthz answers ok, then the one-shot batch roles
(client, ventilator, publisher, zpub) with ``HOLD=1`` so they keep showing their final counts.
The batch roles still wait for their own peers (``MIN_PIPEWORKERS``, ``MIN_SUBSCRIBERS``).

Ports: every endpoint is ``tcp://127.0.0.1`` at ``BASE_PORT`` (default 17000, below the ephemeral
range) plus a fixed offset; scaled roles get a block of 100 status ports each so supervisor can
compute ``STATUS_PORT`` from ``%(process_num)`` (see :meth:`Plan.status_port_expr`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodes import roles

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE_PORT = 17000
#: Most instances of one scaled role: their status ports share one block of 100.
MAX_SCALED = 99
#: Scaled roles -> index of their block of status ports after the fixed ones.
SCALED = {role: i for i, role in enumerate(roles.scaled())}
#: Fixed offsets from BASE_PORT.
ENDPOINT_OFFSETS = {"frontend": 0, "backend": 1, "vent": 2, "sink": 3, "zpub": 4, "redis": 5}
SINGLE_STATUS_OFFSETS = {
    "client": 10,
    "broker": 11,
    "ventilator": 12,
    "sink": 13,
    "publisher": 14,
    "zpub": 15,
    "zsub": 16,
}
ONE_SHOT = roles.one_shot()
#: Row order of the status table: each pattern's nodes together (the registry is in that order).
TABLE_ORDER = roles.NAMES
BATCH_GROUP = "batch"


class LocalError(RuntimeError):
    """Something the person running ``up``/``down`` must fix; the message says what and where to look."""


# --- the plan: what runs where -------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Ports, counts and rates of one local cluster; everything else is derived from it."""

    base: int = DEFAULT_BASE_PORT
    workers: int = 4
    pipe_workers: int = 2
    subscribers: int = 2
    broker_mode: str = "proxy"
    requests: int = 1000
    tasks: int = 300
    messages: int = 400
    rate: float = 20.0
    work_ms: float = 2.0

    def validate(self) -> None:
        for what, n in (
            ("workers", self.workers),
            ("pipe-workers", self.pipe_workers),
            ("subscribers", self.subscribers),
        ):
            if not 1 <= n <= MAX_SCALED:
                raise LocalError(f"--{what} must be between 1 and {MAX_SCALED}, not {n}")
        if self.base < 1024 or self.block(len(SCALED)) > 65535:
            raise LocalError(f"BASE_PORT={self.base} leaves no room for the port plan (use 1024-{65535 - 400})")

    def endpoint(self, name: str) -> int:
        return self.base + ENDPOINT_OFFSETS[name]

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.endpoint('redis')}/0"

    def block(self, index: int) -> int:
        """First port of the index-th block of 100 status ports (aligned so process_num fills the last two digits)."""
        first = -(-(self.base + 20) // 100) * 100
        return first + 100 * index

    def count(self, role: str) -> int:
        return {"worker": self.workers, "pipeworker": self.pipe_workers, "subscriber": self.subscribers}.get(role, 1)

    def status_port_expr(self, role: str) -> str:
        """STATUS_PORT as supervisor writes it: block prefix + two-digit process_num (1..99)."""
        return f"{self.block(SCALED[role]) // 100}%(process_num)02d"

    def roles(self) -> dict[str, str]:
        """Node name -> role, in the order the table shows them."""
        out: dict[str, str] = {}
        for role in TABLE_ORDER:
            names = [f"{role}-{i}" for i in range(1, self.count(role) + 1)] if role in SCALED else [role]
            out.update(dict.fromkeys(names, role))
        return out

    def nodes(self) -> dict[str, int]:
        """Node name -> status port."""
        return {name: self.status_port(name, role) for name, role in self.roles().items()}

    def status_port(self, name: str, role: str) -> int:
        if role in SCALED:
            return self.block(SCALED[role]) + int(name.rsplit("-", 1)[1])
        return self.base + SINGLE_STATUS_OFFSETS[role]

    def ports(self) -> dict[int, str]:
        """Every port the cluster binds -> what binds it (to check they are free first)."""
        used = {self.endpoint(name): f"{name} endpoint" for name in ENDPOINT_OFFSETS}
        used.update({p: f"{name} status" for name, p in self.nodes().items()})
        return used


def tcp(port: int) -> str:
    return f"tcp://127.0.0.1:{port}"


def role_env(plan: Plan, role: str, password: str) -> dict[str, str]:
    """The environment one role needs on top of NODE_NAME/STATUS_*; see nodes/config.py."""
    redis = {"REDIS_URL": plan.redis_url, "REDIS_PASSWORD": password}
    batch = {"HOLD": "1", "RATE": f"{plan.rate:g}"}
    env: dict[str, dict[str, str]] = {
        "broker": {
            "FRONTEND_BIND": tcp(plan.endpoint("frontend")),
            "BACKEND_BIND": tcp(plan.endpoint("backend")),
            "BROKER_MODE": plan.broker_mode,
        },
        "worker": {
            "BROKER_BACKEND": tcp(plan.endpoint("backend")),
            "BROKER_MODE": plan.broker_mode,
            "WORK_MS": f"{plan.work_ms:g}",
        },
        "client": {**batch, "BROKER_FRONTEND": tcp(plan.endpoint("frontend")), "REQUESTS": str(plan.requests)},
        "ventilator": {
            **batch,
            "VENT_BIND": tcp(plan.endpoint("vent")),
            "SINK_ENDPOINT": tcp(plan.endpoint("sink")),
            "TASKS": str(plan.tasks),
            "MIN_PIPEWORKERS": str(plan.pipe_workers),
        },
        "pipeworker": {"VENT_ENDPOINT": tcp(plan.endpoint("vent")), "SINK_ENDPOINT": tcp(plan.endpoint("sink"))},
        "sink": {"SINK_BIND": tcp(plan.endpoint("sink"))},
        "publisher": {
            **batch,
            **redis,
            "MESSAGES": str(plan.messages),
            "MIN_SUBSCRIBERS": str(plan.subscribers),
        },
        "subscriber": redis,
        "zpub": {
            **batch,
            "ZPUB_BIND": tcp(plan.endpoint("zpub")),
            "MESSAGES": str(plan.messages),
            "MIN_SUBSCRIBERS": "1",
        },
        "zsub": {"ZPUB_ENDPOINT": tcp(plan.endpoint("zpub"))},
    }
    return env[role]


# --- the state directory and the supervisord.conf written into it -----------------------------------


class State:
    """Paths under the state directory (``$LOCAL_STATE_DIR``, default ``build/local``)."""

    def __init__(self, root: Path | None = None) -> None:
        root = root or Path(os.environ.get("LOCAL_STATE_DIR") or ROOT / "build" / "local")
        self.root = root.resolve()
        self.conf = self.root / "supervisord.conf"
        self.pidfile = self.root / "supervisord.pid"
        self.sock = self.root / "supervisor.sock"
        self.logs = self.root / "logs"
        self.plan_file = self.root / "nodes.json"
        self.redis_dir = self.root / "redis"
        self.redis_conf = self.root / "redis.conf"

    def log_of(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def pid(self) -> int | None:
        """supervisord's pid if the pidfile names a live supervisord of this state dir."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return None
        if "supervisord" not in cmdline or str(self.conf) not in cmdline or not alive(pid):
            return None  # a stale pidfile, maybe naming a pid reused by something else: never touch it
        return pid

    def rpc(self) -> Any:
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.sock}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for a reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _q(value: str) -> str:
    """Quote a literal for supervisor's environment= (which %-expands and splits on commas)."""
    return '"' + value.replace("%", "%%").replace('"', '\\"') + '"'


def _env_line(env: dict[str, str], raw: frozenset[str] = frozenset()) -> str:
    return ",".join(f'{k}="{v}"' if k in raw else f"{k}={_q(v)}" for k, v in env.items())


def supervisord_conf(plan: Plan, state: State, password: str) -> str:
    """The whole supervisord.conf for ``plan`` (pure: same inputs, same text)."""
    python = sys.executable
    lines = [
        "; generated by `python -m ops.local up`; edits are overwritten",
        "[unix_http_server]",
        f"file={state.sock}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"pidfile={state.pidfile}",
        f"logfile={state.logs / 'supervisord.log'}",
        f"childlogdir={state.logs}",
        f"directory={ROOT}",
        "identifier=mpc-local",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{state.sock}",
        "",
    ]
    common = [
        "redirect_stderr=true",
        "stdout_logfile_maxbytes=20MB",
        "stdout_logfile_backups=1",
        "stopasgroup=true",
        "stopwaitsecs=10",
        f"directory={ROOT}",
    ]
    redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
    lines += [
        "[program:redis]",
        f"command={redis_server} {state.redis_conf}",
        "priority=10",
        "autorestart=true",
        f"stdout_logfile={state.log_of('redis')}",
        *common,
        "",
    ]
    for role in ("broker", "sink", "worker", "pipeworker", "subscriber", "zsub", *ONE_SHOT):
        env = role_env(plan, role, password)
        lines += [f"[program:{role}]", f"command={python} -m nodes {role}"]
        if role in SCALED:
            name = f"{role}-%(process_num)d"
            node_env = {"NODE_NAME": name, "STATUS_PORT": plan.status_port_expr(role)}
            lines += [
                f"process_name={name}",
                f"numprocs={plan.count(role)}",
                "numprocs_start=1",
                f"stdout_logfile={state.logs}/{role}-%(process_num)d.log",
            ]
            raw = frozenset(node_env)
        else:
            node_env = {"NODE_NAME": role, "STATUS_PORT": str(plan.base + SINGLE_STATUS_OFFSETS[role])}
            lines.append(f"stdout_logfile={state.log_of(role)}")
            raw = frozenset()
        node_env.update({"STATUS_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1", **env})
        lines.append(f"environment={_env_line(node_env, raw)}")
        if role in ONE_SHOT:  # started by `up` once the servers are healthy; never restarted
            lines += ["autostart=false", "autorestart=false", "priority=40"]
        else:
            lines += ["autorestart=true", "priority=20" if role in ("broker", "sink") else "priority=30"]
        lines += [*common, ""]
    lines += [f"[group:{BATCH_GROUP}]", f"programs={','.join(ONE_SHOT)}", "priority=40", ""]
    return "\n".join(lines)


def redis_conf(plan: Plan, state: State, password: str) -> str:
    """A private, memory-only redis on 127.0.0.1; the password stays in a 0600 file, not on a command line."""
    return "\n".join(
        [
            "bind 127.0.0.1",
            f"port {plan.endpoint('redis')}",
            f"requirepass {password}",
            'save ""',
            "appendonly no",
            f"dir {state.redis_dir}",
            "daemonize no",
            'logfile ""',
            "",
        ]
    )


def supervisor_env() -> dict[str, str]:
    """A small, explicit environment: a stray REQUESTS or TOPICS in the caller's shell must not leak into nodes."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYENV_VERSION")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PYTHONPATH"] = str(ROOT)
    return env


# --- waiting, bounded, naming what it waited for -------------------------------------------------------


def _healthz(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def _redis_ok(url: str, password: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, password=password, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "    (no log yet)"


def wait_healthy(state: State, checks: dict[str, Callable[[], bool]], timeout: float) -> None:
    """Poll until supervisor says RUNNING (up for startsecs) and every check passes, for every name.

    Fails fast when supervisor reports a process EXITED or FATAL (gave up restarting), else at
    ``timeout``; the error names the node, what supervisor says, and the tail of its log.
    """
    pending = dict(checks)
    deadline = time.monotonic() + timeout
    while True:
        states = _process_states(state)
        pending = {name: ok for name, ok in pending.items() if not (states.get(name, ("",))[0] == "RUNNING" and ok())}
        if not pending:
            return
        failed = [name for name in pending if states.get(name, ("",))[0] in ("EXITED", "FATAL")]
        if failed or time.monotonic() >= deadline:
            name = (failed or sorted(pending))[0]
            said = states[name][1] if name in states else "unknown to supervisor"
            why = said if failed else f"no ok from /healthz within {timeout:g}s; supervisor: {said}"
            raise LocalError(
                f"node {name} is not healthy ({why}); not healthy: {', '.join(sorted(pending))}\n"
                f"  log: {state.log_of(name)}\n{_tail(state.log_of(name))}"
            )
        time.sleep(0.2)


def _process_states(state: State) -> dict[str, tuple[str, str]]:
    """Supervisor's view: process name -> (state name, a description naming exit status and spawn errors)."""
    try:
        infos = state.rpc().getAllProcessInfo()
    except (OSError, xmlrpc.client.Error):
        return {}
    return {
        i["name"]: (
            i["statename"],
            i["statename"]
            + (f", exit status {i['exitstatus']}" if i["statename"] == "EXITED" else "")
            + (f", {i['spawnerr']}" if i["spawnerr"] else ""),
        )
        for i in infos
    }


def _wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = pred()
        if result:
            return result
        time.sleep(0.1)
    raise LocalError(f"timed out after {timeout:g}s waiting for {what}")


# --- the commands ------------------------------------------------------------------------------------


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


def up(plan: Plan, state: State, timeout: float) -> int:
    plan.validate()
    if len(str(state.sock)) > 100:
        raise LocalError(f"state dir path too long for a unix socket: {state.sock}; set LOCAL_STATE_DIR shorter")
    pid = state.pid()
    if pid is not None:
        raise LocalError(f"already running (supervisord pid {pid}, {state.conf}); run `down` first to change it")
    check_ports_free(plan)
    for d in (state.root, state.logs, state.redis_dir):
        d.mkdir(parents=True, exist_ok=True)
    for stale in (state.sock, state.pidfile):  # left by a supervisord that did not stop cleanly
        stale.unlink(missing_ok=True)
    password = secrets.token_hex(16)
    redis_url = plan.redis_url
    for path, text in (
        (state.conf, supervisord_conf(plan, state, password)),
        (state.redis_conf, redis_conf(plan, state, password)),
    ):
        path.write_text(text)
        path.chmod(0o600)
    nodes = {name: f"http://127.0.0.1:{port}/status" for name, port in plan.nodes().items()}
    state.plan_file.write_text(
        json.dumps(
            {
                "nodes": nodes,
                "logs": {name: str(state.log_of(name)) for name in ["redis", *nodes]},
                "endpoints": {name: tcp(plan.endpoint(name)) for name in ENDPOINT_OFFSETS if name != "redis"},
                "redis_url": redis_url,
                "plan": dataclasses.asdict(plan),
                "supervisord_conf": str(state.conf),
            },
            indent=2,
        )
        + "\n"
    )

    print(f"==> starting supervisord ({state.conf})", flush=True)
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
        raise LocalError(f"supervisord failed to start (exit {rc}):\n{_tail(start_log)}")
    try:
        _wait_for(state.pid, 15, f"supervisord to write {state.pidfile}")
        _wait_for(lambda: state.sock.exists(), 15, f"supervisord socket {state.sock}")

        ports = plan.nodes()
        servers = {n: p for n, p in ports.items() if plan.roles()[n] not in ONE_SHOT}
        checks: dict[str, Callable[[], bool]] = {"redis": lambda: _redis_ok(redis_url, password)}
        checks.update({n: (lambda p=p: _healthz(p)) for n, p in servers.items()})
        print(f"==> waiting for redis and {len(servers)} server nodes to be healthy (<= {timeout:g}s)", flush=True)
        wait_healthy(state, checks, timeout)

        print(f"==> starting the batch roles: {', '.join(ONE_SHOT)}", flush=True)
        state.rpc().startProcessGroup(BATCH_GROUP, False)
        batch = {n: (lambda p=p: _healthz(p)) for n, p in ports.items() if n in ONE_SHOT}
        wait_healthy(state, batch, timeout)
    except (LocalError, OSError, xmlrpc.client.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"==> stopping what started; logs stay in {state.logs}", file=sys.stderr)
        down(state)
        return 1
    print(f"==> up: {len(ports)} nodes + redis; logs in {state.logs}; port plan in {state.plan_file}", flush=True)
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
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        print(f"warning: supervisord {pid} still up after {timeout:g}s; SIGKILL", file=sys.stderr)
        os.kill(pid, signal.SIGKILL)
    for child in children:  # only if supervisord could not stop them: by pid, never by name
        if alive(child):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
    print("==> down")
    return 0


def status(state: State, as_json: bool = False) -> int:
    from ops import table

    try:
        plan_doc = json.loads(state.plan_file.read_text())
    except (OSError, ValueError):
        print(f"no local cluster: {state.plan_file} is missing; run `python -m ops.local up`", file=sys.stderr)
        return 1
    pid = state.pid()
    redis_ok = pid is not None and _redis_ok(plan_doc["redis_url"], _password(state))
    if not as_json:
        print(f"supervisord: {'pid ' + str(pid) if pid else 'NOT RUNNING'} ({state.conf})")
        print(f"redis: {plan_doc['redis_url']} {'ok' if redis_ok else 'NOT ANSWERING'}")
    if pid is None:
        return 1
    rc = table.main([f"{name}={url}" for name, url in plan_doc["nodes"].items()], as_json=as_json)
    return rc or (0 if redis_ok else 1)


def _password(state: State) -> str:
    with contextlib.suppress(OSError):
        for line in state.redis_conf.read_text().splitlines():
            if line.startswith("requirepass "):
                return line.split(" ", 1)[1]
    return ""


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name) or default)
    except ValueError:
        raise SystemExit(f"error: {name}={os.environ[name]!r} is not a whole number") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ops.local", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start redis and every node under supervisord, wait healthy, print the table")
    p_up.add_argument("--workers", type=int, default=_env_int("WORKERS", 4), help="REP workers [env WORKERS, 4]")
    p_up.add_argument(
        "--pipe-workers", type=int, default=_env_int("PIPE_WORKERS", 2), help="pipeline workers [env PIPE_WORKERS, 2]"
    )
    p_up.add_argument(
        "--subscribers", type=int, default=_env_int("SUBSCRIBERS", 2), help="Redis subscribers [env SUBSCRIBERS, 2]"
    )
    p_up.add_argument("--broker-mode", choices=("proxy", "lru"), default="proxy", help="broker mode [proxy]")
    p_up.add_argument("--requests", type=int, default=Plan.requests, help="client requests [%(default)s]")
    p_up.add_argument("--tasks", type=int, default=Plan.tasks, help="ventilator tasks [%(default)s]")
    p_up.add_argument("--messages", type=int, default=Plan.messages, help="messages per publisher [%(default)s]")
    p_up.add_argument(
        "--rate", type=float, default=Plan.rate, help="messages/s of each batch role, 0 = unlimited [%(default)s]"
    )
    p_up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for health [%(default)s]")
    sub.add_parser("down", help="stop the supervisord that `up` started (and every node)")
    p_st = sub.add_parser("status", help="print the status table of the local cluster")
    p_st.add_argument("--json", action="store_true", help="the /status documents as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    state = State()
    try:
        if args.command == "up":
            plan = Plan(
                base=_env_int("BASE_PORT", DEFAULT_BASE_PORT),
                workers=args.workers,
                pipe_workers=args.pipe_workers,
                subscribers=args.subscribers,
                broker_mode=args.broker_mode,
                requests=args.requests,
                tasks=args.tasks,
                messages=args.messages,
                rate=args.rate,
            )
            return up(plan, state, args.timeout)
        if args.command == "down":
            return down(state)
        return status(state, as_json=args.json)
    except LocalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
