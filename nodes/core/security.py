"""Opt-in ZeroMQ CURVE (``SECURITY=curve``): encryption plus an allow-list of client keys, applied in one place.

Why here: every socket of every role is opened by :class:`nodes.core.lifecycle.Node`, which knows whether
it binds (the server side of CURVE) or connects (the client side). So the roles stay unaware of security:
:meth:`Curve.server` is applied in ``Node.bind`` and :meth:`Curve.client` before every connect.

The key layout (``python -m ops.keys`` makes it once, with ``zmq.auth.create_certificates``) in KEYS_DIR:

* ``server.key`` / ``server.key_secret`` - the keypair of every *binding* socket (broker frontend and
  backend, ventilator, sink, zpub). Connecting nodes need only the public half (``server.key``).
* ``ROLE.key`` / ``ROLE.key_secret`` - one client keypair per connecting role (client, worker, ventilator,
  pipeworker, zsub), so that the ZAP log names the role of every peer and one role can be locked out.
* ``allowed/*.key`` - the allow-list: the public keys a binding node accepts (copies of the roles'
  ``ROLE.key``). A peer whose key is not there is refused by :class:`Gatekeeper` (ZAP), a peer without
  CURVE at all fails the handshake; both are counted by the binding node under ``auth_denied``
  (:meth:`Node.refused`, from the socket monitor's HANDSHAKE_FAILED events) and get nothing.

``plain`` (the default) is :class:`Plain`: no options, no ZAP, exactly the unauthenticated cluster.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

from nodes.core.log import event, worth_logging

log = logging.getLogger(__name__)

SERVER = "server"
ALLOWED = "allowed"
#: ZAP's well-known endpoint (RFC 27): libzmq asks whoever binds it about every handshake of a socket
#: that has a ZAP domain.
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_VERSION = b"1.0"


def public_file(keys_dir: str | Path, name: str) -> Path:
    return Path(keys_dir) / f"{name}.key"


def secret_file(keys_dir: str | Path, name: str) -> Path:
    return Path(keys_dir) / f"{name}.key_secret"


def needed_files(keys_dir: str, role: str, binds: bool, connects: bool) -> list[Path]:
    """The key files a role's node reads under CURVE: the server keypair to bind, its own keypair to connect."""
    files: list[Path] = []
    if binds:
        files += [secret_file(keys_dir, SERVER), Path(keys_dir) / ALLOWED]
    if connects:
        files += [secret_file(keys_dir, role), public_file(keys_dir, SERVER)]
    return files


def allowed_keys(keys_dir: str | Path) -> dict[bytes, str]:
    """Public key (raw 32 bytes) -> name (the file's stem, e.g. ``worker``) of every key in ``allowed/``."""
    keys: dict[bytes, str] = {}
    for path in sorted((Path(keys_dir) / ALLOWED).glob("*.key")):
        public, _ = zmq.auth.load_certificate(path)
        keys[zmq.utils.z85.decode(public)] = path.stem
    return keys


class Plain:
    """SECURITY=plain: sockets as they are (no authentication, no encryption)."""

    mode = "plain"

    def server(self, sock: zmq.Socket, domain: str) -> None:
        pass

    def client(self, sock: zmq.Socket) -> None:
        pass

    def close(self) -> None:
        pass


class Curve(Plain):
    """SECURITY=curve: the server keypair on bound sockets (with a ZAP domain), the role's keypair on connects."""

    mode = "curve"

    def __init__(self, ctx: zmq.Context, keys_dir: str, role: str) -> None:
        self.ctx = ctx
        self.keys_dir = keys_dir
        self.role = role
        self.gatekeeper: Gatekeeper | None = None

    def server(self, sock: zmq.Socket, domain: str) -> None:
        if self.gatekeeper is None:
            self.gatekeeper = Gatekeeper.acquire(self.ctx, self.keys_dir)
        public, secret = zmq.auth.load_certificate(secret_file(self.keys_dir, SERVER))
        sock.curve_server = True
        sock.curve_publickey = public
        sock.curve_secretkey = secret
        sock.zap_domain = domain.encode()  # a domain makes libzmq ask the Gatekeeper about every peer

    def client(self, sock: zmq.Socket) -> None:
        public, secret = zmq.auth.load_certificate(secret_file(self.keys_dir, self.role))
        server_public, _ = zmq.auth.load_certificate(public_file(self.keys_dir, SERVER))
        sock.curve_serverkey = server_public
        sock.curve_publickey = public
        sock.curve_secretkey = secret

    def close(self) -> None:
        if self.gatekeeper is not None:
            self.gatekeeper.release()
            self.gatekeeper = None


