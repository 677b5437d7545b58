"""SECURITY=curve on real node processes: the counted patterns deliver everything, strangers get nothing.

Keys come from ``ops.keys`` (the same code as ``make keys``) in a directory of the test session. A peer
that is refused must show in the *binding* node's ``auth_denied`` counter; a Redis subscriber's ACL user
must be unable to PUBLISH (a private redis-server started with the generated ``redis.acl``).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import zmq
import zmq.auth

from nodes.core import wire
from nodes.core.lifecycle import REFUSALS
from nodes.core.security import SERVER, public_file
from ops.harness import RedisServer
from ops.keys import make_keys, read_env
from tests.local.conftest import require_redis_server
from tests.local.test_pipeline import events, run_batch, start_sink, tcp
from tests.local.test_pubsub import SOME, TOPICS, batch_env, check_publisher, check_subscriber
from tests.local.test_reqrep import start_clients, start_cluster, totals
from tests.support import ROOT, wait_until

WORKERS, CLIENTS, PER_CLIENT = 3, 2, 300
PROTOCOL, NO_DETAIL = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys_dir = tmp_path_factory.mktemp("keys")
    make_keys(keys_dir)
    return keys_dir


@pytest.fixture
def curve_nodes(nodes: Any, keys: Path) -> Any:
    """``nodes`` with SECURITY=curve and the test's keys for every node."""

    def start(role: str, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
        return nodes(role, {"SECURITY": "curve", "KEYS_DIR": str(keys), **(env or {})}, **kwargs)

    return start


def request_frame(i: int) -> bytes:
    return wire.make("request", f"stranger:{i}", {"n": i}, origin="stranger")


def test_curve_request_reply_delivers_every_request_and_refuses_a_plain_client(curve_nodes: Any) -> None:
    broker, workers, frontend = start_cluster(curve_nodes, "proxy", workers=WORKERS)
    clients = start_clients(curve_nodes, frontend, count=CLIENTS, requests=PER_CLIENT)
    docs = [c.wait_state("done", 60) for c in clients]
    total = CLIENTS * PER_CLIENT
    assert totals(docs, "sent", "replied", "failed", "rejected") == {
        "sent": total,
        "replied": total,
        "failed": 0,
        "rejected": 0,
    }
    b = broker.status()
    assert b["security"] == "curve"
    assert b["counters"]["requests"] == b["counters"]["replies"] == total
    assert sum(b["labelled"]["replies_by_worker"].values()) == total
    assert b["counters"]["auth_denied"] == 0

    # A plain REQ client (no CURVE): its handshake fails, its request is never read, the broker counts it.
    ctx = zmq.Context()
    try:
        plain = ctx.socket(zmq.REQ)
        plain.linger = 0
        plain.connect(frontend)
        plain.send(request_frame(1))
        denied = wait_until(lambda: broker.status()["counters"]["auth_denied"] or None, 15, "broker auth_denied")
        assert denied >= 1
        assert plain.poll(500) == 0  # no reply, ever: nothing was forwarded
        after = broker.status()["counters"]
        assert after["requests"] == after["replies"] == total
        assert after["received"] == b["counters"]["received"]
    finally:
        ctx.destroy(0)
    denials = events(broker, "auth_denied")
    assert denials and {d["reason"] for d in denials} <= {REFUSALS[PROTOCOL], REFUSALS[NO_DETAIL]}, denials


def test_curve_client_with_a_key_not_on_the_allow_list_is_refused_by_zap(
    curve_nodes: Any, keys: Path, tmp_path: Path
) -> None:
    """A stranger who knows the server's public key but has its own keypair: ZAP says no, the broker counts it."""
    broker, _, frontend = start_cluster(curve_nodes, "proxy", workers=1)
    public, secret = zmq.auth.load_certificate(
        zmq.auth.create_certificates(tmp_path, "stranger")[1]  # (public file, secret file)
    )
    server_public, _ = zmq.auth.load_certificate(public_file(keys, SERVER))
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.REQ)
        sock.linger = 0
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = server_public, public, secret
        sock.connect(frontend)
        sock.send(request_frame(2))
        wait_until(lambda: broker.status()["counters"]["auth_denied"] or None, 15, "broker auth_denied")
        assert sock.poll(500) == 0
        assert broker.status()["counters"]["requests"] == 0
    finally:
        ctx.destroy(0)
    zap = wait_until(lambda: events(broker, "zap_denied") or None, 10, "the broker's zap_denied log line")
    assert zap[0]["key"] == public.decode() and zap[0]["domain"] == "broker", zap
    # Under load the peer's retries may also end in other refusals; the ZAP one must be among them.
    reasons = wait_until(
        lambda: {e["reason"] for e in events(broker, "auth_denied")} or None, 10, "the broker's auth_denied log line"
    )
    assert REFUSALS[zmq.EVENT_HANDSHAKE_FAILED_AUTH] in reasons, reasons


def test_curve_pipeline_delivers_every_task(curve_nodes: Any, tmp_path: Path) -> None:
    sink, sink_ep, ctl_ep = start_sink(curve_nodes, tmp_path / "state")
    ledger, pws = run_batch(curve_nodes, tcp(), sink, sink_ep, ctl_ep, workers=2, tasks=500, batch="b-curve")
    assert (ledger["size"], ledger["distinct"], ledger["missing"], ledger["duplicates"]) == (500, 500, 0, 0)
    assert sorted(ledger["by_worker"]) == sorted(pw.name for pw in pws)
    st = sink.status()
    assert st["security"] == "curve" and st["counters"]["auth_denied"] == 0 and st["counters"]["rejected"] == 0


