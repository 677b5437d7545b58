"""nodes.config and the ``python -m nodes`` command line: env -> settings, flags win, errors name the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nodes import __main__ as cli
from nodes import roles
from nodes.core import config
from tests.support import ROOT

PASSWORD = {"REDIS_PASSWORD": "secret"}
#: Values that at least one of them fails every parser except ``text`` (free-form settings).
BAD_VALUES = ("abc", "bad topic!")


def bad_value_for(f) -> str | None:
    for value in BAD_VALUES:
        try:
            f.metadata["parse"](value)
        except ValueError:
            return value
    return None


ALL_FIELDS = [(role, f) for role in roles.NAMES for f in roles.fields_of(role)]


@pytest.mark.parametrize(("role", "f"), ALL_FIELDS, ids=[f"{r}-{f.metadata['env']}" for r, f in ALL_FIELDS])
def test_every_parser_error_names_the_variable_and_the_role(role: str, f) -> None:
    bad = bad_value_for(f)
    if bad is None:
        assert f.metadata["parse"] is config.text, f"{f.metadata['env']} accepts {BAD_VALUES}: give it a parser"
        return
    env = f.metadata["env"]
    with pytest.raises(config.ConfigError) as err:
        roles.load(role, environ={**PASSWORD, env: bad})
    message = str(err.value)
    assert message.startswith(f"{env}={bad!r} ")
    assert f"({role}: " in message


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
    with pytest.raises(config.ConfigError, match=r"^--work-ms='slow' is not a number of seconds"):
        roles.load("worker", environ={"WORK_MS": "5"}, overrides={"work_ms": "slow"})


def test_none_override_falls_back_to_environment() -> None:
    assert roles.load("client", environ={"REQUESTS": "3"}, overrides={"requests": None}).requests == 3


@pytest.mark.parametrize("role", ["publisher", "subscriber"])
def test_redis_password_is_required(role: str) -> None:
    for environ in ({}, {"REDIS_PASSWORD": ""}):
        with pytest.raises(config.ConfigError, match=rf"^REDIS_PASSWORD is required for {role}"):
            roles.load(role, environ=environ)
    assert roles.load(role, environ=PASSWORD).redis_password == "secret"


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
    assert proc.stderr.startswith("config error: WORK_MS='slow' is not a number of seconds")


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
