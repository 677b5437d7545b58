"""udpclient: sends REQUESTS numbered datagrams to the udpserver (UDP_SERVER) and counts what came back.
Binds nothing.

UDP promises nothing: a datagram or its echo may be lost, duplicated, or overtaken by a later one,
and nobody tells the sender. So every request is numbered (protocol: 8-byte sequence number + payload
of PAYLOAD_BYTES random bytes), up to WINDOW are in flight, and each ends one way:

- ``answered``: its exact echo came back within REQUEST_TIMEOUT;
- ``lost``: it did not (the datagram or its echo vanished, or came too late: counted again as ``late``).

Also counted, never hidden: ``reordered`` (an echo that arrived after the echo of a later request),
``duplicates`` (a second echo of the same request), ``rejected`` (a datagram that is no echo of ours),
``refused`` (the kernel reported the server's port closed: ICMP port unreachable). Nothing is re-sent.
At the end ``sent == answered + lost``. Before the batch, the client probes (sequence 0) until the
server echoes, for WAIT_TIMEOUT: a handshake instead of a sleep. Exit code: 0 every request answered,
1 some lost (or the server never answered the probe), 3 stopped by SIGTERM/SIGINT before the end.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from nodes.core.lifecycle import DRAIN_BATCH, POLL_MS
from nodes.core.log import event, worth_logging
from nodes.sockets import net, protocol
from nodes.sockets.batch import EchoBatch

log = logging.getLogger(__name__)

#: Per-request state: not yet answered (pending or unsent), answered, lost.
OPEN, ANSWERED, LOST = 0, 1, 2
RECV_BYTES = 65536


class UdpClient(EchoBatch):
    SUMMARY = ("reordered", "duplicates", "late")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats.counters["refused"] = 0
        self.sock: socket.socket | None = None
        #: seq -> (deadline, the datagram sent), oldest first: deadlines grow with the sequence number.
        self.pending: dict[int, tuple[float, bytes]] = {}
        self.state = bytearray(self.settings.requests + 1)
        self.highest = 0

    def serve(self) -> int:
        s = self.settings
        self.sock = self.wait_server(self._probe, "udpserver echo")
        if self.sock is None:
            return self.finish()
        self.started = time.monotonic()
        try:
            self._batch(self.sock)
        finally:
            self.sock.close()
        event(log, "udp_promises_nothing", lost=self.stats.counters["lost"], requests=s.requests)
        return self.finish()

    def _probe(self) -> socket.socket | None:
        """One probe datagram; the connected socket if the server echoed it within a second, else None."""
        try:
            family, sockaddr = net.resolve(self.settings.server, socket.SOCK_DGRAM)
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError:
            return None
        try:
            sock.connect(sockaddr)  # only the server's datagrams reach us; ICMP errors are reported
            sock.send(protocol.datagram(protocol.PROBE))
            if net.readable(sock, 1.0)[0] and protocol.sequence_of(sock.recv(RECV_BYTES)) == protocol.PROBE:
                sock.setblocking(False)
                return sock
        except (OSError, ValueError):
            pass
        sock.close()
        return None

    def _batch(self, sock: socket.socket) -> None:
        s, counters, pending = self.settings, self.stats.counters, self.pending
        next_seq = 1
        while next_seq <= s.requests or pending:
            if not self.running():
                return
            while next_seq <= s.requests and len(pending) < s.window and not self.schedule.wait():
                data = protocol.datagram(next_seq, os.urandom(s.payload_bytes))
                pending[next_seq] = (time.monotonic() + s.request_timeout, data)
                self.schedule.take()
                counters["sent"] += 1
                self._send(sock, data)
                next_seq += 1
            now = time.monotonic()
            waits = [POLL_MS / 1000]
            if pending:
                waits.append(next(iter(pending.values()))[0] - now)
            if next_seq <= s.requests and len(pending) < s.window:
                waits.append(self.schedule.wait())
            if net.readable(sock, min(waits))[0]:
                self._read(sock)
            self._expire(time.monotonic())

    def _send(self, sock: socket.socket, data: bytes) -> None:
        try:
            sock.send(data)
        except OSError as exc:  # refused (ICMP from an earlier datagram) or a full buffer: this one is gone
            self._refused(exc)

    def _refused(self, exc: OSError) -> None:
        counters = self.stats.counters
        counters["refused"] += 1
        if worth_logging(counters["refused"]):
            event(log, "send_refused", logging.WARNING, server=self.settings.server, error=exc.strerror or str(exc))

    def _read(self, sock: socket.socket) -> None:
        for _ in range(DRAIN_BATCH):
            try:
                data = sock.recv(RECV_BYTES)
            except BlockingIOError:
                return
            except OSError as exc:
                self._refused(exc)
                continue
            self.stats.counters["received"] += 1
            self._check(data)

    def _check(self, data: bytes) -> None:
        counters = self.stats.counters
        try:
            seq = protocol.sequence_of(data)
        except ValueError as exc:
            self.reject(str(exc), self.settings.server)
            return
        if seq == protocol.PROBE:
            return  # a late echo of a probe
        sent = self.pending.get(seq)
        if sent is not None and data == sent[1]:
            del self.pending[seq]
            self.state[seq] = ANSWERED
            counters["answered"] += 1
            if seq < self.highest:
                counters["reordered"] += 1
            self.highest = max(self.highest, seq)
        elif sent is None and seq < len(self.state) and self.state[seq] == ANSWERED and self._echoes(seq, data):
            counters["duplicates"] += 1
        elif sent is None and seq < len(self.state) and self.state[seq] == LOST:
            counters["late"] += 1
        else:
            self.reject(f"datagram {seq} is not the echo of a request in flight", self.settings.server)

    def _echoes(self, seq: int, data: bytes) -> bool:
        """A duplicate must at least be as long as a request (its payload is no longer kept)."""
        return len(data) == len(protocol.datagram(seq)) + self.settings.payload_bytes

    def _expire(self, now: float) -> None:
        pending, counters = self.pending, self.stats.counters
        while pending:
            seq, (deadline, _) = next(iter(pending.items()))
            if deadline > now:
                return
            del pending[seq]
            self.state[seq] = LOST
            counters["lost"] += 1
            if worth_logging(counters["lost"]):
                event(log, "lost", logging.WARNING, seq=seq, timeout_s=self.settings.request_timeout)
