"""Environment (and command-line flags) -> one frozen settings dataclass per role.

Each field declares its environment variable, its parser and its help text once; the
command line (``python -m nodes <role> --help``) is generated from the same declarations,
so a flag and its variable can never disagree. A bad value raises :class:`ConfigError`
whose message names the variable; ``__main__`` prints that one line and exits 2.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import socket
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

# The one limit config takes from a pattern: a pipeworker refuses a task asking for more work than this,
# so the ventilator must refuse TASK_MS above it at load instead of sending a batch nobody accepts.
from nodes.pipeline.protocol import MAX_BATCH_ID, MAX_WORK_MS, ledger_endpoint

DEFAULT_TOPICS = ("catA", "catB", "catC", "catD")


#: SECURITY: ``plain`` (the default, unauthenticated) or ``curve`` (nodes.core.security).
SECURITY_MODES = ("plain", "curve")


class ConfigError(ValueError):
    """A setting with a bad or missing value; the message names the variable."""


# --- parsers: raw string -> value, raising ValueError with a short reason -------------------

_PORT = r"(?:[1-9][0-9]{0,4})"
_CONNECT_RE = re.compile(rf"^(?:tcp://(?:[A-Za-z0-9_.-]+|\[[0-9a-fA-F:]+\]):{_PORT}|ipc://.+|inproc://.+)$")
_BIND_RE = re.compile(rf"^(?:tcp://(?:\*|[A-Za-z0-9_.-]+|\[[0-9a-fA-F:]+\]):(?:{_PORT}|\*)|ipc://.+|inproc://.+)$")


def _port_ok(value: str) -> bool:
    m = re.search(r":(\d+)$", value)
    return m is None or not value.startswith("tcp://") or 0 < int(m.group(1)) < 65536


def connect_endpoint(value: str) -> str:
    if not _CONNECT_RE.match(value) or not _port_ok(value):
        raise ValueError("is not an endpoint to connect to (tcp://HOST:PORT, ipc://PATH or inproc://NAME)")
    return value


def bind_endpoint(value: str) -> str:
    if not _BIND_RE.match(value) or not _port_ok(value):
        raise ValueError("is not an endpoint to bind (tcp://*:PORT, tcp://HOST:PORT, ipc://PATH or inproc://NAME)")
    return value


#: Largest count (messages, tasks, requests, retries...): a C int, because some counts become libzmq
#: options (zpub's SNDHWM is sized to MESSAGES) and larger ones overflow them with a traceback.
MAX_COUNT = 2**31 - 1
#: Longest time setting, seconds (one day). Longer waits are a typo, and Python refuses waits above
#: ``threading.TIMEOUT_MAX`` with an OverflowError deep in a node instead of a config error.
MAX_SECONDS = 86_400.0
#: Slowest non-zero RATE, messages per second (one every 1000 s), for the same reason.
MIN_RATE = 0.001
#: libzmq's ZMQ_HEARTBEAT_TTL is carried in deciseconds in 16 bits: at most 6553.5 s. Proxy mode sets it
#: to HEARTBEAT_IVL x HEARTBEAT_LIVENESS, so their product must stay below it.
MAX_HEARTBEAT_SILENCE = 6553.0
#: Smallest MAX_MSG_SIZE: an envelope (id, kind, sequence, origin, a small body) must fit.
MIN_MSG_SIZE = 1024
#: Bytes of a client's request frame besides its payload (envelope fields, node name): PAYLOAD_BYTES plus
#: this must fit in MAX_MSG_SIZE, or the broker's libzmq drops the client's connection.
ENVELOPE_HEADROOM = 1024
#: PAYLOAD_BYTES of the senders that have no payload of their own (ventilator, publisher, zpub): a ``pad``
#: field of that many bytes in each body, so ``make bench`` can run them at the sizes of their baselines.
PAD_HELP = "bytes of padding ('pad') in each message's body, to size frames like a real payload (0: none)"


def _payload_fits(payload_bytes: int, max_msg_size: int, receiver: str, role: str) -> None:
    """PAYLOAD_BYTES plus the envelope must fit in MAX_MSG_SIZE, or the receiver's libzmq drops the connection."""
    if payload_bytes + ENVELOPE_HEADROOM > max_msg_size:
        raise ConfigError(
            f"PAYLOAD_BYTES={payload_bytes} does not fit in MAX_MSG_SIZE={max_msg_size} "
            f"(with {ENVELOPE_HEADROOM} bytes for the envelope): {receiver} would drop the connection ({role})"
        )