def for_settings(settings: Any, ctx: zmq.Context) -> Plain:
    return Curve(ctx, settings.keys_dir, settings.role) if settings.security == "curve" else Plain()


class Gatekeeper:
    """A ZAP handler: allows a CURVE client whose public key is in ``allowed/``, refuses and logs any other.

    One per ``zmq.Context`` (libzmq has one ZAP endpoint per context), shared by the nodes that run as
    threads of one process and stopped with the last of them. It runs in its own thread because libzmq
    waits for the answer inside the handshake. The refusal is *counted* by the binding node itself (the
    socket monitor's HANDSHAKE_FAILED_AUTH, see ``Node.refused``); here it is logged with what only ZAP
    knows: the peer's address and key. :attr:`denied` totals the refusals of this context.
    """

    _lock = threading.Lock()
    _running: dict[int, Gatekeeper] = {}

    def __init__(self, ctx: zmq.Context, keys_dir: str) -> None:
        self.ctx = ctx
        self.allowed = allowed_keys(keys_dir)
        self.users = 0
        self.denied = 0
        self.allowed_count = 0
        self._stop = threading.Event()
        self._sock = ctx.socket(zmq.REP)
        self._sock.linger = 0
        self._sock.bind(ZAP_ENDPOINT)
        self._thread = threading.Thread(target=self._run, name="zap", daemon=True)
        self._thread.start()
        event(log, "zap_started", allowed=sorted(self.allowed.values()), keys_dir=keys_dir)

    @classmethod
    def acquire(cls, ctx: zmq.Context, keys_dir: str) -> Gatekeeper:
        with cls._lock:
            keeper = cls._running.get(id(ctx))
            if keeper is None:
                keeper = cls._running[id(ctx)] = cls(ctx, keys_dir)
            keeper.users += 1
            return keeper

    def release(self) -> None:
        with self._lock:
            self.users -= 1
            if self.users > 0:
                return
            self._running.pop(id(self.ctx), None)
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._sock.poll(100):
                    self._sock.send_multipart(self.answer(self._sock.recv_multipart()))
        finally:
            self._sock.close(0)

    def answer(self, request: list[bytes]) -> list[bytes]:
        """The ZAP reply to one request (RFC 27): 200 for an allowed CURVE key, 400 for anything else."""
        if len(request) < 6 or request[0] != ZAP_VERSION:
            rid = request[1] if len(request) > 1 else b""
            return [ZAP_VERSION, rid, b"500", b"malformed ZAP request", b"", b""]
        _, rid, domain, address, _identity, mechanism, *credentials = request
        key = credentials[0] if mechanism == b"CURVE" and credentials else b""
        name = self.allowed.get(key)
        if name is not None:
            self.allowed_count += 1
            return [ZAP_VERSION, rid, b"200", b"OK", name.encode(), b""]
        self.denied += 1
        if worth_logging(self.denied):
            event(
                log,
                "zap_denied",
                logging.WARNING,
                domain=domain.decode(errors="replace"),
                address=address.decode(errors="replace"),
                mechanism=mechanism.decode(errors="replace"),
                key=zmq.utils.z85.encode(key).decode() if len(key) == 32 else None,
                reason="client key not in the allow-list",
                total=self.denied,
            )
        return [ZAP_VERSION, rid, b"400", b"key not allowed", b"", b""]
