"""The port plan of a local cluster: which node listens where, and the settings each one gets.

Why a fixed plan rather than free ports: supervisord starts the nodes, not us, so every port must be
known when its config is written - and a person can find a node at the same address every time.
Every endpoint is ``tcp://127.0.0.1`` at ``BASE_PORT`` (default 17000, below the ephemeral range)
plus a fixed offset. Stable roles get one status port each (in registry order); scaled roles get a
block of 100 so supervisor can compute ``STATUS_PORT`` from ``%(process_num)``
(:meth:`Plan.status_port_expr`). The roles, and which are one-shot or scaled, come from
:mod:`nodes.roles`; only the port offsets are written here.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodes import roles

DEFAULT_BASE_PORT = 17000
#: Most instances of one scaled role: their status ports share one block of 100.
MAX_SCALED = 99
#: Fixed offsets from BASE_PORT of the endpoints (a bound one and everyone connecting to it) and redis.
ENDPOINT_OFFSETS = {"frontend": 0, "backend": 1, "vent": 2, "sink": 3, "zpub": 4, "redis": 5, "sink_control": 6}
#: The dashboard's page (HTTP, not ZeroMQ) is BASE_PORT + 7.
ENDPOINT_OFFSETS["dashboard"] = 7
#: The plain-socket echo servers (issue 14): UDP and TCP at BASE_PORT + 8 and + 9, addressed as HOST:PORT.
ENDPOINT_OFFSETS |= {"udpecho": 8, "tcpecho": 9}
#: Their settings (parsed by config.bind_address / config.server_address, not ZeroMQ endpoints).
ADDRESS_SETTINGS = {"UDP_BIND": "udpecho", "UDP_SERVER": "udpecho", "TCP_BIND": "tcpecho", "TCP_SERVER": "tcpecho"}
#: Endpoint -> its transport, for nodes.json (the others are ZeroMQ tcp:// endpoints).
SOCKET_TRANSPORTS = {"udpecho": "udp", "tcpecho": "tcp"}
#: Roles that watch the others rather than take part (the dashboard): planned, started and checked like
#: every node, but not in the list of nodes they watch (``status_urls``: nodes.json, the table).
OBSERVERS = tuple(n for n in roles.NAMES if roles.ROLES[n].pattern == "dashboard")
#: The endpoint settings of the registry (``Role.binds`` / ``Role.connects``) -> the endpoint they name.
ENDPOINT_SETTINGS = {
    "FRONTEND_BIND": "frontend",
    "BROKER_FRONTEND": "frontend",
    "BACKEND_BIND": "backend",
    "BROKER_BACKEND": "backend",
    "VENT_BIND": "vent",
    "VENT_ENDPOINT": "vent",
    "SINK_BIND": "sink",
    "SINK_ENDPOINT": "sink",
    "SINK_CONTROL_BIND": "sink_control",
    "SINK_CONTROL": "sink_control",
    "ZPUB_BIND": "zpub",
    "ZPUB_ENDPOINT": "zpub",
}
#: Status ports of the stable (single-instance) roles: offsets 10..29; the scaled blocks start after them.
FIRST_STATUS_OFFSET, MAX_STABLE = 10, 20
#: Who a batch role waits for before it sends (its MIN_PIPEWORKERS / MIN_SUBSCRIBERS): counted from the plan.
AWAITS = {"ventilator": "pipeworker", "publisher": "subscriber", "zpub": "zsub"}
#: Stable role -> index of its status port after FIRST_STATUS_OFFSET; scaled role -> index of its block.
STABLE = {name: i for i, name in enumerate(n for n in roles.NAMES if not roles.ROLES[n].scaled)}
SCALED = {name: i for i, name in enumerate(roles.scaled())}


class LocalError(RuntimeError):
    """Something the person running ``up``/``down`` must fix; the message says what and where to look."""


def tcp(port: int) -> str:
    return f"tcp://127.0.0.1:{port}"


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
        unplanned = [
            f"{r.name} {e}"
            for r in roles.ROLES.values()
            for e in (*r.binds, *r.connects)
            if e not in ENDPOINT_SETTINGS and e not in ADDRESS_SETTINGS
        ]
        if unplanned or len(STABLE) > MAX_STABLE:
            raise LocalError(
                f"the port plan (ops/local/plan.py) has no port for: {', '.join(unplanned) or 'the stable roles'}"
            )
        if self.base < 1024 or self.block(len(SCALED)) > 65535:
            raise LocalError(f"BASE_PORT={self.base} leaves no room for the port plan (use 1024-{65535 - 400})")

    def endpoint(self, name: str) -> int:
        return self.base + ENDPOINT_OFFSETS[name]

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.endpoint('redis')}/0"

    def block(self, index: int) -> int:
        """First port of the index-th block of 100 status ports (aligned so process_num fills the last two digits)."""
        first = -(-(self.base + FIRST_STATUS_OFFSET + MAX_STABLE) // 100) * 100
        return first + 100 * index

    def count(self, role: str) -> int:
        return {"worker": self.workers, "pipeworker": self.pipe_workers, "subscriber": self.subscribers}.get(role, 1)

    def status_port_expr(self, role: str) -> str:
        """STATUS_PORT as supervisor writes it: block prefix + two-digit process_num (1..99)."""
        return f"{self.block(SCALED[role]) // 100}%(process_num)02d"

    def roles(self) -> dict[str, str]:
        """Node name -> role, in the order the table shows them (the registry's)."""
        out: dict[str, str] = {}
        for role in roles.NAMES:
            names = [f"{role}-{i}" for i in range(1, self.count(role) + 1)] if role in SCALED else [role]
            out.update(dict.fromkeys(names, role))
        return out

    def nodes(self) -> dict[str, int]:
        """Node name -> status port."""
        return {name: self.status_port(name, role) for name, role in self.roles().items()}

    def status_port(self, name: str, role: str) -> int:
        if role in SCALED:
            return self.block(SCALED[role]) + int(name.rsplit("-", 1)[1])
        return self.base + FIRST_STATUS_OFFSET + STABLE[role]

    def ports(self) -> dict[int, str]:
        """Every port the cluster binds -> what binds it (to check they are free first)."""
        used = {self.endpoint(name): f"{name} endpoint" for name in ENDPOINT_OFFSETS}
        used.update({p: f"{name} status" for name, p in self.nodes().items()})
        return used

    @property
    def dashboard_port(self) -> int:
        return self.endpoint("dashboard")

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}/"

    def status_urls(self) -> dict[str, str]:
        """Node name -> /status URL of every node but the observers: what the dashboard watches, nodes.json."""
        observers = set(OBSERVERS)
        return {
            name: f"http://127.0.0.1:{port}/status"
            for name, port in self.nodes().items()
            if self.roles()[name] not in observers
        }

    def role_env(self, role: str, password: str) -> dict[str, str]:
        """The settings of ``role`` in this plan (on top of NODE_NAME/STATUS_*): only those the role reads."""
        spec = roles.get(role)
        values = {setting: tcp(self.endpoint(name)) for setting, name in ENDPOINT_SETTINGS.items()}
        values |= {setting: f"127.0.0.1:{self.endpoint(name)}" for setting, name in ADDRESS_SETTINGS.items()}
        values |= {"REDIS_URL": self.redis_url, "REDIS_PASSWORD": password, "BROKER_MODE": self.broker_mode}
        values |= {"WORK_MS": f"{self.work_ms:g}", "REQUESTS": str(self.requests), "TASKS": str(self.tasks)}
        values["MESSAGES"] = str(self.messages)
        values |= {"DASHBOARD_HOST": "127.0.0.1", "DASHBOARD_PORT": str(self.dashboard_port)}
        values["DASHBOARD_NODES"] = ",".join(f"{name}={url}" for name, url in self.status_urls().items())
        if role in AWAITS:
            values["MIN_PIPEWORKERS"] = values["MIN_SUBSCRIBERS"] = str(self.count(AWAITS[role]))
        if spec.one_shot:  # HOLD=1: a finished batch keeps showing its final counts
            values |= {"HOLD": "1", "RATE": f"{self.rate:g}"}
        return {key: value for key, value in values.items() if key in spec.envs()}
