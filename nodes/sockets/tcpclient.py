"""tcpclient: one connection to the tcpserver (TCP_SERVER); sends REQUESTS length-prefixed messages of
random sizes (0..MAX_PAYLOAD bytes, random bytes, from SEED) and checks that each echo comes back whole,
in order. Binds nothing.

Up to WINDOW messages are in flight, so the stream really carries several at once: the counters
``split_reads`` and ``joined_reads`` say how many of this client's reads ended inside a message or
held several, i.e. how often a reader without framing (the chapter's ``recv(1024)``) would have got it
wrong. Each request ends one way: ``answered`` (its echo, byte for byte, within REQUEST_TIMEOUT) or
``lost`` (no echo in time, a wrong one, or the connection broke with it in flight; the client then
reconnects, waiting up to WAIT_TIMEOUT, and goes on with the next). ``sent == answered + lost``.
Exit code: 0 every request answered, 1 some lost (or no server within WAIT_TIMEOUT), 3 stopped early.
"""

from __future__ import annotations

import collections
import logging
import random
import socket
import time
from typing import Any

from nodes.core import config
from nodes.core.lifecycle import POLL_MS
from nodes.core.log import event
from nodes.sockets import net, protocol
from nodes.sockets.batch import EchoBatch

log = logging.getLogger(__name__)

RECV_BYTES = 256 * 1024


class TcpClient(EchoBatch):
    SUMMARY = ("split_reads", "joined_reads", "reconnects")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("bytes_sent", "bytes_received", "largest"):
            self.stats.counters[name] = 0
        self.seed = self.settings.seed or random.SystemRandom().randrange(1, 2**31)
        self.rng = random.Random(self.seed)
        self.sock: socket.socket | None = None
        self.deframer = protocol.Deframer(self.settings.max_payload, self.stats.counters)
        #: (deadline, body) of the messages sent and not yet echoed, in order.
        self.inflight: collections.deque[tuple[float, bytes]] = collections.deque()
        self.out = bytearray()

    def peer_count(self) -> int:
        return int(self.sock is not None)

    def extra_status(self) -> dict[str, Any]:
        return super().extra_status() | {"seed": self.seed, "max_payload": self.settings.max_payload}

    def serve(self) -> int:
        event(log, "batch", requests=self.settings.requests, max_payload=self.settings.max_payload, seed=self.seed)
        self.sock = self.wait_server(self._connect, "tcpserver connection")
        self.started = time.monotonic()
        try:
            while self.sock is not None and self._step(self.sock):
                pass
        finally:
            if self.sock is not None:
                self.sock.close()
                self.sock = None
        return self.finish()

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(config.split_address(self.settings.server), timeout=2.0)
        except OSError:
            return None
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.deframer = protocol.Deframer(self.settings.max_payload, self.stats.counters)
        return sock

    def _step(self, sock: socket.socket) -> bool:
        """One turn: queue what the window and RATE allow, wait for the socket, read, write, expire.

        False once the batch is over (every request answered or lost, or the node is stopping)."""
        s, counters = self.settings, self.stats.counters
        if not self.running() or (counters["sent"] >= s.requests and not self.inflight):
            return False
        while counters["sent"] < s.requests and len(self.inflight) < s.window and not self.schedule.wait():
            body = self.rng.randbytes(self.rng.randint(0, s.max_payload))
            self.inflight.append((time.monotonic() + s.request_timeout, body))
            self.out += protocol.frame(body)
            self.schedule.take()
            counters["sent"] += 1
            counters["largest"] = max(counters["largest"], len(body))
        waits = [POLL_MS / 1000]
        if self.inflight:
            waits.append(self.inflight[0][0] - time.monotonic())
        if counters["sent"] < s.requests and len(self.inflight) < s.window:
            waits.append(self.schedule.wait())
        try:
            can_read, can_write = net.readable(sock, min(waits), writing=bool(self.out))
            if can_write:
                n = sock.send(self.out)
                counters["bytes_sent"] += n
                del self.out[:n]
            if can_read:
                self._read(sock)
        except (BlockingIOError, InterruptedError):
            pass
        except protocol.FramingError as exc:
            self._broken(str(exc), bad_echo=True)
            return self.sock is not None
        except OSError as exc:
            self._broken(exc.strerror or str(exc))
            return self.sock is not None
        if self.inflight and self.inflight[0][0] <= time.monotonic():
            self._broken(f"no echo within REQUEST_TIMEOUT={s.request_timeout:g}s")
        return self.sock is not None

    def _read(self, sock: socket.socket) -> None:
        data = sock.recv(RECV_BYTES)
        if not data:
            raise ConnectionResetError("the server closed the connection")
        counters = self.stats.counters
        counters["bytes_received"] += len(data)
        for body in self.deframer.feed(data):
            counters["received"] += 1
            if not self.inflight:
                raise protocol.FramingError("an echo for no request in flight")
            _, sent = self.inflight.popleft()
            if body != sent:
                self.inflight.appendleft((0.0, sent))  # lost with the rest when the connection is dropped
                raise protocol.FramingError(f"echo of {len(body)} bytes differs from the {len(sent)} bytes sent")
            counters["answered"] += 1

    def _broken(self, why: str, bad_echo: bool = False) -> None:
        """The stream is no longer trustworthy: everything in flight is lost; reconnect for the rest."""
        counters = self.stats.counters
        lost = len(self.inflight)
        counters["lost"] += lost
        self.inflight.clear()
        self.out.clear()
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        if bad_echo:
            self.reject(why, self.settings.server)
        event(log, "connection_lost", logging.WARNING, why=why, lost=lost, sent=counters["sent"])
        if counters["sent"] < self.settings.requests and not self.stop.is_set():
            counters["reconnects"] += 1
            self.sock = self.wait_server(self._connect, "tcpserver connection")
