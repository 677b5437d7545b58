"""The skeleton every role shares: sockets, stop flag, counting, status server, clean exit.

A role subclasses :class:`Node` and writes only :meth:`Node.serve` (its loop) and, if it has
more to show, :meth:`Node.extra_status`. The base class owns what must be the same
everywhere: ``MAXMSGSIZE`` and ``LINGER`` on every socket, DNS resolution logged at connect,
a stop :class:`threading.Event` that SIGTERM/SIGINT set (so a role finishes the message in its
hands and closes cleanly), the ``rejected`` counter, and ``HOLD`` for one-shot roles.

Roles take an optional shared ``zmq.Context`` and stop event so that several nodes can run as
threads of one process (``inproc://`` endpoints, tests, benchmarks).
"""

from __future__ import annotations

import logging
import os
import signal
import socket as pysocket
import threading
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any, TypeVar

import zmq

from nodes.core import config, security, wire
from nodes.core.log import event, log_context, worth_logging
from nodes.core.peers import Link, PeerCounter
from nodes.core.status import Stats, StatusServer

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Poll timeout of every loop, ms: bounds how long a stop request or a stale health check waits.
POLL_MS = 100
#: Flags as plain ints: pyzmq's enum arithmetic in send_multipart/recv_multipart costs several times
#: the send itself (make bench: ~half the broker loop).
_NOBLOCK, _MORE_NOBLOCK, _RCVMORE = int(zmq.NOBLOCK), int(zmq.SNDMORE | zmq.NOBLOCK), int(zmq.RCVMORE)
#: Most messages :meth:`Node.drain` reads from one socket per pass, so other sockets get their turn.
DRAIN_BATCH = 256
#: Seconds between two readings of the links' monitor events by :meth:`Node.running` (a busy loop calls it often).
LINK_WATCH_S = 0.02
#: How long close() may spend flushing queued outgoing messages, ms.
LINGER_MS = 1000


def send_nowait(sock: zmq.Socket, frames: list[bytes]) -> None:
    """``sock.send_multipart(frames, zmq.NOBLOCK)`` for the hot path; raises like it (zmq.Again: nothing sent).

    libzmq counts a multipart message against the high-water mark as a whole, so once the first
    frame is accepted the others are too, exactly as with ``send_multipart``.
    """
    send = sock.send
    for frame in frames[:-1]:
        send(frame, _MORE_NOBLOCK)
    send(frames[-1], _NOBLOCK)


def recv_nowait(sock: zmq.Socket) -> list[bytes]:
    """``sock.recv_multipart(zmq.NOBLOCK)`` with int flags; raises zmq.Again when nothing is queued.

    The later parts of a multipart message arrive together with the first, so only the first read
    can raise zmq.Again.
    """
    recv, more = sock.recv, sock.getsockopt
    frames = [recv(_NOBLOCK)]
    while more(_RCVMORE):
        frames.append(recv(_NOBLOCK))
    return frames


#: Why a handshake failed under SECURITY=curve, by monitor event (logged with ``auth_denied``/``auth_failed``).
REFUSALS = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "ZAP refused the key (not in the allow-list)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "not a CURVE peer of this key (a plain peer, or the wrong server key)",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the peer hung up mid-handshake (a plain peer that saw CURVE, usually)",
}

#: Exit code of a one-shot sender (client, ventilator, publisher, zpub) stopped by SIGTERM/SIGINT before
#: its batch was delivered: distinct from 0 (delivered) and 1 (gave up), so a script can tell them apart.
EXIT_INTERRUPTED = 3
#: Exit code of a node whose loop was stuck for WATCHDOG_S (:class:`nodes.core.status.Watchdog`): non-zero,
#: so compose's ``restart: on-failure`` restarts it.
EXIT_STUCK = 4


