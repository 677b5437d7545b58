"""broker: load balancing between REQ clients and workers; payload-agnostic, like ``zmq.proxy``.

Binds FRONTEND_BIND (a ROUTER; clients' REQ sockets connect) and BACKEND_BIND (workers
connect). The broker is the stable side: it binds and never connects, so workers scale freely.

Plain peers first (docs/wire.md): the broker validates only the routing frames and forwards the
body untouched, whatever it is: a request is ``[client, b"", body...]`` on the frontend (what a REQ
socket's message looks like to a ROUTER), a reply ``[client, b"", body...]`` from the backend. A
message whose routing frames are malformed (no empty delimiter, nothing after it) is the only thing
refused: counted under ``rejected`` and logged (sampled), never dropped silently. The body is never
decoded to be forwarded; it is looked at only to count the reply under its worker.

proxy mode (default): the backend is a DEALER, which spreads requests round robin over the
connected REP workers (the project's workers or any plain REP server), as ``zmq.proxy`` would —
but in a loop that validates and counts. Replies are counted per worker from the envelope's
origin when the body is an envelope, else under ``unattributed``.

lru mode (``--mode lru``; zguide lbbroker + Paranoid Pirate ppqueue): the backend is a ROUTER and
a request goes only to a worker that asked for one, the one idle longest (:mod:`workerqueue`). Two
kinds of worker, side by side:

- the project's workers (DEALER) send a READY envelope, then heartbeat envelopes; the broker
  heartbeats them while idle and forgets one silent for HEARTBEAT_LIVENESS x HEARTBEAT_IVL.
  Requests go out as ``[worker, client, b"", body...]``, replies come back the same way.
- plain workers (REQ, zguide lbworker) send ``READY`` (or ``\x01``) once; their REQ socket adds an
  empty delimiter, so they are told apart by it: ``[worker, b"", client, b"", body...]`` both ways.
  They get no heartbeats (a REQ worker could not take one) and never expire by silence; their
  liveness is the ZMTP connection (a send to a gone worker fails under ROUTER_MANDATORY).

Replies are counted per worker by backend identity: the name the worker gave in its READY, or for
a plain worker its identity (printable, else hex). A dead worker costs at most the request it held.

Both modes (zguide style): poll with a timeout; handle the backend first; read the frontend only
while the backend can take a message (proxy: DEALER POLLOUT; lru: a worker is ready), so the
broker never blocks and never has to drop a request it read. Each readable socket is drained in
batches with NOBLOCK to keep up with ``zmq.proxy``. The frontend has ROUTER_MANDATORY so a reply
to a client that has gone (e.g. one that retried on a new socket), or whose queue is full (a client
pipelining more than SNDHWM unread replies), is counted as ``undeliverable`` rather than lost silently.

Counters: ``received`` (every message read, worker heartbeats included), ``requests`` and
``replies`` forwarded (``sent`` is their sum), ``rejected``, ``undeliverable``, ``oversized`` (a request
or reply over MAX_MSG_SIZE: never forwarded, the client gets ``error: request of N bytes exceeds
MAX_MSG_SIZE M``; also counted under ``rejected``); lru mode adds ``workers_lost``. /status has
``peers`` (workers whose ZMTP handshake is done, plain ones included, counted by :mod:`nodes.core.peers`)
and, in lru mode, ``workers_ready``/``workers_busy``/``workers_plain``.
"""

from __future__ import annotations

import errno
import logging
import time

import zmq

from nodes.core import wire
from nodes.core.lifecycle import POLL_MS, Node, send_nowait
from nodes.core.log import event, worth_logging
from nodes.core.peers import PeerCounter
from nodes.reqrep import protocol
from nodes.reqrep.workerqueue import WorkerQueue

log = logging.getLogger(__name__)

#: Send errors that mean "this peer cannot take it": gone (ROUTER_MANDATORY) or its queue is full.
PEER_GONE = (errno.EHOSTUNREACH, errno.EAGAIN)
#: The broker's own sockets let libzmq take frames up to this many times MAX_MSG_SIZE, so that a message
#: over MAX_MSG_SIZE reaches the loop, which refuses it *with a reason* (an error reply to the client)
#: instead of libzmq silently cutting the sender off. Beyond it libzmq still drops the connection.
READ_SLACK = 4


