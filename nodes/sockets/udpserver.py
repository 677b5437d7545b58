"""udpserver: binds UDP_BIND and echoes every datagram back to its sender, byte for byte (the chapter's
UDP server). Connects to nothing.

There is no connection, so "peers" are the senders heard from in the last PEER_WINDOW seconds.
Counters: ``received`` (datagrams), ``sent`` (echoes), ``rejected`` (empty datagrams: nothing to echo),
``send_failed`` (the kernel refused an echo, e.g. a full send buffer: UDP drops it, and so do we).
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from nodes.core.lifecycle import DRAIN_BATCH, POLL_MS, Node
from nodes.core.log import event, worth_logging
from nodes.sockets import net

log = logging.getLogger(__name__)

#: Seconds a sender counts as a peer after its last datagram.
PEER_WINDOW = 10.0
#: Most senders remembered (the oldest is forgotten first): memory stays bounded whoever sends.
MAX_SENDERS = 10_000
#: Largest datagram read (the UDP maximum): a bigger buffer than any datagram, so none is truncated.
RECV_BYTES = 65536


class UdpServer(Node):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats.counters["send_failed"] = 0
        self.address: str | None = None
        self._senders: dict[Any, float] = {}

    def peer_count(self) -> int:
        cutoff = time.monotonic() - PEER_WINDOW
        return sum(1 for seen in list(self._senders.values()) if seen >= cutoff)

    def summary(self) -> str:
        c = self.stats.counters
        return f"echoed {c['sent']} of {c['received']} datagrams rejected {c['rejected']}"

    def extra_status(self) -> dict[str, Any]:
        return {"address": self.address}

    def serve(self) -> int:
        sock = net.bind(socket.SOCK_DGRAM, self.settings.bind, "UDP_BIND", self.role)
        self.address = net.show(sock.getsockname())
        try:
            while self.running():
                if net.readable(sock, POLL_MS / 1000)[0]:
                    self._echo_queued(sock)
        finally:
            sock.close()
        return 0

    def _echo_queued(self, sock: socket.socket) -> None:
        counters = self.stats.counters
        for _ in range(DRAIN_BATCH):
            try:
                data, sender = sock.recvfrom(RECV_BYTES)
            except BlockingIOError:
                return
            except OSError as exc:  # an ICMP error for an earlier echo (the sender is gone): nothing to read
                event(log, "recv_error", logging.DEBUG, error=exc.strerror or str(exc))
                continue
            counters["received"] += 1
            self._seen(sender)
            if not data:
                self.reject("empty datagram (nothing to echo)", net.show(sender))
                continue
            try:
                sock.sendto(data, sender)
                counters["sent"] += 1
            except OSError as exc:
                counters["send_failed"] += 1
                if worth_logging(counters["send_failed"]):
                    event(log, "send_failed", logging.WARNING, to=net.show(sender), error=exc.strerror or str(exc))

    def _seen(self, sender: Any) -> None:
        senders = self._senders
        senders.pop(sender, None)  # re-inserted last: the dict stays ordered oldest first
        senders[sender] = time.monotonic()
        if len(senders) > MAX_SENDERS:
            del senders[next(iter(senders))]