class Node:
    """Base class of every role. Subclasses implement :meth:`serve`."""

    def __init__(self, settings: Any, ctx: zmq.Context | None = None, stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.name: str = settings.name
        self.role: str = settings.role
        self.ctx = ctx or zmq.Context.instance()
        self.stop = stop or threading.Event()
        self.stats = Stats(self.name, self.role)
        self.ids = wire.IdMaker(self.name)
        self.max_size: int = settings.max_msg_size
        #: A batch role (client, ventilator, publishers) sends a bounded batch and then finishes.
        self.one_shot = isinstance(settings, config.Batch)
        self._peers_ok_at = time.monotonic()
        #: The code :meth:`serve` returned, shown in /status while a one-shot holds (None until then).
        self.exit_code: int | None = None
        self.stats.problem = self.health_problem
        self.status_server: StatusServer | None = None
        self._sockets: list[zmq.Socket] = []
        #: Connections of the sockets opened with :meth:`dial`, watched by :meth:`running`.
        self.links: list[Link] = []
        self._links_due = 0.0
        #: SECURITY: CURVE keys on every bound and connecting socket (nodes.core.security), or nothing.
        self.security = security.for_settings(settings, self.ctx)
        #: Monitors of bound sockets no role watches itself, read by :meth:`running` (curve: refused peers).
        self.guards: list[PeerCounter] = []
        self._monitored: set[int] = set()  # ids of the sockets that have a monitor (libzmq allows one)
        if self.security.mode == "curve":
            self.stats.counters["auth_denied"] = 0

    # --- what roles override --------------------------------------------------------------

    def serve(self) -> int:
        """The role's loop; returns the process exit code. Must return soon after ``self.stop`` is set."""
        raise NotImplementedError

    def extra_status(self) -> dict[str, Any]:
        """Role-specific additions to ``/status`` (built from copies: it runs in the HTTP thread)."""
        return {}

    def peer_count(self) -> int | None:
        """How many peers are connected to the endpoint this role serves (None: the role does not track it)."""
        return None

    def required_peers(self) -> int:
        """Peers this role needs to do its job; fewer for longer than PEER_GRACE makes it unhealthy.

        The default grace (15 s) is long enough for a compose start-up (peers start once this node is
        healthy) or a peer's restart, and short enough to show a node cut off from its peers.
        """
        return 0

    def health_problem(self) -> str | None:
        """Why the node cannot do its job now, or None (runs in the HTTP thread: reads only)."""
        for link in list(self.links):
            if link.cut_off:
                return (
                    f"connection to {link.endpoint} cut off by libzmq (a frame over MAX_MSG_SIZE={self.max_size}"
                    " or a protocol error); re-dialling"
                )
        need, have = self.required_peers(), self.peer_count()
        now = time.monotonic()
        if not need or have is None or have >= need:
            self._peers_ok_at = now
            return None
        short_for = now - self._peers_ok_at
        if short_for < self.settings.peer_grace:
            return None
        return f"{have} of {need} peers connected for {short_for:.0f}s"

    def summary(self) -> str:
        """One line in words for the status table: what this node has done so far."""
        c = self.stats.counters
        return f"received {c['received']} sent {c['sent']} rejected {c['rejected']}"

    def status_doc(self) -> dict[str, Any]:
        """The role's part of ``/status``: the uniform ``peers`` and ``summary`` plus :meth:`extra_status`."""
        doc = {
            "peers": self.peer_count(),
            "summary": self.summary(),
            "exit_code": self.exit_code,
            "security": self.security.mode,
        }
        return doc | self.extra_status()

    # --- helpers for roles ----------------------------------------------------------------

    def socket(self, kind: int, *, bind: str | None = None, connect: str | None = None, **options: Any) -> zmq.Socket:
        """Open a socket with the node's limits; it is closed when the node stops."""
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, LINGER_MS)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_size)
        for name, value in options.items():
            sock.setsockopt(getattr(zmq, name.upper()), value)
        self._sockets.append(sock)
        if bind:
            self.bind(sock, bind)
        if connect:
            self.before_connect(sock, connect)
            sock.connect(connect)
        return sock

    def before_connect(self, sock: zmq.Socket, endpoint: str) -> None:
        """Log where the socket connects (and what the name resolves to now) and make it a CURVE client if set."""
        event(log, "connecting", endpoint=endpoint, socket=zmq.SocketType(sock.type).name, resolved=resolve(endpoint))
        self.security.client(sock)

    def dial(self, kind: int, endpoint: str, **options: Any) -> zmq.Socket:
        """Open a socket that connects to ``endpoint`` and stays connected (:class:`~nodes.core.peers.Link`).

        libzmq drops a connection for good when a peer sends a frame over MAXMSGSIZE; :meth:`running` sees
        that in the socket's monitor events, logs and counts it under ``cut_off``, and dials again.
        """
        sock = self.socket(kind, **options)
        self.before_connect(sock, endpoint)
        link = Link(sock, endpoint, on_refused=lambda message: self.refused(message, "auth_failed"))
        self._monitored.add(id(sock))
        self.links.append(link.connect())  # monitor before connect: no event is missed
        return sock

    def count_peers(self, sock: zmq.Socket) -> PeerCounter:
        """The :class:`PeerCounter` of a socket about to bind (create it *before* :meth:`bind`).

        A socket has one monitor, so the role's peer count is also where refused peers are seen.
        """
        self._monitored.add(id(sock))
        return PeerCounter(sock, on_refused=lambda message: self.refused(message, "auth_denied"))

    def refused(self, message: dict, counter: str) -> None:
        """Count and log (sampled) a handshake refused under SECURITY=curve.

        ``auth_denied`` on a binding node: a peer without CURVE, with the wrong server key, or with a key
        not on the allow-list (ZAP) got nothing. ``auth_failed`` on a connecting node: it was refused.
        """
        if self.security.mode != "curve":
            return
        self.stats.incr(counter)
        n = self.stats.counters[counter]
        if worth_logging(n):
            why = REFUSALS.get(message["event"], "handshake failed")
            endpoint = message["endpoint"].decode(errors="replace")
            event(log, counter, logging.WARNING, endpoint=endpoint, reason=why, code=message["value"], total=n)

    def link_of(self, sock: zmq.Socket) -> Link | None:
        return next((link for link in self.links if link.sock is sock), None)

    def watch_links(self) -> None:
        """Apply the links' monitor events; log and count every connection libzmq cut off (then re-dialled)."""
        for link in self.links:
            before = link.cut_offs
            link.poll()
            if link.cut_offs != before:
                n = self.stats.counters["cut_off"] = self.stats.counters.get("cut_off", 0) + 1
                event(
                    log,
                    "connection_cut_off",
                    logging.WARNING,
                    endpoint=link.endpoint,
                    max_msg_size=self.max_size,
                    hint="libzmq dropped it (a frame over MAX_MSG_SIZE, or a protocol error): dialled again",
                    total=n,
                )

    def bind(self, sock: zmq.Socket, endpoint: str) -> None:
        """Bind and log it (separate from :meth:`socket` for a socket that needs a monitor first).

        Under SECURITY=curve the socket becomes a CURVE server and, unless the role watches it already
        (:meth:`count_peers`), gets a guard monitor that counts the peers it refuses.
        """
        self.security.server(sock, self.name)
        if self.security.mode == "curve" and id(sock) not in self._monitored:
            self.guards.append(self.count_peers(sock))
        sock.bind(endpoint)
        event(log, "bound", endpoint=endpoint, socket=zmq.SocketType(sock.type).name)

    def drain(self, sock: zmq.Socket) -> Iterator[list[bytes]]:
        """Up to DRAIN_BATCH queued messages from ``sock`` without blocking, each counted under ``received``.

        Reading what one wake-up found in a batch, instead of one message per poll, is what lets a
        Python loop keep up with ``zmq.proxy`` (make bench).
        """
        counters = self.stats.counters
        for _ in range(DRAIN_BATCH):
            try:
                frames = recv_nowait(sock)
            except zmq.Again:
                return
            counters["received"] += 1
            yield frames

    def close_socket(self, sock: zmq.Socket, linger: int = 0) -> None:
        """Close one socket early (e.g. a REQ socket a client must reopen)."""
        link = self.link_of(sock)
        if link is not None:
            link.close()
            self.links.remove(link)
        sock.close(linger)
        if sock in self._sockets:
            self._sockets.remove(sock)

    def running(self) -> bool:
        """Loop condition: marks the node alive for /healthz, watches the links, says whether to go on."""
        self.stats.beat()
        if self.links or self.guards:
            now = time.monotonic()
            if now >= self._links_due:  # not every message: reading the monitors cost a pipeworker ~8 us a task
                self._links_due = now + LINK_WATCH_S
                self.watch_links()
                for guard in self.guards:
                    guard.poll()
        return not self.stop.is_set()

    def decode(self, frame: bytes, source: str) -> wire.Envelope | None:
        """Decode a frame, or count and log it as rejected and return ``None``."""
        try:
            return wire.decode(frame, self.max_size)
        except wire.WireError as exc:
            self.reject(str(exc), source)
            return None

    def decode_one(self, frames: list[bytes], source: str, kinds: Collection[str]) -> wire.Envelope | None:
        """The envelope of a one-frame message of one of ``kinds``, or ``None`` after counting a reject."""
        if len(frames) != 1:
            self.reject(f"expected 1 frame, got {len(frames)}", source)
            return None
        env = self.decode(frames[0], source)
        if env is not None and env.kind not in kinds:
            self.reject(f"unexpected kind {env.kind!r} (want {', '.join(sorted(kinds))})", source)
            return None
        return env

    def read_one(
        self, frames: list[bytes], source: str, kind: str, parse: Callable[[Any], T], what: str
    ) -> tuple[wire.Envelope, T] | None:
        """:meth:`decode_one` of ``kind`` then :meth:`parse_body`: the envelope and its parsed body, or ``None``.

        The common case - one frame, a valid envelope of ``kind``, a valid body - costs one decode and one
        parse (a pipeworker reads every task here); anything else takes the long way, which names the reason
        and counts the reject.
        """
        if len(frames) == 1:
            try:
                env = wire.decode(frames[0], self.max_size)
                if env.kind == kind:
                    return env, parse(env.body)
            except ValueError:  # a WireError too: the long way below says which and counts it
                pass
        env = self.decode_one(frames, source, (kind,))
        if env is None:
            return None
        body = self.parse_body(env, parse, what, source)
        return None if body is None else (env, body)

    def parse_body(self, env: wire.Envelope, parse: Callable[[Any], T], what: str, source: str) -> T | None:
        """``parse(env.body)`` (a protocol parser raising ValueError), or ``None`` after counting a reject."""
        try:
            return parse(env.body)
        except ValueError as exc:
            self.reject(f"bad {what} {env.id}: {exc}", source)
            return None

    def log_batch_summary(self, requests: int, done: bool, answered: int, started: float, **extra: Any) -> None:
        """The ``summary`` line a one-shot logs at the end of its batch: its counters, how long, how fast."""
        elapsed = time.monotonic() - started
        event(
            log,
            "summary",
            requests=requests,
            done=done,
            elapsed_s=round(elapsed, 3),
            per_s=round(answered / elapsed, 1) if elapsed > 0 else None,
            counters=dict(self.stats.counters),
            **extra,
        )

    def reject(self, reason: str, source: str) -> None:
        self.stats.counters["rejected"] += 1
        n = self.stats.counters["rejected"]
        if worth_logging(n):
            event(log, "rejected", logging.WARNING, reason=reason, source=source, rejected_total=n)

    def send_waiting(self, sock: zmq.Socket, frame: bytes, timeout: float | None = None) -> bool:
        """:meth:`send_bounded` for a socket made with ``sndtimeo=POLL_MS``: the first wait for room is a
        blocking send inside libzmq (at most POLL_MS, then the stop flag is looked at as before).

        Why: a sender at full speed finds its peers' queues full before nearly every message, and
        ``send_bounded`` then pays a ``zmq.Again`` exception and a poll in Python a message (the
        ventilator: ``make bench`` pipeline-noop).
        """
        try:
            sock.send(frame)
            return True
        except zmq.Again:
            return self.send_bounded(sock, frame, timeout)

    def send_bounded(
        self, sock: zmq.Socket, frame: bytes, timeout: float | None = None, *, stoppable: bool = True
    ) -> bool:
        """Send one frame without blocking forever; True once it is queued.

        PUSH and DEALER block while every peer's queue is full (or there is no peer), so a plain
        ``send()`` could hang through SIGTERM. It tries a plain NOBLOCK send first (the common case:
        one syscall, no poll); only when that fails does it wait for ``POLLOUT`` in ``POLL_MS`` steps,
        giving up at the stop flag (unless ``stoppable`` is False: a grace send of work in hand) or
        after ``timeout`` seconds (None = no limit but the stop flag; required if not stoppable).
        """
        if not stoppable and timeout is None:
            raise ValueError("a send that ignores the stop flag needs a timeout")
        try:
            sock.send(frame, _NOBLOCK)
            return True
        except zmq.Again:
            pass
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if sock.poll(POLL_MS, zmq.POLLOUT):
                try:
                    sock.send(frame, zmq.NOBLOCK)
                    return True
                except zmq.Again:
                    pass
            self.stats.beat()
            if (stoppable and self.stop.is_set()) or (deadline is not None and time.monotonic() >= deadline):
                return False

    def wait_for(self, what: str, ready: Any, timeout: float) -> bool:
        """Poll ``ready()`` until true, the stop flag, or ``timeout``; logs what it waited for."""
        deadline = time.monotonic() + timeout
        event(log, "waiting", what=what, timeout_s=timeout)
        while self.running():
            if ready():
                event(log, "ready", what=what)
                return True
            if time.monotonic() >= deadline:
                event(log, "wait_timeout", logging.ERROR, what=what, timeout_s=timeout)
                return False
            self.stop.wait(POLL_MS / 1000)
        return False

    # --- the template -----------------------------------------------------------------------

    def run(self) -> int:
        """Start the status server, run the loop, hold if asked, then close everything."""
        s = self.settings
        try:
            self.status_server = StatusServer(self.stats, self.status_doc, s.status_host, s.status_port).start()
        except OSError as exc:
            raise config.ConfigError(
                f"STATUS_PORT={s.status_port} cannot be bound on {s.status_host}: {exc.strerror or exc}"
                " (choose a free port, or 0 for any)"
            ) from None
        rc = 1
        context = log_context.set((self.name, self.role))
        try:
            self.stats.state = "running"
            event(log, "started", pid=os.getpid())
            rc = self.serve()
            self.exit_code = rc
            if self.one_shot and s.hold and not self.stop.is_set():
                self.stats.state = "done"
                event(log, "holding", exit_code=rc, hint="serving /status until SIGTERM")
                while self.running():
                    self.stop.wait(0.5)
        except zmq.ContextTerminated:
            rc = 0
        finally:
            self.stats.state = "stopping"
            for link in self.links:
                link.close()
            self.links.clear()
            for guard in self.guards:
                guard.close()
            self.guards.clear()
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()
            self.security.close()
            self.status_server.close()
            event(log, "stopped", exit_code=rc, counters=self.stats.counters)
            log_context.reset(context)
        return rc


