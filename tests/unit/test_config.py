"""nodes.config and the ``python -m nodes`` command line: env -> settings, flags win, errors name the variable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest

from nodes import __main__ as cli
from nodes import roles
from nodes.core import config
from tests.support import ROOT

PASSWORD = {"REDIS_PASSWORD": "secret"}
NAN, INF = "nan", "inf"

# --- the table: every setting of every role, its good values (raw -> parsed) and its bad values --------------
#
# Keyed by variable; a (role, variable) key wins where one variable means something else in one role
# (TOPICS: a publisher needs at least one, a subscriber takes none as "every topic"). A bad value must give
# one ConfigError line naming the variable (and the role); a good value must load and parse as shown. A new
# setting without an entry fails test_the_table_covers_every_setting_of_every_role.

Case = tuple[dict[str, Any], tuple[str, ...]]
SECONDS_BAD = ("-1", "abc", NAN, INF, "-inf", "1e9")
TABLE: dict[str | tuple[str, str], Case] = {
    # Common
    "NODE_NAME": ({"pub-1": "pub-1", "": ""}, ("a b", "tab\there", "x" * 129)),
    "STATUS_HOST": ({"0.0.0.0": "0.0.0.0", "::1": "::1", "localhost": "localhost"}, ("", "bad host!", "a/b")),
    "STATUS_PORT": ({"0": 0, "8000": 8000, "65535": 65535}, ("-1", "65536", "http", "80.5")),
    "LOG_LEVEL": ({"debug": "DEBUG", "ERROR": "ERROR"}, ("LOUD", "")),
    "MAX_MSG_SIZE": ({"65536": 65536, "2048": 2048}, ("0", "1023", "1e6", "abc", str(2**31))),
    "HOLD": ({"yes": True, "0": False, "": False}, ("maybe", "2")),
    "PEER_GRACE": ({"0": 0.0, "15": 15.0, "0.5": 0.5}, SECONDS_BAD),
    "WATCHDOG_S": ({"0": 0.0, "60": 60.0, "2.5": 2.5}, SECONDS_BAD),
    "SECURITY": ({"plain": "plain"}, ("tls", "CURVE", "", "none")),  # curve: tests/local/test_security.py
    "KEYS_DIR": ({"build/keys": "build/keys", "/tmp/k": "/tmp/k"}, ("/tmp/\0k",)),
    # Batch
    "RATE": ({"0": 0.0, "2.5": 2.5, "0.001": 0.001}, ("-1", "fast", NAN, INF, "1e-9")),
    "WAIT_TIMEOUT": ({"30": 30.0, "0.1": 0.1}, ("0", *SECONDS_BAD)),
    # client
    "BROKER_FRONTEND": ({"tcp://broker:5555": "tcp://broker:5555"}, ("broker:5555", "tcp://*:5555", "")),
    "REQUESTS": ({"0": 0, "1000": 1000}, ("-1", "1.5", "many", str(2**31))),
    "REQUEST_TIMEOUT": ({"2.5": 2.5, "0.01": 0.01}, ("0", "-0.5", NAN, INF, "abc")),
    "RETRIES": ({"0": 0, "3": 3}, ("-1", "x", str(2**31))),
    "PAYLOAD_BYTES": ({"0": 0, "16": 16, "60000": 60000}, ("-1", "x", "1048576")),  # the last: > MAX_MSG_SIZE
    # broker, worker
    "BROKER_MODE": ({"lru": "lru", "proxy": "proxy"}, ("fifo", "LRU", "")),
    "HEARTBEAT_IVL": ({"1": 1.0, "0.3": 0.3}, ("0", "-1", NAN, INF, "abc", "6554")),
    "HEARTBEAT_LIVENESS": ({"1": 1, "3": 3}, ("0", "-3", "x", "10000")),  # 1 s x 10000: above libzmq's TTL
    "FRONTEND_BIND": ({"tcp://*:5555": "tcp://*:5555", "ipc:///tmp/f": "ipc:///tmp/f"}, ("*:5555", "tcp://*:0")),
    "BACKEND_BIND": ({"tcp://*:5556": "tcp://*:5556"}, ("tcp://*", "pgm://x:1")),
    "BACKEND_MAX_MSG_SIZE": ({"0": 0, "65536": 65536}, ("-1", "1023", "x", str(2**21))),  # the last: > MAX_MSG_SIZE
    "BROKER_BACKEND": ({"tcp://[::1]:5556": "tcp://[::1]:5556"}, ("tcp://broker:65536", "udp://h:1")),
    "WORK_MS": ({"0": 0.0, "5": 5.0}, ("-1", "slow", NAN, INF, "1e12")),
    # ventilator, pipeworker, sink
    "VENT_BIND": ({"tcp://*:5557": "tcp://*:5557"}, ("tcp://*:70000", "")),
    "SINK_ENDPOINT": ({"tcp://sink:5558": "tcp://sink:5558", "inproc://s": "inproc://s"}, ("tcp://sink", "sink")),
    ("ventilator", "SINK_ENDPOINT"): ({"tcp://sink:5558": "tcp://sink:5558"}, ("tcp://sink", "tcp://sink:65534")),
    "SINK_CONTROL": ({"": "", "tcp://sink:6000": "tcp://sink:6000"}, ("tcp://sink", "6000")),
    "TASKS": ({"0": 0, "2000": 2000}, ("-1", "1e3", str(2**31))),
    "TASK_MS": ({"0": 0.0, "60000": 60000.0}, ("61000", "-1", NAN, INF, "x")),  # pipeworkers refuse > 60000
    "BATCH_ID": ({"": "", "b-1": "b-1"}, ("a b", "x" * 201)),
    "MIN_PIPEWORKERS": ({"0": 0, "3": 3}, ("-1", "x")),
    "RESEND_AFTER": ({"5": 5.0, "0.5": 0.5}, ("0", *SECONDS_BAD)),
    "MAX_RESENDS": ({"0": 0, "10": 10}, ("-1", "x")),
    "VENT_ENDPOINT": ({"tcp://vent:5557": "tcp://vent:5557"}, ("tcp://vent:0", "vent")),
    "STOP_GRACE": ({"0": 0.0, "3": 3.0}, SECONDS_BAD),
    "SINK_BIND": ({"tcp://*:5558": "tcp://*:5558", "ipc:///tmp/s": "ipc:///tmp/s"}, ("tcp://*:65534", "*:5558")),
    "SINK_CONTROL_BIND": ({"": "", "tcp://*:6000": "tcp://*:6000"}, ("tcp://*", "6000")),
    "SINK_STATE_DIR": ({"": "", "off": "off", "/tmp/x": "/tmp/x"}, ("/tmp/\0x",)),
    "SINK_FSYNC_S": ({"0": 0.0, "1": 1.0}, SECONDS_BAD),
    # publisher, subscriber, zpub, zsub
    "REDIS_URL": (
        {"redis://127.0.0.1:6379/0": "redis://127.0.0.1:6379/0", "rediss://:pw@r:1/2": "rediss://:pw@r:1/2"}
        | {"unix:///tmp/r.sock": "unix:///tmp/r.sock", "redis://redis": "redis://redis"},
        ("foo", "redis://127.0.0.1:99999/0", "redis://", "redis://h:0/0", "redis://h:x/0", "redis://h/db", ""),
    ),
    "REDIS_PASSWORD": ({"secret": "secret", "p@ss w0rd": "p@ss w0rd"}, ("", "secret\n")),
    "REDIS_USER": ({"": "", "publisher": "publisher"}, ("a b", "x" * 129)),
    "MESSAGES": ({"12": 12, "1000": 1000}, ("-1", "x", str(2**31))),
    "TOPICS": ({"catA": ("catA",), " catA, catB ,,": ("catA", "catB")}, (",", "", "cat B", "a/b")),
    ("subscriber", "TOPICS"): ({"catA,catB": ("catA", "catB"), ",": ()}, ("cat B", "a/b")),
    ("zsub", "TOPICS"): ({"a.b:c-d_e": ("a.b:c-d_e",), "": ()}, ("catA,cat B",)),
    "MIN_SUBSCRIBERS": ({"0": 0, "2": 2}, ("-1", "x")),
    "FORMAT": ({"plain": "plain", "envelope": "envelope"}, ("json", "")),
    "ZPUB_BIND": ({"tcp://*:5559": "tcp://*:5559"}, ("tcp://*:*x", "")),
    "ZPUB_ENDPOINT": ({"tcp://zpub:5559": "tcp://zpub:5559"}, ("tcp://*:5559", "")),
    # dashboard
    "DASHBOARD_HOST": ({"0.0.0.0": "0.0.0.0", "127.0.0.1": "127.0.0.1"}, ("", "bad host!")),
    "DASHBOARD_PORT": ({"0": 0, "8080": 8080}, ("-1", "65536", "x")),
    "DASHBOARD_SERVICES": ({" broker, worker ,": ("broker", "worker"), "": ()}, ("bad name!", "a/b")),
    "DASHBOARD_NODE_PORT": ({"8000": 8000}, ("-1", "x")),
    "DASHBOARD_NODES": ({"a=http://h:1/status": ("a=http://h:1/status",), "": ()}, ("ftp://x", "abc")),
    "DASHBOARD_INTERVAL": ({"1": 1.0, "0.2": 0.2}, ("0", *SECONDS_BAD)),
    "PROMETHEUS_URL": ({"": "", "http://127.0.0.1:9090/": "http://127.0.0.1:9090/"}, ("9090", "ftp://x")),
    # udpserver, udpclient, tcpserver, tcpclient (plain sockets)
    "UDP_BIND": ({"*:5561": "*:5561", "127.0.0.1:0": "127.0.0.1:0", "[::1]:9": "[::1]:9"}, ("5561", "h:65536", "")),
    "TCP_BIND": ({"*:5562": "*:5562", "0.0.0.0:5562": "0.0.0.0:5562"}, ("tcp://*:5562", "*:-1", "a b:1")),
    "UDP_SERVER": ({"udpserver:5561": "udpserver:5561", "[::1]:1": "[::1]:1"}, ("*:5561", "h:0", "h", "")),
    "TCP_SERVER": ({"tcpserver:5562": "tcpserver:5562"}, ("tcp://h:1", "h:99999", "*:1")),
    "WINDOW": ({"1": 1, "16": 16, "1024": 1024}, ("0", "-1", "1025", "x")),
    ("udpclient", "PAYLOAD_BYTES"): ({"0": 0, "65499": 65499}, ("-1", "x", "65500")),  # + 8-byte header: UDP's max
    "MAX_PAYLOAD": ({"0": 0, "65536": 65536}, ("-1", "x", "1.5", str(2**31))),
    "SEED": ({"0": 0, "42": 42}, ("-1", "x", "1.5")),
    # publisher, subscriber with BACKEND=rabbitmq
    "BACKEND": ({"redis": "redis", "rabbitmq": "rabbitmq"}, ("RabbitMQ", "kafka", "")),
    # ventilator, pipeworker with BACKEND=rabbitmq (a durable work queue)
    ("ventilator", "BACKEND"): ({"zmq": "zmq", "rabbitmq": "rabbitmq"}, ("redis", "ZMQ", "")),
    ("pipeworker", "BACKEND"): ({"zmq": "zmq", "rabbitmq": "rabbitmq"}, ("redis", "")),
    "TASK_QUEUE": ({"mpc.tasks": "mpc.tasks", "q-1": "q-1"}, ("", "amq.x", "a b", "x" * 201)),
    "PREFETCH": ({"1": 1, "10": 10}, ("0", "-1", "x")),
    "AMQP_URL": (
        {"amqp://u:p@rabbitmq:5672/%2F": "amqp://u:p@rabbitmq:5672/%2F", "amqps://h": "amqps://h"},
        ("redis://h:1", "amqp://", "amqp://h:99999/", "h:5672"),
    ),
}
#: Extra environment a value needs besides its own (a continuous publisher needs a rate).
BASE_ENV = {"publisher": PASSWORD, "subscriber": PASSWORD}
ALL_FIELDS = [(role, f) for role in roles.NAMES for f in roles.fields_of(role)]


def case_of(role: str, env: str) -> Case:
    return TABLE.get((role, env)) or TABLE[env]


def test_the_table_covers_every_setting_of_every_role() -> None:
    missing = sorted(f"{role}:{f.metadata['env']}" for role, f in ALL_FIELDS if f.metadata["env"] not in TABLE)
    assert not missing, f"settings without a row in TABLE (give each good and bad values): {missing}"
    used = {f.metadata["env"] for _, f in ALL_FIELDS} | {(r, f.metadata["env"]) for r, f in ALL_FIELDS}
    assert not set(TABLE) - used, f"TABLE rows for settings no role has: {set(TABLE) - used}"
    for key, (good, bad) in TABLE.items():
        assert good and bad, f"TABLE[{key!r}] needs at least one good and one bad value"


def one_line_error(role: str, env: str, value: str) -> str:
    with pytest.raises(config.ConfigError) as err:
        roles.load(role, environ={**BASE_ENV.get(role, {}), env: value})
    message = str(err.value)
    assert "\n" not in message, message
    assert re.search(rf"(^|\b){env}[= ]", message), f"{message!r} does not name {env}"
    assert role in message, f"{message!r} does not name the role {role}"
    return message


BAD_CASES = [(r, f.metadata["env"], v) for r, f in ALL_FIELDS for v in case_of(r, f.metadata["env"])[1]]
GOOD_CASES = [(r, f, raw, want) for r, f in ALL_FIELDS for raw, want in case_of(r, f.metadata["env"])[0].items()]


@pytest.mark.parametrize(("role", "env", "value"), BAD_CASES, ids=[f"{r}-{e}={v!r}"[:80] for r, e, v in BAD_CASES])
def test_every_bad_value_of_every_setting_is_one_line_naming_the_variable(role: str, env: str, value: str) -> None:
    one_line_error(role, env, value)


@pytest.mark.parametrize(
    ("role", "f", "raw", "want"), GOOD_CASES, ids=[f"{r}-{f.metadata['env']}={v!r}"[:80] for r, f, v, _ in GOOD_CASES]
)
def test_every_good_value_of_every_setting_loads(role: str, f, raw: str, want: Any) -> None:
    env = {**BASE_ENV.get(role, {}), f.metadata["env"]: raw}
    if f.metadata["env"] == "MESSAGES" and raw == "0":
        env["RATE"] = "1"
    assert getattr(roles.load(role, environ=env), f.name) == want


@pytest.mark.parametrize(("role", "f"), ALL_FIELDS, ids=[f"{r}-{f.metadata['env']}" for r, f in ALL_FIELDS])
def test_every_default_is_a_good_value(role: str, f) -> None:
    """The default is what the parser makes of its own printed form (so --help shows a value that loads)."""
    default = f.default if not isinstance(f.default, tuple) else ",".join(f.default)
    if f.metadata["env"] == "REDIS_PASSWORD":
        return  # required: no default
    value = getattr(roles.load(role, environ={**BASE_ENV.get(role, {}), f.metadata["env"]: str(default)}), f.name)
    assert value == f.default


@pytest.mark.parametrize("role", roles.NAMES)
def test_defaults_load_for_every_role(role: str) -> None:
    settings = roles.load(role, environ=PASSWORD)
    assert settings.role == role
    assert settings.status_port == 8000 and settings.hold is False
    assert settings.name.startswith(f"{role}-")  # ROLE-HOSTNAME unless NODE_NAME is set


def test_environment_values_are_parsed() -> None:
    s = roles.load(
        "publisher",
        environ={
            **PASSWORD,
            "NODE_NAME": "pub-1",
            "MESSAGES": "12",
            "TOPICS": " catA, catB ,,",
            "RATE": "2.5",
            "HOLD": "yes",
            "LOG_LEVEL": "debug",
            "STATUS_PORT": "0",
        },
    )
    assert (s.name, s.messages, s.topics, s.rate, s.hold, s.log_level, s.status_port) == (
        "pub-1",
        12,
        ("catA", "catB"),
        2.5,
        True,
        "DEBUG",
        0,
    )


def test_flags_override_environment() -> None:
    s = roles.load("worker", environ={"WORK_MS": "5", "NODE_NAME": "env"}, overrides={"work_ms": "7"})
    assert s.work_ms == 7.0
    assert s.name == "env"  # not overridden: the environment still applies


def test_bad_flag_value_names_the_flag() -> None:
    with pytest.raises(config.ConfigError, match=r"^--work-ms='slow' is not a number of milliseconds"):
        roles.load("worker", environ={"WORK_MS": "5"}, overrides={"work_ms": "slow"})


def test_none_override_falls_back_to_environment() -> None:
    assert roles.load("client", environ={"REQUESTS": "3"}, overrides={"requests": None}).requests == 3


@pytest.mark.parametrize("role", ["publisher", "subscriber"])
def test_redis_password_is_required(role: str) -> None:
    for environ in ({}, {"REDIS_PASSWORD": ""}):
        with pytest.raises(config.ConfigError, match=rf"^REDIS_PASSWORD is required for {role}"):
            roles.load(role, environ=environ)
    assert roles.load(role, environ=PASSWORD).redis_password == "secret"


def test_rabbitmq_backend_needs_no_redis_password() -> None:
    for role in ("publisher", "subscriber"):
        assert roles.load(role, environ={"BACKEND": "rabbitmq"}).backend == "rabbitmq"


def test_roles_without_redis_do_not_need_a_password() -> None:
    for role in set(roles.NAMES) - {"publisher", "subscriber"}:
        roles.load(role, environ={})


def test_unknown_role() -> None:
    with pytest.raises(config.ConfigError, match="unknown role 'nope'"):
        roles.load("nope", environ={})


@pytest.mark.parametrize(
    "value",
    ["tcp://127.0.0.1:5555", "tcp://broker:1", "tcp://my-host.example:65535", "tcp://[::1]:5555"]
    + ["ipc:///tmp/mpc.sock", "inproc://backend"],
)
def test_connect_endpoints_accepted(value: str) -> None:
    assert roles.load("worker", environ={"BROKER_BACKEND": value}).broker == value


@pytest.mark.parametrize(
    "value",
    ["", "broker:5555", "tcp://broker", "tcp://broker:0", "tcp://broker:65536", "tcp://*:5555", "udp://h:1"]
    + ["ipc://", "inproc://", "tcp://bad host:1"],
)
def test_connect_endpoints_rejected(value: str) -> None:
    with pytest.raises(config.ConfigError, match=r"^BROKER_BACKEND=.* is not an endpoint to connect to"):
        roles.load("worker", environ={"BROKER_BACKEND": value})


@pytest.mark.parametrize(
    "value", ["tcp://*:5555", "tcp://*:*", "tcp://127.0.0.1:5555", "tcp://[::1]:1", "ipc:///tmp/x", "inproc://front"]
)
def test_bind_endpoints_accepted(value: str) -> None:
    assert roles.load("broker", environ={"FRONTEND_BIND": value}).frontend == value


@pytest.mark.parametrize("value", ["", "*:5555", "tcp://*", "tcp://*:0", "tcp://*:70000", "pgm://x:1", "tcp://a b:1"])
def test_bind_endpoints_rejected(value: str) -> None:
    with pytest.raises(config.ConfigError, match=r"^FRONTEND_BIND=.* is not an endpoint to bind"):
        roles.load("broker", environ={"FRONTEND_BIND": value})


@pytest.mark.parametrize(
    ("env", "value", "reason"),
    [
        ("REQUESTS", "-1", "must be at least 0"),
        ("REQUESTS", "1.5", "is not a whole number"),
        ("MAX_MSG_SIZE", "0", "must be at least 1"),
        ("STATUS_PORT", "65536", "is not a TCP port"),
        ("REQUEST_TIMEOUT", "-0.5", "must be at least 0.0"),
        ("RATE", "fast", "is not a rate"),
        ("HOLD", "maybe", "is not a boolean"),
        ("LOG_LEVEL", "LOUD", "must be one of DEBUG, INFO, WARNING, ERROR"),
    ],
)
def test_parser_reasons(env: str, value: str, reason: str) -> None:
    with pytest.raises(config.ConfigError, match=rf"^{env}='{value}' {reason}"):
        roles.load("client", environ={env: value})


def test_broker_mode_choice() -> None:
    assert roles.load("broker", environ={"BROKER_MODE": "lru"}).mode == "lru"
    with pytest.raises(config.ConfigError, match=r"^BROKER_MODE='fifo' must be one of proxy, lru"):
        roles.load("worker", environ={"BROKER_MODE": "fifo"})


def test_topics() -> None:
    assert roles.load("zsub", environ={}).topics == ()  # empty = every topic
    assert roles.load("subscriber", environ={**PASSWORD}).topics == config.DEFAULT_TOPICS
    assert roles.load("zsub", environ={"TOPICS": "a.b:c-d_e"}).topics == ("a.b:c-d_e",)
    with pytest.raises(config.ConfigError, match=r"^TOPICS='catA,cat B' has a bad topic name 'cat B'"):
        roles.load("zsub", environ={"TOPICS": "catA,cat B"})


# --- the command line ----------------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nodes", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_cli_help_lists_every_role() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    for role in roles.NAMES:
        assert role in proc.stdout


def test_cli_role_help_exits_zero() -> None:
    proc = run_cli("worker", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--work-ms WORK_MS" in proc.stdout and "BROKER_BACKEND" in proc.stdout


def test_cli_unknown_role_exits_2() -> None:
    proc = run_cli("nope")
    assert proc.returncode == 2
    assert "invalid choice: 'nope'" in proc.stderr


def test_cli_config_error_exits_2_naming_the_variable() -> None:
    proc = run_cli("worker", env={"WORK_MS": "slow"})
    assert proc.returncode == 2
    assert proc.stderr.startswith("config error: WORK_MS='slow' is not a number of milliseconds")


@pytest.mark.parametrize("role", roles.NAMES)
def test_every_role_help_shows_every_variable(role: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([role, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for f in roles.fields_of(role):
        assert f"{config.flag_of(f)} {f.metadata['env']}" in out


def test_readme_documents_every_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = sorted({f.metadata["env"] for _, f in ALL_FIELDS if f"`{f.metadata['env']}`" not in readme})
    assert not missing, f"README.md's configuration section lacks {missing}"


@pytest.mark.parametrize("role", ["publisher", "zpub"])
def test_publish_format_and_continuous_mode(role: str) -> None:
    assert roles.load(role, environ=PASSWORD).format == "envelope"
    s = roles.load(role, environ={**PASSWORD, "MESSAGES": "0", "RATE": "5"}, overrides={"format": "plain"})
    assert (s.format, s.continuous, s.messages, s.rate) == ("plain", True, 0, 5.0)
    assert not roles.load(role, environ=PASSWORD).continuous
    with pytest.raises(config.ConfigError, match=r"^FORMAT='json' must be one of envelope, plain"):
        roles.load(role, environ={**PASSWORD, "FORMAT": "json"})
    with pytest.raises(config.ConfigError, match=r"^MESSAGES=0 publishes continuously and needs RATE > 0"):
        roles.load(role, environ={**PASSWORD, "MESSAGES": "0"})


#: A sample of bad settings, each once through the real command line: the values the issue measured
#: (accepted, or a traceback) and one of each kind of check (finite, > 0, a limit of the receivers, a URL,
#: at least one topic, a cross-setting limit).
CLI_SAMPLE = [
    ("broker", {"HEARTBEAT_IVL": "0", "BROKER_MODE": "lru"}, "HEARTBEAT_IVL"),
    ("worker", {"HEARTBEAT_IVL": "nan"}, "HEARTBEAT_IVL"),
    ("client", {"REQUEST_TIMEOUT": "0"}, "REQUEST_TIMEOUT"),
    ("client", {"REQUEST_TIMEOUT": "nan"}, "REQUEST_TIMEOUT"),
    ("client", {"RATE": "nan"}, "RATE"),
    ("zpub", {"RATE": "inf"}, "RATE"),
    ("ventilator", {"TASK_MS": "61000"}, "TASK_MS"),
    ("subscriber", {**PASSWORD, "REDIS_URL": "foo"}, "REDIS_URL"),
    ("publisher", {**PASSWORD, "REDIS_URL": "redis://127.0.0.1:99999/0"}, "REDIS_URL"),
    ("zpub", {"TOPICS": ","}, "TOPICS"),
    ("zpub", {"MESSAGES": str(2**32)}, "MESSAGES"),
    ("sink", {"SINK_BIND": "tcp://*:65535"}, "SINK_BIND"),
    ("client", {"PAYLOAD_BYTES": "2000000"}, "PAYLOAD_BYTES"),
]


@pytest.mark.parametrize(("role", "env", "name"), CLI_SAMPLE, ids=[f"{r}-{n}" for r, _, n in CLI_SAMPLE])
def test_cli_bad_setting_is_one_line_and_exit_2(role: str, env: dict[str, str], name: str) -> None:
    proc = run_cli(role, env={"STATUS_PORT": "0", **env})
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("config error: ") and f"{name}=" in lines[0], lines[0]
    assert proc.stdout == ""
