"""SECURITY=curve without processes: the ZAP answers, the key checks at load, the ACL file, compose/security.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
import zmq
import zmq.auth

from nodes import roles
from nodes.core import config
from nodes.core.security import SERVER, Gatekeeper, allowed_keys, public_file
from ops.compose import Project
from ops.keys import REDIS_USERS, SECURITY_FILE, acl_text, connecting_roles, make_keys, read_env, secure_project


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys_dir = tmp_path_factory.mktemp("keys")
    make_keys(keys_dir)
    return keys_dir


def zap_request(key: bytes, mechanism: bytes = b"CURVE") -> list[bytes]:
    return [b"1.0", b"7", b"broker", b"10.0.0.9", b"", mechanism, key]


def raw_key(path: Path) -> bytes:
    public, _ = zmq.auth.load_certificate(path)
    return zmq.utils.z85.decode(public)


def test_make_keys_writes_every_role_an_allowed_keypair_and_is_idempotent(keys: Path) -> None:
    assert (
        set(allowed_keys(keys).values())
        == set(connecting_roles())
        == {
            "client",
            "worker",
            "ventilator",
            "pipeworker",
            "zsub",
        }
    )
    assert make_keys(keys) == []  # a second run keeps everything
    env = read_env(keys / "redis.env")
    assert set(env) == {"REDIS_PASSWORD", "REDIS_PUBLISHER_PASSWORD", "REDIS_SUBSCRIBER_PASSWORD"}
    assert len(set(env.values())) == 3  # one password per user, none shared


def test_gatekeeper_allows_listed_keys_and_refuses_the_rest(keys: Path) -> None:
    ctx = zmq.Context()
    keeper = Gatekeeper.acquire(ctx, str(keys))
    try:
        assert Gatekeeper.acquire(ctx, str(keys)) is keeper  # one per context
        keeper.release()
        worker = raw_key(public_file(keys, "worker"))
        assert keeper.answer(zap_request(worker))[2:5] == [b"200", b"OK", b"worker"]
        stranger = zmq.utils.z85.decode(zmq.curve_keypair()[0])
        assert keeper.answer(zap_request(stranger))[2] == b"400"
        assert keeper.answer(zap_request(raw_key(public_file(keys, SERVER))))[2] == b"400"  # not a client key
        assert keeper.answer(zap_request(b"", b"NULL"))[2] == b"400"
        assert keeper.answer([b"0.9", b"1"])[2] == b"500"
        assert (keeper.denied, keeper.allowed_count) == (3, 1)
    finally:
        keeper.release()
        ctx.term()


@pytest.mark.parametrize(("role", "needs"), [("broker", "server.key_secret"), ("zsub", "zsub.key_secret")])
def test_curve_settings_name_the_missing_key_file(tmp_path: Path, role: str, needs: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        roles.load(role, {"SECURITY": "curve", "KEYS_DIR": str(tmp_path)})
    assert str(tmp_path / needs) in str(err.value) and "ops.keys" in str(err.value) and "\n" not in str(err.value)


def test_curve_settings_load_with_the_keys(keys: Path) -> None:
    for role in roles.NAMES:
        env = {"SECURITY": "curve", "KEYS_DIR": str(keys), "REDIS_PASSWORD": "x"}
        assert roles.load(role, env).security == "curve"


def test_acl_text_gives_each_pubsub_role_its_own_user() -> None:
    text = acl_text({"default": "a", "publisher": "b", "subscriber": "c"}, "cat*")
    lines = {line.split()[1]: line for line in text.splitlines()}
    assert set(lines) == {"default", *REDIS_USERS}
    assert "+publish" in lines["publisher"] and "&cat*" in lines["publisher"] and "subscribe" not in lines["publisher"]
    assert "+subscribe" in lines["subscriber"] and "publish" not in lines["subscriber"]
    assert ">" not in text  # hashed passwords only (#sha256), never clear ones


def test_security_yaml_covers_every_zmq_role_and_sets_only_settings() -> None:
    services = yaml.safe_load(SECURITY_FILE.read_text())["services"]
    zmq_roles = {r.name for r in roles.ROLES.values() if r.binds or r.connects}
    curve = {name for name, svc in services.items() if (svc.get("environment") or {}).get("SECURITY") == "curve"}
    assert curve == zmq_roles
    for name, svc in services.items():
        assert svc["volumes"], name
        if name in roles.ROLES:
            assert set(svc.get("environment") or {}) <= roles.ROLES[name].envs(), name
    for user in REDIS_USERS:
        assert services[user]["environment"]["REDIS_USER"] == user


def test_secure_project_lays_the_file_over_or_says_what_to_run(keys: Path, tmp_path: Path) -> None:
    plain = Project("p")
    secure_project(plain, {})
    assert plain.overrides == []
    with pytest.raises(config.ConfigError, match="SECURITY='tls'"):
        secure_project(Project("p"), {"SECURITY": "tls"})
    with pytest.raises(config.ConfigError, match="make keys"):
        secure_project(Project("p"), {"SECURITY": "curve", "KEYS_DIR": str(tmp_path / "none")})
    curve = Project("p")
    secure_project(curve, {"SECURITY": "curve", "KEYS_DIR": str(keys)})
    assert curve.overrides == [SECURITY_FILE]
    assert curve.env["KEYS_HOST_DIR"] == str(keys.resolve())
    assert curve.env["REDIS_SUBSCRIBER_PASSWORD"] == read_env(keys / "redis.env")["REDIS_SUBSCRIBER_PASSWORD"]