def _number(kind: type, low: float | None, what: str, high: float | None = None) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        try:
            n = kind(value)
        except (ValueError, OverflowError):
            raise ValueError(f"is not {what}") from None
        if isinstance(n, float) and not math.isfinite(n):
            raise ValueError(f"is not {what} (must be finite)")
        if low is not None and n < low:
            raise ValueError(f"must be at least {low}")
        if high is not None and n > high:
            raise ValueError(f"must be at most {high:g}")
        return n

    return parse


whole = _number(int, 0, "a whole number", MAX_COUNT)
positive = _number(int, 1, "a whole number", MAX_COUNT)
seconds = _number(float, 0.0, "a number of seconds", MAX_SECONDS)
milliseconds = _number(float, 0.0, "a number of milliseconds", MAX_SECONDS * 1000)
task_ms = _number(float, 0.0, "a number of milliseconds", MAX_WORK_MS)
_rate = _number(float, 0.0, "a rate (messages per second, 0 = unlimited)")


def rate(value: str) -> float:
    n = _rate(value)
    if 0 < n < MIN_RATE:
        raise ValueError(f"must be 0 (unlimited) or at least {MIN_RATE:g} messages per second")
    return n


def positive_seconds(value: str) -> float:
    n = seconds(value)
    if not n > 0:
        raise ValueError("must be a number of seconds above 0")
    return n


def message_size(value: str) -> int:
    n = positive(value)
    if n < MIN_MSG_SIZE:
        raise ValueError(f"must be at least {MIN_MSG_SIZE} bytes (an envelope must fit)")
    return n


def optional_message_size(value: str) -> int:
    """0 (the same as MAX_MSG_SIZE) or a :func:`message_size`."""
    return 0 if whole(value) == 0 else message_size(value)


def port(value: str) -> int:
    n = whole(value)
    if n > 65535:
        raise ValueError("is not a TCP port (0-65535)")
    return n