class Pacer:
    """Spaces sends to ``rate`` per second (0 = no pacing) without drifting.

    Each :meth:`wait` also marks the node alive (``Node.running``), so a batch sender that spends a
    long, paced batch in its send loop keeps ``/healthz`` green.
    """

    def __init__(self, rate: float, node: Node) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.node = node
        self.next = time.monotonic()

    def wait(self) -> bool:
        """Sleep until the next slot; False if the node is stopping."""
        if self.interval:
            self.next += self.interval
            delay = self.next - time.monotonic()
            if delay > 0 and self.node.stop.wait(delay):
                return False
        return self.node.running()


def resolve(endpoint: str) -> list[str] | None:
    """Addresses a tcp:// endpoint's host resolves to now (logged: DNS is read once at connect)."""
    if not endpoint.startswith("tcp://"):
        return None
    host = endpoint[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    try:
        return sorted({ai[4][0] for ai in pysocket.getaddrinfo(host, None, proto=pysocket.IPPROTO_TCP)})
    except OSError as exc:
        return [f"unresolved: {exc.strerror or exc}; zmq keeps retrying"]


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT: graceful stop; a second one: exit now (rq's warm/cold shutdown)."""

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            event(log, "forced_exit", logging.WARNING, signal=signal.Signals(signum).name)
            os._exit(128 + signum)
        event(log, "stopping", signal=signal.Signals(signum).name, hint="send again to exit now")
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
