"""tcpserver: binds TCP_BIND and echoes every length-prefixed message whole, in order, on the connection
it came from (the chapter's TCP server, framed). Connects to nothing.

Each connection has a :class:`~nodes.sockets.protocol.Deframer`: bytes in, whole messages out, however
``recv`` cut them. Bad input closes that connection, counted and logged as a reject, and the server
goes on: a length prefix above MAX_MSG_SIZE (``oversized``), or a peer that closed in the middle of a
message (``short``). One thread, non-blocking sockets and a selector; a connection whose echoes pile up
unread (more than MAX_BACKLOG bytes) is not read again until they drain, so memory stays bounded.
Counters: ``received``/``sent`` (messages), ``accepted``/``closed`` (connections), ``rejected`` (=
``oversized`` + ``short``), ``reset`` (a connection that failed), ``split_reads``/``joined_reads`` (see
protocol). ``peers`` in /status: the open connections.
"""

from __future__ import annotations

import logging
import selectors
import socket
from dataclasses import dataclass, field
from typing import Any

from nodes.core.lifecycle import DRAIN_BATCH, POLL_MS, Node
from nodes.core.log import event
from nodes.sockets import net, protocol

log = logging.getLogger(__name__)

#: Bytes one recv may return.
RECV_BYTES = 256 * 1024
#: Unsent echo bytes of one connection above which the server stops reading it (its client is not reading).
MAX_BACKLOG = 4 * 1024 * 1024
#: Most connections at once; more are accepted and closed at once (counted as ``refused``).
MAX_CONNECTIONS = 1024


@dataclass
class Conn:
    peer: str
    deframer: protocol.Deframer
    out: bytearray = field(default_factory=bytearray)


class TcpServer(Node):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("accepted", "closed", "refused", "oversized", "short", "reset", "split_reads", "joined_reads"):
            self.stats.counters[name] = 0
        self.address: str | None = None
        self.conns: dict[socket.socket, Conn] = {}
        self.selector = selectors.DefaultSelector()

    def peer_count(self) -> int:
        return len(self.conns)

    def summary(self) -> str:
        c = self.stats.counters
        return (
            f"echoed {c['sent']} messages on {c['accepted']} connections rejected {c['rejected']}"
            f" (split reads {c['split_reads']} joined {c['joined_reads']})"
        )

    def extra_status(self) -> dict[str, Any]:
        return {"address": self.address, "connections": len(self.conns)}

    def serve(self) -> int:
        listener = net.bind(socket.SOCK_STREAM, self.settings.bind, "TCP_BIND", self.role)
        self.address = net.show(listener.getsockname())
        self.selector.register(listener, selectors.EVENT_READ)
        try:
            while self.running():
                for key, mask in self.selector.select(POLL_MS / 1000):
                    sock = key.fileobj
                    if sock is listener:
                        self._accept(listener)
                        continue
                    conn = self.conns.get(sock)
                    if conn is not None and mask & selectors.EVENT_WRITE:
                        self._write(sock, conn)
                    if sock in self.conns and mask & selectors.EVENT_READ:
                        self._read(sock, conn)
        finally:
            for sock in list(self.conns):
                self._close(sock, "server stopping")
            self.selector.close()
            listener.close()
        return 0

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(DRAIN_BATCH):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: the client sees a reset, we go on
                event(log, "accept_failed", logging.WARNING, error=exc.strerror or str(exc))
                return
            if len(self.conns) >= MAX_CONNECTIONS:
                self.stats.counters["refused"] += 1
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns[sock] = Conn(net.show(addr), protocol.Deframer(self.max_size, self.stats.counters))
            self.selector.register(sock, selectors.EVENT_READ)
            self.stats.counters["accepted"] += 1
            event(log, "accepted", peer=self.conns[sock].peer, connections=len(self.conns))

    def _read(self, sock: socket.socket, conn: Conn) -> None:
        counters = self.stats.counters
        try:
            data = sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            counters["reset"] += 1
            self._close(sock, f"recv failed: {exc.strerror or exc}")
            return
        if not data:
            if conn.deframer.pending:
                counters["short"] += 1
                self.reject(f"connection closed {conn.deframer.pending} bytes into a message (short frame)", conn.peer)
            self._close(sock, "closed by peer")
            return
        try:
            messages = conn.deframer.feed(data)
        except protocol.FramingError as exc:
            counters["oversized"] += 1
            self.reject(f"{exc}: closing the connection", conn.peer)
            self._close(sock, "oversized length prefix")
            return
        for body in messages:
            counters["received"] += 1
            conn.out += protocol.frame(body)
            counters["sent"] += 1
        if conn.out:
            self._write(sock, conn)

    def _write(self, sock: socket.socket, conn: Conn) -> None:
        try:
            n = sock.send(conn.out)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            self.stats.counters["reset"] += 1
            self._close(sock, f"send failed: {exc.strerror or exc}")
            return
        del conn.out[:n]
        want = selectors.EVENT_WRITE if conn.out else selectors.EVENT_READ
        if conn.out and len(conn.out) < MAX_BACKLOG:
            want |= selectors.EVENT_READ
        if self.selector.get_key(sock).events != want:
            self.selector.modify(sock, want)

    def _close(self, sock: socket.socket, why: str) -> None:
        conn = self.conns.pop(sock)
        self.selector.unregister(sock)
        sock.close()
        self.stats.counters["closed"] += 1
        event(log, "connection_closed", peer=conn.peer, why=why, connections=len(self.conns))