def boolean(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("is not a boolean (1/0, true/false, yes/no)")


def some_topics(value: str) -> tuple[str, ...]:
    """Like :func:`topics`, but at least one (a publisher needs somewhere to publish)."""
    items = topics(value)
    if not items:
        raise ValueError("names no topic (a publisher needs at least one, e.g. catA,catB)")
    return items


def topics(value: str) -> tuple[str, ...]:
    """Comma-separated topic names; an empty string means every topic."""
    items = tuple(t.strip() for t in value.split(",") if t.strip())
    for t in items:
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", t):
            raise ValueError(f"has a bad topic name {t!r} (letters, digits, _ . : - only)")
    return items


def choice(*options: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


def level(value: str) -> str:
    return choice("DEBUG", "INFO", "WARNING", "ERROR")(value.upper())


def text(value: str) -> str:
    return value


def _printable(value: str, what: str, longest: int) -> str:
    if len(value) > longest:
        raise ValueError(f"is longer than {longest} characters ({what})")
    if any(not c.isprintable() or c.isspace() for c in value):
        raise ValueError(f"has spaces or control characters ({what})")
    return value


def node_name(value: str) -> str:
    """Empty (ROLE-HOSTNAME) or up to 128 printable characters without spaces: it is in every log line and id."""
    return _printable(value, "a node name, as in logs and ids", 128)


def batch_id(value: str) -> str:
    """Empty (NODE-TIMESTAMP) or what the sink accepts as a batch id."""
    return _printable(value, "a batch id, as the sink accepts", MAX_BATCH_ID)


def host(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:%-]{1,253}", value):
        raise ValueError("is not a host name or IP address to bind (e.g. 127.0.0.1, 0.0.0.0, ::)")
    return value


def password(value: str) -> str:
    if any(not c.isprintable() for c in value):
        raise ValueError("has control characters (a stray newline from a secrets file?)")
    return value


def acl_user(value: str) -> str:
    """Empty (Redis's default user) or an ACL user name as ``ACL SETUSER`` takes it."""
    return _printable(value, "a Redis ACL user name", 128)


def directory(value: str) -> str:
    if "\0" in value:
        raise ValueError("has a NUL character (not a path)")
    return value


REDIS_SCHEMES = ("redis", "rediss", "unix")


def redis_url(value: str) -> str:
    """redis://[[user]:password@]host[:port][/db], rediss://... or unix:///path[?db=N], checked as redis-py reads it."""
    try:
        url = urllib.parse.urlsplit(value)
        port_ = url.port  # ValueError when out of 0-65535 or not a number
    except ValueError as exc:
        raise ValueError(f"is not a Redis URL ({exc})") from None
    if url.scheme not in REDIS_SCHEMES:
        raise ValueError("is not a Redis URL (redis://HOST:PORT/DB, rediss://... or unix:///PATH)")
    if url.scheme == "unix":
        if not url.path:
            raise ValueError("is not a Redis URL (unix:// needs a socket path)")
    else:
        if not url.hostname:
            raise ValueError("is not a Redis URL (no host: redis://HOST:PORT/DB)")
        if port_ == 0:
            raise ValueError("is not a Redis URL (port 0)")
        db = url.path.lstrip("/")
        if db and not db.isdigit():
            raise ValueError(f"is not a Redis URL (database {db!r} is not a number)")
    try:
        from redis.connection import parse_url  # the reader that will use it: what it refuses, we refuse now

        parse_url(value)
    except ImportError:  # pragma: no cover - redis is a dependency
        pass
    except (ValueError, TypeError) as exc:
        raise ValueError(f"is not a Redis URL ({exc})") from None
    return value


def setting(
    default: Any, env: str, help: str, parse: Callable[[str], Any] = text, flag: str = "", empty_ok: bool = False
) -> Any:
    """Declare one setting: its default, its environment variable, parser and help.

    ``empty_ok``: an empty value is the default ("derived from another setting") rather than parsed.
    """
    meta = {"env": env, "help": help, "parse": parse, "flag": flag, "empty_ok": empty_ok}
    return field(default=default, metadata=meta)


# --- settings per role --------------------------------------------------------------------------


@dataclass(frozen=True)
class Common:
    #: The role these settings belong to (set by each role's settings class).
    ROLE: ClassVar[str] = ""

    node_name: str = setting("", "NODE_NAME", "name in logs, ids and /status (default: ROLE-HOSTNAME)", node_name)
    status_host: str = setting("127.0.0.1", "STATUS_HOST", "address the /healthz,/status,/metrics server binds", host)
    status_port: int = setting(8000, "STATUS_PORT", "port of the status server (0 = any free port)", port)
    log_level: str = setting("INFO", "LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR", level)
    max_msg_size: int = setting(1024 * 1024, "MAX_MSG_SIZE", "largest frame accepted, bytes", message_size)
    hold: bool = setting(False, "HOLD", "after a one-shot batch, keep serving /status until stopped", boolean)
    peer_grace: float = setting(
        15.0, "PEER_GRACE", "seconds a node may lack the peers its job needs before /healthz fails", seconds
    )
    watchdog_s: float = setting(
        60.0, "WATCHDOG_S", "seconds the loop may be stuck before the node exits 4 to be restarted (0 = off)", seconds
    )
    security: str = setting(
        "plain",
        "SECURITY",
        "plain (no authentication: anyone who reaches a port is trusted) or curve (ZeroMQ CURVE + a key allow-list)",
        choice(*SECURITY_MODES),
    )
    keys_dir: str = setting(
        "build/keys", "KEYS_DIR", "SECURITY=curve: directory of the keys (made by python -m ops.keys)", directory
    )

    @property
    def name(self) -> str:
        return self.node_name or f"{self.role}-{socket.gethostname()}"

    @property
    def role(self) -> str:
        return self.ROLE


@dataclass(frozen=True)
class Batch:
    """Settings of a node that sends a bounded batch and waits for its peers first."""

    rate: float = setting(0.0, "RATE", "messages per second (0 = as fast as possible)", rate)
    wait_timeout: float = setting(30.0, "WAIT_TIMEOUT", "seconds to wait for peers before sending", positive_seconds)


@dataclass(frozen=True)
class Publish(Batch):
    messages: int = setting(
        1000, "MESSAGES", "number of messages to publish (0 = continuous, at RATE until stopped)", whole
    )
    topics: tuple[str, ...] = setting(DEFAULT_TOPICS, "TOPICS", "comma-separated topics, round robin", some_topics)
    min_subscribers: int = setting(0, "MIN_SUBSCRIBERS", "wait until this many subscribers are listening", whole)
    format: str = setting(
        "envelope",
        "FORMAT",
        "envelope (msgpack, sequence-checked by our subscribers) or plain (value hatX on topic catX, UTF-8)",
        choice("envelope", "plain"),
    )
    payload_bytes: int = setting(0, "PAYLOAD_BYTES", PAD_HELP + "; FORMAT=envelope only", whole)

    def __post_init__(self) -> None:
        _payload_fits(self.payload_bytes, self.max_msg_size, "a subscriber", getattr(self, "ROLE", ""))
        if self.messages == 0 and self.rate <= 0:
            raise ConfigError(
                f"MESSAGES=0 publishes continuously and needs RATE > 0 (messages per second, e.g. RATE=10): "
                f"RATE=0 (as fast as possible) would flood the subscribers ({getattr(self, 'ROLE', '')})"
            )

    @property
    def continuous(self) -> bool:
        """MESSAGES=0: publish at RATE until stopped, so a subscriber can attach at any time."""
        return self.messages == 0


@dataclass(frozen=True)
class Redis:
    redis_url: str = setting("redis://127.0.0.1:6379/0", "REDIS_URL", "Redis server URL", redis_url)
    redis_password: str = setting("", "REDIS_PASSWORD", "Redis password (required)", password)
    redis_user: str = setting(
        "", "REDIS_USER", "Redis ACL user (empty: the default user; ops.keys makes one per role)", acl_user
    )


def amqp_url(value: str) -> str:
    """amqp://[user:password@]host[:port][/vhost] (or amqps://), as pika's URLParameters reads it."""
    try:
        url = urllib.parse.urlsplit(value)
        url.port  # noqa: B018 - ValueError when out of 0-65535 or not a number
    except ValueError as exc:
        raise ValueError(f"is not an AMQP URL ({exc})") from None
    if url.scheme not in ("amqp", "amqps") or not url.hostname:
        raise ValueError("is not an AMQP URL (amqp://USER:PASSWORD@HOST:PORT/VHOST)")
    return value


@dataclass(frozen=True)
class AmqpUrl:
    amqp_url: str = setting(
        "amqp://guest:guest@127.0.0.1:5672/", "AMQP_URL", "RabbitMQ URL (BACKEND=rabbitmq)", amqp_url
    )


@dataclass(frozen=True)
class Amqp(AmqpUrl):
    """The message broker of the pub/sub pair (issue 14): Redis (default) or RabbitMQ."""

    backend: str = setting(
        "redis",
        "BACKEND",
        "redis (PUBLISH/SUBSCRIBE) or rabbitmq (a topic exchange, one exclusive queue per subscriber)",
        choice("redis", "rabbitmq"),
    )


def queue_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,200}", value) or value.startswith("amq."):
        raise ValueError("is not a queue name (letters, digits, _ . : -; not amq.*, RabbitMQ's own)")
    return value


@dataclass(frozen=True)
class AmqpTasks(AmqpUrl):
    """The pipeline's task transport (issue 14): PUSH/PULL (default) or a durable RabbitMQ work queue."""

    backend: str = setting(
        "zmq",
        "BACKEND",
        "zmq (PUSH/PULL; the ventilator re-sends what the sink misses) or rabbitmq (a durable queue with acks:"
        " the broker redelivers a lost pipeworker's tasks)",
        choice("zmq", "rabbitmq"),
    )
    task_queue: str = setting(
        "mpc.tasks", "TASK_QUEUE", "the durable RabbitMQ queue of the tasks (BACKEND=rabbitmq)", queue_name
    )


@dataclass(frozen=True)
class Heartbeat:
    mode: str = setting(
        "proxy", "BROKER_MODE", "proxy (ROUTER/DEALER) or lru (ROUTER/ROUTER + heartbeats)", choice("proxy", "lru")
    )
    heartbeat_ivl: float = setting(
        1.0, "HEARTBEAT_IVL", "seconds between heartbeats (lru: envelopes; proxy: ZMTP heartbeats)", positive_seconds
    )
    heartbeat_liveness: int = setting(3, "HEARTBEAT_LIVENESS", "missed heartbeats = peer dead (both modes)", positive)

    def __post_init__(self) -> None:
        silence = self.heartbeat_ivl * self.heartbeat_liveness
        if silence > MAX_HEARTBEAT_SILENCE:
            raise ConfigError(
                f"HEARTBEAT_IVL={self.heartbeat_ivl:g} x HEARTBEAT_LIVENESS={self.heartbeat_liveness} = {silence:g}s "
                f"is above {MAX_HEARTBEAT_SILENCE:g}s, the longest heartbeat timeout libzmq takes "
                f"({getattr(self, 'ROLE', '')})"
            )

    def zmtp_heartbeats(self) -> dict[str, int]:
        """libzmq's own heartbeat options (proxy mode): a peer silent for IVL x LIVENESS is disconnected."""
        ivl = max(1, int(self.heartbeat_ivl * 1000))
        timeout = ivl * self.heartbeat_liveness
        return {"heartbeat_ivl": ivl, "heartbeat_timeout": timeout, "heartbeat_ttl": timeout}


@dataclass(frozen=True)
class ClientSettings(Batch, Common):
    ROLE: ClassVar[str] = "client"
    broker: str = setting("tcp://127.0.0.1:5555", "BROKER_FRONTEND", "broker frontend to connect", connect_endpoint)
    requests: int = setting(1000, "REQUESTS", "number of requests to send", whole)
    request_timeout: float = setting(
        2.5, "REQUEST_TIMEOUT", "seconds to wait for a reply before retrying", positive_seconds
    )
    retries: int = setting(3, "RETRIES", "resends of one request before it counts as failed", whole)
    payload_bytes: int = setting(16, "PAYLOAD_BYTES", "size of each request's payload", whole)

    def __post_init__(self) -> None:
        _payload_fits(self.payload_bytes, self.max_msg_size, "the broker", self.ROLE)


@dataclass(frozen=True)
class BrokerSettings(Heartbeat, Common):
    ROLE: ClassVar[str] = "broker"
    frontend: str = setting("tcp://*:5555", "FRONTEND_BIND", "ROUTER for clients", bind_endpoint)
    backend: str = setting("tcp://*:5556", "BACKEND_BIND", "DEALER (proxy) / ROUTER (lru) for workers", bind_endpoint)
    backend_max_msg_size: int = setting(
        0,
        "BACKEND_MAX_MSG_SIZE",
        "largest request the workers accept, bytes (their MAX_MSG_SIZE; 0 = this broker's MAX_MSG_SIZE):"
        " a larger one is refused to the client with the reason, never forwarded",
        optional_message_size,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backend_max_msg_size > self.max_msg_size:
            raise ConfigError(
                f"BACKEND_MAX_MSG_SIZE={self.backend_max_msg_size} is above MAX_MSG_SIZE={self.max_msg_size}:"
                " the broker itself accepts no request that large (raise MAX_MSG_SIZE, or set 0) (broker)"
            )

    @property
    def request_limit(self) -> int:
        """Largest request the broker forwards: what its workers accept."""
        return self.backend_max_msg_size or self.max_msg_size


@dataclass(frozen=True)
class WorkerSettings(Heartbeat, Common):
    ROLE: ClassVar[str] = "worker"
    broker: str = setting("tcp://127.0.0.1:5556", "BROKER_BACKEND", "broker backend to connect", connect_endpoint)
    work_ms: float = setting(0.0, "WORK_MS", "simulated work per request, milliseconds", milliseconds)


@dataclass(frozen=True)
class VentilatorSettings(Batch, AmqpTasks, Common):
    ROLE: ClassVar[str] = "ventilator"
    bind: str = setting("tcp://*:5557", "VENT_BIND", "PUSH endpoint pipeworkers connect to", bind_endpoint)
    sink: str = setting(
        "tcp://127.0.0.1:5558", "SINK_ENDPOINT", "the sink (its results endpoint, as pipeworkers use)", connect_endpoint
    )
    sink_control: str = setting(
        "",
        "SINK_CONTROL",
        "sink's ledger endpoint, where the batch is announced and missing tasks asked for"
        " (default: SINK_ENDPOINT's port + 2, e.g. 5558 -> 5560; ipc/inproc: SINK_ENDPOINT + '.ledger')",
        connect_endpoint,
        empty_ok=True,
    )
    tasks: int = setting(1000, "TASKS", "number of tasks in the batch", whole)
    task_ms: float = setting(
        0.0, "TASK_MS", f"work per task, milliseconds (at most {MAX_WORK_MS:g}: what pipeworkers accept)", task_ms
    )
    batch_id: str = setting("", "BATCH_ID", "batch id (default: NODE-TIMESTAMP)", batch_id)
    min_pipeworkers: int = setting(1, "MIN_PIPEWORKERS", "wait until this many pipeworkers are connected", whole)
    resend_after: float = setting(
        5.0,
        "RESEND_AFTER",
        "seconds without a new result at the sink before the missing tasks are re-sent to live pipeworkers",
        positive_seconds,
    )
    max_resends: int = setting(
        10,
        "MAX_RESENDS",
        "re-send rounds in a row that bring no new result before giving up (exit 1); 0 = never re-send",
        whole,
    )
    payload_bytes: int = setting(0, "PAYLOAD_BYTES", PAD_HELP, whole)

    def __post_init__(self) -> None:
        _ledger_of("SINK_ENDPOINT", self.sink, "SINK_CONTROL", self.sink_control, self.ROLE)
        _payload_fits(self.payload_bytes, self.max_msg_size, "a pipeworker", self.ROLE)


@dataclass(frozen=True)
class PipeworkerSettings(AmqpTasks, Common):
    ROLE: ClassVar[str] = "pipeworker"
    prefetch: int = setting(
        10, "PREFETCH", "BACKEND=rabbitmq: unacknowledged tasks the broker may hand this worker at once", positive
    )
    ventilator: str = setting(
        "tcp://127.0.0.1:5557", "VENT_ENDPOINT", "ventilator to pull tasks from", connect_endpoint
    )
    sink: str = setting("tcp://127.0.0.1:5558", "SINK_ENDPOINT", "sink to push results to", connect_endpoint)
    stop_grace: float = setting(
        3.0,
        "STOP_GRACE",
        "on SIGTERM, seconds to finish the tasks already queued here (the rest are dropped, logged, and re-sent)",
        seconds,
    )


@dataclass(frozen=True)
class SinkSettings(Common):
    ROLE: ClassVar[str] = "sink"
    bind: str = setting(
        "tcp://*:5558", "SINK_BIND", "PULL endpoint for results (and plain batch announcements)", bind_endpoint
    )
    control_bind: str = setting(
        "",
        "SINK_CONTROL_BIND",
        "ROUTER ledger endpoint: ventilators announce batches and ask which tasks are missing"
        " (default: SINK_BIND's port + 2, e.g. 5558 -> 5560; ipc/inproc: SINK_BIND + '.ledger')",
        bind_endpoint,
        empty_ok=True,
    )
    state_dir: str = setting(
        "",
        "SINK_STATE_DIR",
        "journal directory, replayed at start (empty: TMPDIR/mpc-sink-state/NODE_NAME; off: memory only)",
        directory,
    )
    fsync_every: float = setting(
        1.0,
        "SINK_FSYNC_S",
        "seconds between fsyncs of the ledger files (always at batch completion; 0 = at every write)",
        seconds,
    )

    def __post_init__(self) -> None:
        _ledger_of("SINK_BIND", self.bind, "SINK_CONTROL_BIND", self.control_bind, self.ROLE)


@dataclass(frozen=True)
class PublisherSettings(Publish, Amqp, Redis, Common):
    ROLE: ClassVar[str] = "publisher"


@dataclass(frozen=True)
class SubscriberSettings(Amqp, Redis, Common):
    ROLE: ClassVar[str] = "subscriber"
    topics: tuple[str, ...] = setting(DEFAULT_TOPICS, "TOPICS", "comma-separated topics to subscribe to", topics)


@dataclass(frozen=True)
class ZpubSettings(Publish, Common):
    ROLE: ClassVar[str] = "zpub"
    bind: str = setting("tcp://*:5559", "ZPUB_BIND", "XPUB endpoint subscribers connect to", bind_endpoint)


@dataclass(frozen=True)
class ZsubSettings(Common):
    ROLE: ClassVar[str] = "zsub"
    endpoint: str = setting("tcp://127.0.0.1:5559", "ZPUB_ENDPOINT", "zpub to connect to", connect_endpoint)
    topics: tuple[str, ...] = setting((), "TOPICS", "comma-separated topics (empty = every topic)", topics)


def _ledger_of(env: str, results: str, control_env: str, control: str, role: str) -> None:
    """The sink's ledger endpoint must be derivable from its results endpoint unless set explicitly."""
    try:
        ledger_endpoint(results, control)
    except ValueError:
        raise ConfigError(
            f"{env}={results!r} leaves no port for the ledger endpoint (port + 2): set {control_env} ({role})"
        ) from None


REQUIRED = {"redis_password"}


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def load(
    settings: type[Common], environ: Mapping[str, str] | None = None, overrides: Mapping[str, str] | None = None
) -> Any:
    """Build ``settings`` (a role's settings class) from ``environ`` (default ``os.environ``) and flag overrides.

    ``overrides`` maps field names to raw strings from the command line; they win over the
    environment. Raises :class:`ConfigError` naming the first bad variable.
    """
    environ = os.environ if environ is None else environ
    overrides = overrides or {}
    role = settings.ROLE
    fields = dataclasses.fields(settings)
    values: dict[str, Any] = {}
    for f in fields:
        env = f.metadata["env"]
        if overrides.get(f.name) is not None:
            raw, source = overrides[f.name], flag_of(f)
        elif env in environ:
            raw, source = environ[env], env
        else:
            continue
        if raw == "" and f.metadata["empty_ok"]:
            values[f.name] = f.default
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            raise ConfigError(f"{source}={raw!r} {exc} ({role}: {f.metadata['help']})") from None
    for f in fields:
        if f.name in REQUIRED and not values.get(f.name) and values.get("backend", "redis") == "redis":
            raise ConfigError(f"{f.metadata['env']} is required for {role}: {f.metadata['help']}")
    loaded = settings(**values)
    if loaded.security == "curve":
        _check_keys(loaded, fields)
    return loaded


def _check_keys(settings: Common, fields: tuple[dataclasses.Field, ...]) -> None:
    """SECURITY=curve: every key file the role reads must exist now, not at its first bind or connect."""
    from nodes.core.security import needed_files  # zmq only where curve is asked for

    parsers = {f.metadata["parse"] for f in fields}
    binds, connects = bind_endpoint in parsers, connect_endpoint in parsers
    for path in needed_files(settings.keys_dir, settings.role, binds, connects):
        if not path.exists():
            raise ConfigError(
                f"SECURITY=curve needs {path}, which does not exist (KEYS_DIR={settings.keys_dir!r}): "
                f"run `make keys` (python -m ops.keys --dir {settings.keys_dir}) ({settings.role})"
            )


# --- the dashboard (issue 12): appended here on purpose, nothing above depends on it ---------------------


def service_names(value: str) -> tuple[str, ...]:
    """Comma-separated DNS names (compose service names); empty = none."""
    items = tuple(t.strip() for t in value.split(",") if t.strip())
    for t in items:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", t):
            raise ValueError(f"has a bad service name {t!r} (letters, digits, _ . - only)")
    return items


def status_urls(value: str) -> tuple[str, ...]:
    """Comma-separated ``[LABEL=]http://HOST:PORT/status`` of nodes known in advance; empty = none."""
    items = tuple(t.strip() for t in value.split(",") if t.strip())
    for t in items:
        url = t.partition("=")[2] if "=" in t and "://" not in t.partition("=")[0] else t
        if not re.fullmatch(r"http://[A-Za-z0-9_.:\[\]-]+(?:/[^\s,]*)?", url):
            raise ValueError(f"has {t!r}, not [LABEL=]http://HOST:PORT/status")
    return items


def web_url(value: str) -> str:
    """An http(s) URL a page may link to; empty = none."""
    if value and not re.fullmatch(r"https?://[^\s/]+(?:/\S*)?", value):
        raise ValueError("is not an http:// or https:// URL")
    return value


@dataclass(frozen=True)
class DashboardSettings(Common):
    ROLE: ClassVar[str] = "dashboard"
    http_host: str = setting(
        "127.0.0.1",
        "DASHBOARD_HOST",
        "address the dashboard page binds (0.0.0.0 in a container; compose publishes it on 127.0.0.1)",
        host,
    )
    http_port: int = setting(8080, "DASHBOARD_PORT", "port of the dashboard page (0 = any free port)", port)
    services: tuple[str, ...] = setting(
        (),
        "DASHBOARD_SERVICES",
        "comma-separated service names resolved through DNS at every poll (compose: a name resolves to every replica)",
        service_names,
    )
    node_port: int = setting(8000, "DASHBOARD_NODE_PORT", "status port of the nodes found through DNS", port)
    nodes: tuple[str, ...] = setting(
        (),
        "DASHBOARD_NODES",
        "comma-separated LABEL=http://HOST:PORT/status of nodes known in advance (the local cluster's port plan)",
        status_urls,
    )
    interval: float = setting(
        1.0, "DASHBOARD_INTERVAL", "seconds between polls of every node's /status", positive_seconds
    )
    prometheus_url: str = setting("", "PROMETHEUS_URL", "a Prometheus UI the page links to (empty: no link)", web_url)


# --- plain sockets (issue 14): the chapter's UDP and TCP echo pairs; appended, nothing above depends on it ----

#: Largest UDP payload over IPv4 (65535 - 8 bytes UDP header - 20 bytes IP header).
MAX_DATAGRAM = 65507
#: Bytes of the udpclient's sequence number in front of each datagram's payload (nodes/sockets/protocol.py).
DATAGRAM_HEADER = 8
_ADDRESS_RE = re.compile(r"^(\*|[A-Za-z0-9_.-]+|\[[0-9a-fA-F:.]+\]):([0-9]{1,5})$")


def _address(value: str, any_host: bool, port_zero: bool) -> str:
    m = _ADDRESS_RE.match(value)
    if not m or (m.group(1) == "*" and not any_host) or not (0 if port_zero else 1) <= int(m.group(2)) <= 65535:
        raise ValueError(
            "is not an address to bind (HOST:PORT, *:PORT for every interface, port 0 = any free port)"
            if any_host
            else "is not an address to connect to (HOST:PORT, [IPv6]:PORT)"
        )
    return value


def bind_address(value: str) -> str:
    """``HOST:PORT`` a plain socket binds: ``*`` = every interface, port 0 = any free one (shown in /status)."""
    return _address(value, any_host=True, port_zero=True)


def server_address(value: str) -> str:
    """``HOST:PORT`` (``[IPv6]:PORT``) of a plain socket server to send to."""
    return _address(value, any_host=False, port_zero=False)


def split_address(value: str) -> tuple[str, int]:
    """(host, port) of a checked address; ``*`` -> ``""`` (every interface), ``[::1]`` -> ``::1``."""
    host, _, port_ = value.rpartition(":")
    return ("" if host == "*" else host.strip("[]")), int(port_)


datagram_payload = _number(int, 0, "a whole number", MAX_DATAGRAM - DATAGRAM_HEADER)
window = _number(int, 1, "a whole number", 1024)


@dataclass(frozen=True)
class EchoClient(Batch):
    """What both echo clients share: a bounded batch, a per-request timeout, requests in flight."""

    requests: int = setting(1000, "REQUESTS", "number of requests to send", whole)
    request_timeout: float = setting(
        1.0, "REQUEST_TIMEOUT", "seconds to wait for a request's echo before it counts as lost", positive_seconds
    )
    window: int = setting(16, "WINDOW", "requests in flight at once (1 = the chapter's send, wait, send)", window)


@dataclass(frozen=True)
class UdpServerSettings(Common):
    ROLE: ClassVar[str] = "udpserver"
    bind: str = setting("*:5561", "UDP_BIND", "UDP address to receive datagrams on and echo them from", bind_address)


@dataclass(frozen=True)
class UdpClientSettings(EchoClient, Common):
    ROLE: ClassVar[str] = "udpclient"
    server: str = setting("127.0.0.1:5561", "UDP_SERVER", "the udpserver to send datagrams to", server_address)
    payload_bytes: int = setting(
        32,
        "PAYLOAD_BYTES",
        f"bytes of each datagram after its 8-byte sequence number (at most {MAX_DATAGRAM - DATAGRAM_HEADER})",
        datagram_payload,
    )


@dataclass(frozen=True)
class TcpServerSettings(Common):
    ROLE: ClassVar[str] = "tcpserver"
    bind: str = setting(
        "*:5562",
        "TCP_BIND",
        "TCP address to accept connections on (length-prefixed messages, MAX_MSG_SIZE each)",
        bind_address,
    )


@dataclass(frozen=True)
class TcpClientSettings(EchoClient, Common):
    ROLE: ClassVar[str] = "tcpclient"
    server: str = setting("127.0.0.1:5562", "TCP_SERVER", "the tcpserver to connect to", server_address)
    max_payload: int = setting(
        65536,
        "MAX_PAYLOAD",
        "each message is 0..MAX_PAYLOAD random bytes (a tcpserver refuses more than its MAX_MSG_SIZE)",
        whole,
    )
    seed: int = setting(0, "SEED", "seed of the message sizes and bytes (0 = a new one each run, logged)", whole)