def test_curve_zpub_zsub_deliver_every_message_and_refuse_a_plain_sub(curve_nodes: Any) -> None:
    endpoint = tcp()
    pub = curve_nodes("zpub", {"ZPUB_BIND": endpoint, "MIN_SUBSCRIBERS": "2", **batch_env()}, name="zpub")
    # A plain SUB first: if it were let in it would count as a subscriber; refused, it is counted instead.
    ctx = zmq.Context()
    try:
        plain = ctx.socket(zmq.SUB)
        plain.linger = 0
        plain.subscribe(b"")
        plain.connect(endpoint)
        wait_until(lambda: pub.status()["counters"]["auth_denied"] or None, 15, "zpub auth_denied")
        a = curve_nodes("zsub", {"ZPUB_ENDPOINT": endpoint, "TOPICS": ",".join(SOME)}, name="zsub-a")
        b = curve_nodes("zsub", {"ZPUB_ENDPOINT": endpoint, "TOPICS": ""}, name="zsub-b")
        published = check_publisher(pub)
        check_subscriber(a, SOME, published)
        check_subscriber(b, TOPICS, published)
        assert plain.poll(200) == 0  # not one of the 1000 messages reached it
        assert sorted(name.split(".")[0] for name in pub.status()["subscribers"]) == ["zsub-a", "zsub-b"]
    finally:
        ctx.destroy(0)


@pytest.mark.parametrize("missing", ["server.key_secret", "allowed", "worker.key_secret", "server.key"])
def test_curve_missing_key_file_is_one_line_naming_it(keys: Path, tmp_path: Path, missing: str) -> None:
    partial = tmp_path / "keys"
    make_keys(partial)
    target = partial / missing
    subprocess.run(["rm", "-rf", str(target)], check=True)
    role = "broker" if missing in ("server.key_secret", "allowed") else "worker"
    env = {"PATH": "/usr/bin:/bin", "SECURITY": "curve", "KEYS_DIR": str(partial), "STATUS_PORT": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "nodes", role], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(target) in lines[0] and "python -m ops.keys" in lines[0], lines


def test_bad_security_value_is_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "SECURITY": "tls", "STATUS_PORT": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "nodes", "broker"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "SECURITY=" in proc.stderr


# --- Redis ACL users per role -------------------------------------------------------------------------


@pytest.fixture
def acl_redis(keys: Path, tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server running the generated redis.acl (the default user's password is REDIS_PASSWORD)."""
    require_redis_server()
    workdir = tmp_path / "redis"
    workdir.mkdir()
    env = read_env(keys / "redis.env")
    server = RedisServer(workdir, extra=[f"aclfile {keys / 'redis.acl'}"], password=env["REDIS_PASSWORD"])
    try:
        yield server.start()
    finally:
        server.stop()


def role_env(server: RedisServer, keys: Path, role: str, **extra: str) -> dict[str, str]:
    """A pub/sub role's Redis settings with its own ACL user and password (from ops.keys' redis.env)."""
    password = read_env(keys / "redis.env")[f"REDIS_{role.upper()}_PASSWORD"]
    return {"REDIS_URL": server.url, "REDIS_USER": role, "REDIS_PASSWORD": password, **extra}


def user_client(server: RedisServer, keys: Path, role: str) -> redis.Redis:
    env = role_env(server, keys, role)
    return redis.Redis.from_url(server.url, username=role, password=env["REDIS_PASSWORD"], socket_timeout=2)


@pytest.mark.redis
def test_redis_acl_users_deliver_a_batch_and_may_do_nothing_else(
    nodes: Any, keys: Path, acl_redis: RedisServer
) -> None:
    sub = nodes("subscriber", role_env(acl_redis, keys, "subscriber", TOPICS=",".join(TOPICS)), name="sub")
    pub = nodes("publisher", role_env(acl_redis, keys, "publisher", MIN_SUBSCRIBERS="1", **batch_env()), name="pub")
    check_subscriber(sub, TOPICS, check_publisher(pub))

    with user_client(acl_redis, keys, "subscriber") as as_subscriber:
        with pytest.raises(redis.exceptions.NoPermissionError):
            as_subscriber.publish("catA", b"forged")
        with pytest.raises(redis.exceptions.NoPermissionError):
            as_subscriber.set("k", "v")
    with user_client(acl_redis, keys, "publisher") as as_publisher:
        assert as_publisher.publish("catA", b"hatA") == 1  # its own channels: allowed (the subscriber hears it)
        with pytest.raises(redis.exceptions.NoPermissionError):
            as_publisher.publish("other", b"x")  # not one of cat*
        with pytest.raises(redis.exceptions.NoPermissionError):
            as_publisher.keys("*")
        listener = as_publisher.pubsub()
        with pytest.raises(redis.exceptions.NoPermissionError):
            listener.subscribe("catA")
            listener.get_message(timeout=2)
        listener.close()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(acl_redis.url, username="publisher", password="wrong", socket_timeout=2).ping()
    wait_until(lambda: sub.status()["counters"]["plain"] == 1 or None, 10, "the subscriber to count the plain hatA")
