"""Plain-socket plumbing the echo roles share: addresses (``HOST:PORT``) to bind or reach, and waits.

Kept apart from :mod:`nodes.sockets.protocol` (what goes on the wire) because it is about the
operating system: resolution, bind errors that must read as configuration errors, select.
"""

from __future__ import annotations

import logging
import select
import socket

from nodes.core import config
from nodes.core.log import event

log = logging.getLogger(__name__)


def resolve(address: str, kind: int) -> tuple[int, tuple]:
    """(family, sockaddr) of a checked ``HOST:PORT``; ``*`` binds every IPv4 interface. Raises OSError."""
    host, port = config.split_address(address)
    if not host:
        return socket.AF_INET, ("0.0.0.0", port)
    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=kind)[0]
    return family, sockaddr


def show(sockaddr: tuple) -> str:
    host, port = sockaddr[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind(kind: int, address: str, env: str, role: str) -> socket.socket:
    """A non-blocking socket bound to ``address`` (TCP: listening); a bind failure is a ConfigError naming ``env``."""
    try:
        family, sockaddr = resolve(address, kind)
        sock = socket.socket(family, kind)
    except OSError as exc:
        raise config.ConfigError(f"{env}={address!r} cannot be resolved: {exc.strerror or exc} ({role})") from None
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
    except OSError as exc:
        sock.close()
        raise config.ConfigError(
            f"{env}={address!r} cannot be bound: {exc.strerror or exc} (choose a free port, or 0 for any) ({role})"
        ) from None
    sock.setblocking(False)
    event(log, "bound", address=show(sock.getsockname()), transport="udp" if kind == socket.SOCK_DGRAM else "tcp")
    return sock


def readable(sock: socket.socket, timeout: float, writing: bool = False) -> tuple[bool, bool]:
    """Wait up to ``timeout`` s for ``sock`` to be readable (or, if ``writing``, writable): (readable, writable)."""
    r, w, _ = select.select([sock], [sock] if writing else [], [], max(0.0, timeout))
    return bool(r), bool(w)
