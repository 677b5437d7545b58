"""Counting the peers of a bound socket from its monitor events.

Used where a node must know how many peers it really has before it sends (the ventilator waits for
MIN_PIPEWORKERS) or should show it (the broker's ``workers_connected``). A peer counts once its ZMTP
handshake has succeeded, not at TCP accept: PUSH and DEALER hand messages only to peers whose
handshake is done, so counting accepts would let a batch start while a peer cannot yet take work
(seen: 2000 tasks dealt 1000/0/1000 over 3 pipeworkers). libzmq's handshake events carry no file
descriptor, so the count is arithmetic: every connection ends its handshake in exactly one success or
one failure event (a peer that drops mid-handshake gets HANDSHAKE_FAILED_NO_DETAIL) and later one
DISCONNECTED, so ``successes + failures - disconnects`` is the number of live, handshaken peers.
``inproc://`` peers produce no monitor events in libzmq; there the count stays 0.

:class:`Link` is the same for a connecting socket, and also re-dials a connection that libzmq dropped
for good (a frame over ``MAXMSGSIZE``, a protocol error) instead of leaving the node cut off silently.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import zmq
from zmq.utils.monitor import recv_monitor_message


class PeerCounter:
    """Peers connected (handshake done) to a bound socket.

    Create it *before* ``bind`` so that no early connection goes uncounted. Only the thread that
    owns the socket may call :meth:`poll` (zmq sockets are not thread-safe); others read :attr:`count`.
    """

    FAILED = (
        zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    )
    #: A handshake that did not complete, reported to ``on_refused`` (SECURITY=curve counts it): ZAP said no
    #: (AUTH), the peer spoke another mechanism or key (PROTOCOL), or it hung up mid-handshake (NO_DETAIL: a
    #: plain peer that saw the CURVE greeting first drops the connection before the server sees a mismatch).
    REFUSED = FAILED
    EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | FAILED

    def __init__(self, sock: zmq.Socket, on_refused: Callable[[dict], None] | None = None) -> None:
        self.sock = sock
        self.monitor = sock.get_monitor_socket(self.EVENTS)
        self.on_refused = on_refused
        self._balance = 0  # successes + failures - disconnects
        self.count = 0

    def _event(self) -> int:
        """Read one queued monitor event, report it if it is a refused handshake, return its kind."""
        message = recv_monitor_message(self.monitor)
        kind = message["event"]
        if kind & self.REFUSED and self.on_refused is not None:
            self.on_refused(message)
        return kind

    def poll(self) -> int:
        """Apply the events queued so far (never blocks) and return the connected count."""
        while self.monitor.poll(0):
            kind = self._event()
            if kind == zmq.EVENT_DISCONNECTED:
                self._balance -= 1
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED or kind & self.FAILED:
                self._balance += 1
        self.count = max(0, self._balance)
        return self.count

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(0)


class Link(PeerCounter):
    """The connection of a *connecting* socket to one endpoint, re-dialled when libzmq gives it up.

    libzmq reconnects by itself after a connection error (the peer went away: a DISCONNECTED event is
    followed at once by CONNECT_RETRIED), but not after a *protocol* error on an established connection
    - above all a frame over this socket's ``MAXMSGSIZE``: the engine drops the connection, the monitor
    shows a lone DISCONNECTED (libzmq 4.3.5, checked with pyzmq's monitor), and the socket never dials
    again. Left alone, a worker, pipeworker or zsub would sit idle for good with a green /healthz.

    :meth:`poll` (called from the owner's loop) sees that lone DISCONNECTED: if no CONNECT_RETRIED
    follows within ``settle`` seconds, the connection was cut off, so it logs that once, counts it
    (:attr:`cut_offs`, the owner's ``cut_off`` counter) and dials again (``disconnect`` + ``connect`` on
    the same socket: a SUB re-sends its subscriptions, a REP or PULL simply has a new pipe). A peer that
    keeps cutting it off before the handshake is re-dialled with a doubling delay (up to ``MAX_DELAY``).
    """

    EVENTS = PeerCounter.EVENTS | zmq.EVENT_CONNECT_RETRIED
    MAX_DELAY = 8.0

    def __init__(
        self,
        sock: zmq.Socket,
        endpoint: str,
        settle: float = 0.25,
        on_refused: Callable[[dict], None] | None = None,
    ) -> None:
        super().__init__(sock, on_refused)
        self.endpoint = endpoint
        self.settle = settle
        self.cut_offs = 0
        #: monotonic time of a DISCONNECTED not (yet) followed by a retry; None while libzmq is in charge.
        self.down_since: float | None = None
        self._failed_redials = 0  # redials since the last successful handshake

    def connect(self) -> Link:
        self.sock.connect(self.endpoint)
        return self

    def poll(self, now: float | None = None) -> int:
        """Apply queued events; re-dial a connection libzmq dropped for good. Returns the connected count."""
        while self.monitor.poll(0):
            kind = self._event()
            if kind == zmq.EVENT_DISCONNECTED:
                self._balance -= 1
                self.down_since = time.monotonic()
            elif kind == zmq.EVENT_CONNECT_RETRIED:
                self.down_since = None  # libzmq is re-dialling by itself
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED or kind & self.FAILED:
                self._balance += 1
                if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self._failed_redials = 0
        self.count = max(0, self._balance)
        if self.down_since is not None:
            now = time.monotonic() if now is None else now
            delay = min(self.settle * 2**self._failed_redials, self.MAX_DELAY)
            if now - self.down_since >= delay:
                self._redial()
        return self.count

    @property
    def cut_off(self) -> bool:
        """True while the connection is down after libzmq dropped it and it has not come back yet."""
        return self.down_since is not None or (self._failed_redials > 0 and self.count == 0)

    def _redial(self) -> None:
        self.cut_offs += 1
        self._failed_redials += 1
        self.down_since = None
        with contextlib.suppress(zmq.ZMQError):  # the endpoint may already be gone with its session
            self.sock.disconnect(self.endpoint)
        self.sock.connect(self.endpoint)
