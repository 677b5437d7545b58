"""The role registry: the one place that knows which roles exist and how each one is wired.

Everything that needs the list of roles reads it from here: ``python -m nodes --help``, the local
cluster (``ops.local``: port plan and supervisor programs), the compose checks, the bench and the
tests. A role is declared once: its pattern, its node class, its settings class, whether it is a
one-shot batch (client, ventilator, publishers: the roles whose settings are
:class:`config.Batch`) or long-running, and whether it is *stable* (binds
endpoints that others connect to, one instance) or *scaled* (only connects, any number of replicas).
The endpoints a role binds and connects are not written here a second time: they are the settings
whose parser is :func:`config.bind_endpoint` or :func:`config.connect_endpoint`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nodes.core import config


@dataclass(frozen=True)
class Role:
    name: str
    pattern: str
    #: "package.module:Class" of the node, imported only when the role runs.
    node: str
    settings: type[config.Common]
    help: str
    scaled: bool = False

    @property
    def one_shot(self) -> bool:
        """A batch role: sends a bounded batch, then finishes (its settings have RATE and WAIT_TIMEOUT)."""
        return issubclass(self.settings, config.Batch)

    def node_class(self) -> type:
        module, _, cls = self.node.partition(":")
        return getattr(importlib.import_module(module), cls)

    def fields(self) -> list[dataclasses.Field]:
        return list(dataclasses.fields(self.settings))

    def envs(self) -> set[str]:
        """Every environment variable this role reads."""
        return {f.metadata["env"] for f in self.fields()}

    def endpoints(self, parser: Any) -> tuple[str, ...]:
        return tuple(f.metadata["env"] for f in self.fields() if f.metadata["parse"] is parser)

    @property
    def binds(self) -> tuple[str, ...]:
        """Settings this role binds: ZeroMQ endpoints and plain socket addresses (the echo servers)."""
        return self.endpoints(config.bind_endpoint) + self.endpoints(config.bind_address)

    @property
    def connects(self) -> tuple[str, ...]:
        return self.endpoints(config.connect_endpoint) + self.endpoints(config.server_address)

    @property
    def zmq_connects(self) -> bool:
        """Whether it connects a ZeroMQ socket (needs a CURVE client keypair under SECURITY=curve)."""
        return bool(self.endpoints(config.connect_endpoint))

    @property
    def zmq_binds(self) -> bool:
        """Whether it binds a ZeroMQ socket (needs the CURVE server keypair under SECURITY=curve)."""
        return bool(self.endpoints(config.bind_endpoint))

    @property
    def speaks_zmq(self) -> bool:
        """Whether it binds or connects a ZeroMQ socket (the echo roles use plain sockets)."""
        return self.zmq_binds or self.zmq_connects


_ROLES = (
    Role(
        "client",
        "reqrep",
        "nodes.reqrep.client:Client",
        config.ClientSettings,
        "REQ client: sends REQUESTS requests through the broker, retrying on timeout (Lazy Pirate)",
    ),
    Role(
        "broker",
        "reqrep",
        "nodes.reqrep.broker:Broker",
        config.BrokerSettings,
        "ROUTER frontend + DEALER backend (or ROUTER backend in lru mode): load balancing",
    ),
    Role(
        "worker",
        "reqrep",
        "nodes.reqrep.worker:Worker",
        config.WorkerSettings,
        "REP worker (DEALER in lru mode): answers an envelope with its name, a plain request with Stop saying: ...",
        scaled=True,
    ),
    Role(
        "ventilator",
        "pipeline",
        "nodes.pipeline.ventilator:Ventilator",
        config.VentilatorSettings,
        "PUSH: fans TASKS tasks out to pipeworkers, asks the sink what is missing and re-sends it",
    ),
    Role(
        "pipeworker",
        "pipeline",
        "nodes.pipeline.pipeworker:Pipeworker",
        config.PipeworkerSettings,
        "PULL tasks from the ventilator, PUSH results to the sink",
        scaled=True,
    ),
    Role(
        "sink",
        "pipeline",
        "nodes.pipeline.sink:Sink",
        config.SinkSettings,
        "PULL: fan-in, a journalled ledger per batch (distinct, missing, duplicates, per worker)",
    ),
    Role(
        "publisher",
        "pubsub",
        "nodes.pubsub.publisher:Publisher",
        config.PublisherSettings,
        "Redis PUBLISH of MESSAGES messages over TOPICS (0 = until stopped), envelopes with sequence numbers or plain",
    ),
    Role(
        "subscriber",
        "pubsub",
        "nodes.pubsub.subscriber:Subscriber",
        config.SubscriberSettings,
        "Redis SUBSCRIBE to TOPICS; counts per topic and detects gaps and reordering",
        scaled=True,
    ),
    Role(
        "zpub",
        "pubsub",
        "nodes.pubsub.zpub:Zpub",
        config.ZpubSettings,
        "ZeroMQ XPUB: publishes [topic, payload] (envelope or plain) once MIN_SUBSCRIBERS have subscribed",
    ),
    Role(
        "zsub",
        "pubsub",
        "nodes.pubsub.zsub:Zsub",
        config.ZsubSettings,
        "ZeroMQ SUB: subscribes per topic (empty TOPICS = all) and checks sequence order",
    ),
    Role(
        "dashboard",
        "dashboard",
        "nodes.dashboard.dashboard:Dashboard",
        config.DashboardSettings,
        "read-only web page of the cluster: polls every node's /status (found by DNS or given), live at DASHBOARD_PORT",
    ),
    # --- the chapter's first programs: plain UDP and TCP sockets, no ZeroMQ (issue 14) ---
    Role(
        "udpserver",
        "sockets",
        "nodes.sockets.udpserver:UdpServer",
        config.UdpServerSettings,
        "udpecho server: echoes every datagram to its sender (UDP_BIND); counts datagrams and senders",
    ),
    Role(
        "udpclient",
        "sockets",
        "nodes.sockets.udpclient:UdpClient",
        config.UdpClientSettings,
        "udpecho client: REQUESTS numbered datagrams, WINDOW in flight; reports sent/answered/lost/reordered",
    ),
    Role(
        "tcpserver",
        "sockets",
        "nodes.sockets.tcpserver:TcpServer",
        config.TcpServerSettings,
        "tcpecho server: echoes each length-prefixed message whole; bad framing is a counted reject and a close",
    ),
    Role(
        "tcpclient",
        "sockets",
        "nodes.sockets.tcpclient:TcpClient",
        config.TcpClientSettings,
        "tcpecho client: REQUESTS length-prefixed messages of random sizes (0..MAX_PAYLOAD), each echo checked whole",
    ),
)
#: Role name -> Role, in the order of the diagram (each pattern's roles together).
ROLES: dict[str, Role] = {r.name: r for r in _ROLES}
NAMES: tuple[str, ...] = tuple(ROLES)
PATTERNS: tuple[str, ...] = tuple(dict.fromkeys(r.pattern for r in _ROLES))


def get(name: str) -> Role:
    try:
        return ROLES[name]
    except KeyError:
        raise config.ConfigError(f"unknown role {name!r}: choose one of {', '.join(NAMES)}") from None


def one_shot() -> tuple[str, ...]:
    return tuple(r.name for r in _ROLES if r.one_shot)


def scaled() -> tuple[str, ...]:
    return tuple(r.name for r in _ROLES if r.scaled)


def fields_of(name: str) -> list[dataclasses.Field]:
    return get(name).fields()


def load(name: str, environ: Mapping[str, str] | None = None, overrides: Mapping[str, str] | None = None) -> Any:
    """The settings of role ``name`` from the environment and flag overrides (see :func:`config.load`)."""
    return config.load(get(name).settings, environ, overrides)