class Broker(Node):
    """ROUTER frontend, DEALER (proxy) or ROUTER (lru) backend, and the counting loop between them."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        s = self.settings
        for name in ("requests", "replies", "undeliverable"):
            self.stats.counters[name] = 0
        self.queue = WorkerQueue(s.heartbeat_ivl * s.heartbeat_liveness)
        self.peers: PeerCounter | None = None  # workers connected to the backend (handshake done)
        self._held: list[bytes] | None = None  # a valid request read but not yet placed on the backend
        self._front: zmq.Socket | None = None  # the frontend, for error replies

    def peer_count(self) -> int:
        return self.peers.count if self.peers else 0

    def required_peers(self) -> int:
        return 1  # a broker without a worker answers nobody

    def summary(self) -> str:
        c = self.stats.counters
        return f"{self.settings.mode}: {self.peer_count()} workers, {c['received']} in, {c['sent']} out"

    def extra_status(self) -> dict:
        doc: dict = {"mode": self.settings.mode}
        if self.settings.mode == "lru":
            doc.update(workers_ready=len(self.queue), workers_busy=self.queue.busy, workers_plain=self.queue.plain)
        return doc

    def serve(self) -> int:
        s = self.settings
        lru = s.mode == "lru"
        cap = self.max_size * READ_SLACK
        front = self.socket(zmq.ROUTER, bind=s.frontend, router_mandatory=1, maxmsgsize=cap)
        # proxy mode: ZMTP heartbeats drop a paused or unreachable worker's connection (and the requests
        # queued to it, which the clients retry), so the DEALER deals only to live workers.
        back = (
            self.socket(zmq.ROUTER, router_mandatory=1, maxmsgsize=cap)
            if lru
            else self.socket(zmq.DEALER, maxmsgsize=cap, **s.zmtp_heartbeats())
        )
        self.peers = self.count_peers(back)  # before bind, so that no worker connection goes uncounted
        try:
            self.bind(back, s.backend)
            monitor = self.peers.monitor
            return self._serve_lru(front, back, monitor) if lru else self._serve_proxy(front, back, monitor)
        finally:
            self.peers.close()

    # --- proxy mode -----------------------------------------------------------------------------

    def _serve_proxy(self, front: zmq.Socket, back: zmq.Socket, monitor: zmq.Socket) -> int:
        self._front = front
        reading = self._poller((front, zmq.POLLIN), (back, zmq.POLLIN), (monitor, zmq.POLLIN))
        # While no worker can take a request, leave the frontend queued and wake when one can.
        blocked = self._poller((back, zmq.POLLIN | zmq.POLLOUT), (monitor, zmq.POLLIN))
        while self.running():
            writable = self._flush_held(back) and back.get(zmq.EVENTS) & zmq.POLLOUT
            events = dict((reading if writable else blocked).poll(POLL_MS))
            if monitor in events:
                self._count_connections()
            if events.get(back, 0) & zmq.POLLIN:
                self._pump_replies(back, front)
            if front in events:
                self._pump_requests(front, back)
        return 0

    def _flush_held(self, back: zmq.Socket) -> bool:
        """Place the request held back by a full backend; True if nothing is held any more."""
        if self._held is not None:
            try:
                send_nowait(back, self._held)
            except zmq.Again:
                return False
            self._held = None
            self._count_forwarded("requests", 1)
        return True

    def _pump_requests(self, front: zmq.Socket, back: zmq.Socket) -> None:
        valid, forwarded = self._valid_request, 0
        for frames in self.drain(front):
            if valid(frames):
                try:
                    send_nowait(back, frames)
                except zmq.Again:  # every worker's queue is full: hold it and stop reading the frontend
                    self._held = frames
                    break
                forwarded += 1
        self._count_forwarded("requests", forwarded)

    def _pump_replies(self, back: zmq.Socket, front: zmq.Socket) -> None:
        valid, deliver = self._valid_reply, self._deliver
        self._count_forwarded("replies", sum(1 for f in self.drain(back) if valid(f) and deliver(front, f)))

    # --- lru mode -------------------------------------------------------------------------------

    def _serve_lru(self, front: zmq.Socket, back: zmq.Socket, monitor: zmq.Socket) -> int:
        self._front = front
        ivl = self.settings.heartbeat_ivl
        reading = self._poller((front, zmq.POLLIN), (back, zmq.POLLIN), (monitor, zmq.POLLIN))
        # With no worker ready, leave requests queued in the frontend (zguide: read it only then).
        waiting = self._poller((back, zmq.POLLIN), (monitor, zmq.POLLIN))
        heartbeat_at = time.monotonic() + ivl
        while self.running():
            if self._held is not None and self.queue and self._dispatch(back, self._held):
                self._held = None
            events = dict((reading if self.queue and self._held is None else waiting).poll(POLL_MS))
            if monitor in events:
                self._count_connections()
            if back in events:
                self._pump_workers(back, front)
            if front in events:
                self._pump_to_workers(front, back)
            if time.monotonic() >= heartbeat_at:  # housekeeping at the end of the pass
                heartbeat_at = time.monotonic() + ivl
                self._heartbeat(back)
        return 0

    def _pump_workers(self, back: zmq.Socket, front: zmq.Socket) -> None:
        """Replies (forwarded; the worker is ready again) and READY/heartbeat frames from workers.

        ``[worker, b"", ...]`` comes from a plain REQ worker (its socket adds the delimiter), anything
        else from one of the project's DEALER workers; after that the two look alike.
        """
        deliver, queue, incr_label = self._deliver, self.queue, self.stats.incr_label
        delivered = 0
        for frames in self.drain(back):
            worker = frames[0]
            plain = len(frames) > 1 and not frames[1]
            rest = frames[2:] if plain else frames[1:]
            if len(rest) == 1:
                self._control(worker, rest[0], plain)
            elif len(rest) > 2 and not rest[1]:
                incr_label("replies_by_worker", queue.label(worker) or protocol.identity_label(worker))
                queue.ready(worker, plain=plain)
                if self._fits(rest, "reply", "backend"):
                    delivered += deliver(front, rest)
            else:
                self._malformed(frames, "backend", "[worker, (empty,) client, empty, reply...] or a READY")
        self._count_forwarded("replies", delivered)

    def _control(self, worker: bytes, frame: bytes, plain: bool) -> None:
        """READY from a plain REQ worker, or a READY/heartbeat envelope from a project worker."""
        if plain:
            if frame in protocol.PLAIN_READY:
                label = protocol.identity_label(worker)
                self.queue.ready(worker, plain=True, label=label)
                event(log, "worker_ready", worker=label, plain=True, ready=len(self.queue))
            else:
                self.reject(f"expected READY from a plain REQ worker, got {frame[:32]!r}", "backend")
            return
        if frame in protocol.PLAIN_READY:
            self.reject(
                "a plain READY from a DEALER: a plain worker must use a REQ socket (zguide lbworker)", "backend"
            )
            return
        env = self.decode(frame, "backend")
        if env is None:
            return
        if env.kind == protocol.READY:
            self.queue.ready(worker, plain=False, label=env.origin or protocol.identity_label(worker))
            event(log, "worker_ready", worker=env.origin, identity=worker.hex(), ready=len(self.queue))
        elif env.kind == protocol.HEARTBEAT:
            self.queue.alive(worker, env.origin or None)
        else:
            self.reject(f"expected ready or heartbeat from a worker, got {env.kind!r}", "backend")

    def _pump_to_workers(self, front: zmq.Socket, back: zmq.Socket) -> None:
        valid, dispatch = self._valid_request, self._dispatch
        for frames in self.drain(front):
            if valid(frames) and not dispatch(back, frames):
                self._held = frames  # every ready worker turned out to be gone
                break
            if not self.queue:  # read no more than the ready workers can take
                break

    def _dispatch(self, back: zmq.Socket, frames: list[bytes]) -> bool:
        """Send a request to the least recently used ready worker; False if none could take it."""
        while (worker := self.queue.next()) is not None:
            if self._to_worker(back, worker, frames):
                self._count_forwarded("requests", 1)
                return True
        return False

    def _to_worker(self, back: zmq.Socket, worker: bytes, frames: list[bytes]) -> bool:
        try:
            send_nowait(back, [worker, b"", *frames] if self.queue.is_plain(worker) else [worker, *frames])
            return True
        except zmq.ZMQError as exc:
            if exc.errno not in PEER_GONE:
                raise
            self.queue.remove(worker)
            self.stats.incr("workers_lost")
            event(log, "worker_gone", logging.WARNING, identity=worker.hex(), reason=exc.strerror)
            return False

    def _heartbeat(self, back: zmq.Socket) -> None:
        frame = wire.make(protocol.HEARTBEAT, self.ids(), origin=self.name)
        for worker in self.queue.heartbeat_due():  # never a plain REQ worker: it could not take one
            self._to_worker(back, worker, [frame])
        for worker in self.queue.purge():
            self.stats.incr("workers_lost")
            event(log, "worker_expired", logging.WARNING, identity=worker.hex())

    # --- shared by both modes -------------------------------------------------------------------

    def _valid_request(self, frames: list[bytes]) -> bool:
        """True for ``[client, b"", body...]`` of at most MAX_MSG_SIZE bytes (the body is not decoded);
        otherwise counts one reject (and answers an oversized request with an error)."""
        if len(frames) > 2 and not frames[1]:
            return self._fits(frames, "request", "frontend")
        self._malformed(frames, "frontend", "[client, empty, request...]")
        return False

    def _fits(self, frames: list[bytes], what: str, source: str) -> bool:
        """Whether the body of ``[client, b"", body...]`` is at most what its receiver accepts.

        The broker never forwards more than its peers accept: a worker's or client's libzmq would cut the
        connection off. A request is held to BACKEND_MAX_MSG_SIZE (the workers' limit; default: one
        MAX_MSG_SIZE for the whole cluster), a reply to MAX_MSG_SIZE. Too big: one reject, and the client
        gets the reason as a plain error reply (a REQ client waits on it), e.g.
        ``error: request of 70000 bytes exceeds MAX_MSG_SIZE 65536``.
        """
        s = self.settings
        limit = s.request_limit if what == "request" else self.max_size
        if len(frames) == 3 and len(frames[2]) <= limit:  # the common case: one body frame
            return True
        size = sum(len(f) for f in frames[2:])
        if size <= limit:
            return True
        name = "BACKEND_MAX_MSG_SIZE" if what == "request" and s.backend_max_msg_size else "MAX_MSG_SIZE"
        reason = f"{what} of {size} bytes exceeds {name} {limit}"
        self.reject(reason, source)
        self.stats.incr("oversized")
        self._deliver(self._front, [frames[0], b"", protocol.plain_error(reason)])
        return False

    def _valid_reply(self, frames: list[bytes]) -> bool:
        """proxy mode: True for ``[client, b"", body...]``, counted under its worker; otherwise one reject."""
        if len(frames) > 2 and not frames[1]:
            self.stats.incr_label(
                "replies_by_worker", protocol.origin_of(frames[2]) if len(frames) == 3 else protocol.UNATTRIBUTED
            )
            return self._fits(frames, "reply", "backend")
        self._malformed(frames, "backend", "[client, empty, reply...]")
        return False

    def _malformed(self, frames: list[bytes], source: str, expected: str) -> None:
        """Count and log (sampled) one message whose routing frames are malformed."""
        shape = ", ".join("empty" if not f else f"{len(f)} bytes" for f in frames[:6])
        self.reject(
            f"malformed routing frames: expected {expected}, got [{shape}{', ...' if len(frames) > 6 else ''}]", source
        )

    def _deliver(self, front: zmq.Socket, frames: list[bytes]) -> bool:
        """Send a reply to its client; a client that has gone is counted, not silently dropped."""
        try:
            send_nowait(front, frames)
            return True
        except zmq.ZMQError as exc:
            if exc.errno not in PEER_GONE:
                raise
            n = self.stats.counters["undeliverable"] = self.stats.counters["undeliverable"] + 1
            if worth_logging(n):
                event(log, "undeliverable", logging.WARNING, client=frames[0].hex(), reason=exc.strerror, total=n)
            return False

    def _count_forwarded(self, what: str, n: int) -> None:
        if n:
            counters = self.stats.counters
            counters[what] += n
            counters["sent"] += n

    def _count_connections(self) -> None:
        before = self.peers.count
        if self.peers.poll() != before:
            event(log, "backend_peers", connected=self.peers.count, endpoint=self.settings.backend)
            if self.peers.count < before:  # a busy plain worker may be the one that went (workerqueue rule 4)
                for worker in self.queue.forget_busy_plain():
                    event(log, "plain_worker_forgotten", identity=worker.hex(), hint="comes back with its reply")

    @staticmethod
    def _poller(*registrations: tuple[zmq.Socket, int]) -> zmq.Poller:
        poller = zmq.Poller()
        for sock, flags in registrations:
            poller.register(sock, flags)
        return poller
