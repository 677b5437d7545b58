"""``python -m ops.keys [--dir build/keys]``: the keys of SECURITY=curve, made once (``make keys``).

What it writes (existing files are kept, so running it again changes nothing; ``--force`` makes new ones):

* ZeroMQ CURVE keypairs by ``zmq.auth.create_certificates``: ``server`` (every binding socket) and one
  per role that connects (client, worker, ventilator, pipeworker, zsub), and ``allowed/ROLE.key``, the
  allow-list the binding nodes' ZAP handler reads (nodes/core/security.py).
* ``redis.acl``: one Redis ACL user per pub/sub role with its own password, stored as a SHA-256 hash:
  ``publisher`` may PUBLISH (to CHANNELS only) and list the clients (to count subscribers),
  ``subscriber`` may only SUBSCRIBE/PSUBSCRIBE; ``default`` keeps every right for the operator's tools
  (healthcheck, redis-cli), with REDIS_PASSWORD. ``redis.env`` holds the clear passwords for compose.

Why build/keys: generated, git-ignored, outside the image (the build context excludes build/ but the
wheelhouse), mounted read-only into the containers that need it (compose/security.yaml). Secret files are
readable by the image's ``node`` group (gid 10001) when this runs as root, otherwise by everyone who can
read the checkout: this is a demo's trust boundary (the machine), not a secret store.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import sys
from pathlib import Path

import zmq.auth

from nodes import roles
from nodes.core import config
from nodes.core.security import ALLOWED, SERVER, needed_files, public_file, secret_file
from ops.compose import ROOT, Project

DEFAULT_DIR = ROOT / "build" / "keys"
#: Laid over compose.yaml when SECURITY=curve (the keys mounted read-only, Redis ACL users).
SECURITY_FILE = ROOT / "compose" / "security.yaml"
#: The image's ``node`` group (compose/Dockerfile): the containers read the secrets through it.
NODE_GID = 10001
#: Channels the publisher user may PUBLISH to (an ACL glob): the default TOPICS catA..catD.
DEFAULT_CHANNELS = "cat*"
ACL_FILE = "redis.acl"
ENV_FILE = "redis.env"
#: Redis users: role -> the ACL rules after its password (``-@all`` first: nothing but what is listed).
HOUSEKEEPING = "+ping +client|setname"  # redis-py names its connection (CLIENT SETNAME)
REDIS_USERS = {
    "publisher": "resetchannels &{channels} -@all +publish +client|list " + HOUSEKEEPING,
    "subscriber": "resetchannels &* -@all +subscribe +psubscribe +unsubscribe +punsubscribe " + HOUSEKEEPING,
}


def connecting_roles() -> list[str]:
    """Roles that connect a ZeroMQ socket, hence need a client keypair (from the registry)."""
    return [r.name for r in roles.ROLES.values() if r.zmq_connects]


def password_env(user: str) -> str:
    return "REDIS_PASSWORD" if user == "default" else f"REDIS_{user.upper()}_PASSWORD"


def acl_text(passwords: dict[str, str], channels: str) -> str:
    """The ACL file: ``default`` with every right, one restricted user per pub/sub role."""

    def digest(password: str) -> str:
        return hashlib.sha256(password.encode()).hexdigest()

    lines = [f"user default on #{digest(passwords['default'])} ~* &* +@all"]
    for user, rules in REDIS_USERS.items():
        lines.append(f"user {user} on #{digest(passwords[user])} {rules.format(channels=channels)}")
    return "\n".join(lines) + "\n"


def read_env(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    pairs = (line.partition("=") for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, _, v in pairs if not k.startswith("#")}


def protect(path: Path) -> None:
    """Secrets: 0640 with the image's group when we may chown (root), else 0644 (see the module doc)."""
    try:
        os.chown(path, -1, NODE_GID)
        path.chmod(0o640)
    except PermissionError:
        path.chmod(0o644)


def make_keys(keys_dir: Path, force: bool = False, channels: str = DEFAULT_CHANNELS) -> list[Path]:
    """Write what is missing (everything with ``force``); returns the files written."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    keys_dir.chmod(0o755)
    allowed = keys_dir / ALLOWED
    allowed.mkdir(exist_ok=True)
    written: list[Path] = []
    for name in [SERVER, *connecting_roles()]:
        if force or not secret_file(keys_dir, name).exists():
            public, secret = zmq.auth.create_certificates(keys_dir, name)
            protect(Path(secret))
            written += [Path(public), Path(secret)]
        if name != SERVER and (force or not public_file(allowed, name).exists()):
            shutil.copyfile(public_file(keys_dir, name), public_file(allowed, name))
            written.append(public_file(allowed, name))
    env_path, acl_path = keys_dir / ENV_FILE, keys_dir / ACL_FILE
    env = {} if force else read_env(env_path)
    passwords = {u: env.get(password_env(u)) or secrets.token_urlsafe(24) for u in ("default", *REDIS_USERS)}
    new_env = {password_env(u): p for u, p in passwords.items()}
    if force or new_env != env or not acl_path.exists():
        lines = ["# Written by python -m ops.keys: the clear passwords of the users in redis.acl."]
        env_path.write_text("\n".join([*lines, *(f"{k}={v}" for k, v in new_env.items())]) + "\n")
        acl_path.write_text(acl_text(passwords, channels))
        for path in (env_path, acl_path):
            protect(path)
        written += [env_path, acl_path]
    return written


def missing_keys(keys_dir: Path) -> list[Path]:
    """Key files any role would miss in ``keys_dir`` (plus the Redis ACL files compose needs)."""
    wanted = {
        path for r in roles.ROLES.values() for path in needed_files(str(keys_dir), r.name, r.zmq_binds, r.zmq_connects)
    }
    wanted |= {keys_dir / ACL_FILE, keys_dir / ENV_FILE}
    return sorted(p for p in wanted if not p.exists())


def secure_project(project: Project, environ: dict[str, str] | None = None) -> None:
    """SECURITY=curve in the environment: lay compose/security.yaml over ``project`` with the keys of KEYS_DIR.

    Raises :class:`config.ConfigError` (one line) for a bad SECURITY or missing keys; SECURITY=plain or unset
    leaves the project as it is (the unauthenticated default).
    """
    environ = dict(os.environ if environ is None else environ)
    raw = environ.get("SECURITY", "plain")
    try:
        mode = config.choice(*config.SECURITY_MODES)(raw)
    except ValueError as exc:
        raise config.ConfigError(f"SECURITY={raw!r} {exc} (plain: no authentication; curve: make keys first)") from None
    if mode != "curve":
        return
    keys_dir = Path(environ.get("KEYS_DIR") or DEFAULT_DIR).resolve()
    missing = missing_keys(keys_dir)
    if missing:
        raise config.ConfigError(
            f"SECURITY=curve needs {missing[0]}, which does not exist: "
            f"run `make keys` (python -m ops.keys --dir {keys_dir})"
        )
    project.overrides.append(SECURITY_FILE)
    project.env.update(read_env(keys_dir / ENV_FILE), KEYS_HOST_DIR=str(keys_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.keys", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where the keys go (default %(default)s)")
    parser.add_argument("--force", action="store_true", help="make new keys and passwords even if some exist")
    parser.add_argument(
        "--channels", default=DEFAULT_CHANNELS, help="ACL glob of the channels the publisher may use (%(default)s)"
    )
    args = parser.parse_args(argv)
    written = make_keys(args.dir, args.force, args.channels)
    for path in written:
        print(f"wrote {path}")
    print(f"keys in {args.dir}: {'up to date' if not written else f'{len(written)} files written'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
