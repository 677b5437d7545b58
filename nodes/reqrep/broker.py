"""broker: load balancing between REQ clients and workers.

Binds FRONTEND_BIND (a ROUTER; clients' REQ sockets connect) and BACKEND_BIND (workers
connect). The broker is the stable side: it binds and never connects, so workers scale freely.

proxy mode (default): the backend is a DEALER, which spreads requests round robin over the
connected REP workers, as ``zmq.proxy`` would — but in a loop that validates and counts.

lru mode (``--mode lru``; Paranoid Pirate, zguide ppqueue): the backend is a ROUTER. Workers
(DEALER) say READY; the broker keeps them in an LRU queue with expiry (:mod:`nodes.workerqueue`),
sends each request to the worker idle longest, heartbeats idle workers every HEARTBEAT_IVL and
forgets a worker silent for HEARTBEAT_LIVENESS intervals. A request never goes to a worker that
did not ask for one, so a dead worker costs at most the request it was holding.

Both modes (zguide style): poll with a timeout; handle the backend first; read the frontend only
while the backend can take a message (proxy: DEALER POLLOUT; lru: a worker is ready), so the
broker never blocks and never has to drop a request it read. Each readable socket is drained in
batches with NOBLOCK to keep up with ``zmq.proxy``. A frontend message must be
``[client, b"", request envelope]``, a reply ``[client, b"", reply envelope]``; anything else is
counted once under ``rejected`` and dropped. Replies are counted per worker (``replies_by_worker``,
from the envelope's origin); the frontend has ROUTER_MANDATORY so a reply to a client that has gone
(e.g. one that retried on a new socket), or whose queue is full (a client pipelining more than
SNDHWM unread replies), is counted as ``undeliverable`` rather than lost silently.

Counters: ``received`` (every message read, worker heartbeats included), ``requests`` and
``replies`` forwarded (``sent`` is their sum), ``rejected``, ``undeliverable``; lru mode adds
``workers_lost``. /status has ``peers`` (workers whose handshake is done, counted by
:mod:`nodes.peers`) and, in lru mode, ``workers_ready``/``workers_busy``.
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

    def peer_count(self) -> int:
        return self.peers.count if self.peers else 0

    def summary(self) -> str:
        c = self.stats.counters
        return f"{self.settings.mode}: {self.peer_count()} workers, {c['received']} in, {c['sent']} out"

    def extra_status(self) -> dict:
        doc: dict = {"mode": self.settings.mode}
        if self.settings.mode == "lru":
            doc.update(workers_ready=len(self.queue), workers_busy=self.queue.busy)
        return doc

    def serve(self) -> int:
        s = self.settings
        lru = s.mode == "lru"
        front = self.socket(zmq.ROUTER, bind=s.frontend, router_mandatory=1)
        back = self.socket(zmq.ROUTER, router_mandatory=1) if lru else self.socket(zmq.DEALER)
        self.peers = PeerCounter(back)  # before bind, so that no worker connection goes uncounted
        try:
            self.bind(back, s.backend)
            monitor = self.peers.monitor
            return self._serve_lru(front, back, monitor) if lru else self._serve_proxy(front, back, monitor)
        finally:
            self.peers.close()

    # --- proxy mode -----------------------------------------------------------------------------

    def _serve_proxy(self, front: zmq.Socket, back: zmq.Socket, monitor: zmq.Socket) -> int:
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
        """Replies (forwarded; the worker is ready again) and READY/heartbeat frames from workers."""
        valid, deliver, queue = self._valid_reply, self._deliver, self.queue
        delivered = 0
        for frames in self.drain(back):
            worker, rest = frames[0], frames[1:]
            if len(rest) == 1:
                self._control(worker, rest[0])
            elif valid(rest):
                queue.ready(worker)
                delivered += deliver(front, rest)
        self._count_forwarded("replies", delivered)

    def _control(self, worker: bytes, frame: bytes) -> None:
        env = self.decode(frame, "backend")
        if env is None:
            return
        if env.kind == protocol.READY:
            self.queue.ready(worker)
            event(log, "worker_ready", worker=env.origin, identity=worker.hex(), ready=len(self.queue))
        elif env.kind == protocol.HEARTBEAT:
            self.queue.alive(worker)
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
            send_nowait(back, [worker, *frames])
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
        for worker in self.queue.idle():
            self._to_worker(back, worker, [frame])
        for worker in self.queue.purge():
            self.stats.incr("workers_lost")
            event(log, "worker_expired", logging.WARNING, identity=worker.hex())

    # --- shared by both modes -------------------------------------------------------------------

    def _valid_request(self, frames: list[bytes]) -> bool:
        """True for ``[client, b"", request envelope]``; otherwise counts one reject."""
        return self._envelope(frames, protocol.REQUEST, "frontend") is not None

    def _valid_reply(self, frames: list[bytes]) -> bool:
        """True for ``[client, b"", reply envelope]`` (counted under its worker); otherwise counts one reject."""
        env = self._envelope(frames, protocol.REPLY, "backend")
        if env is None:
            return False
        self.stats.incr_label("replies_by_worker", env.origin or "?")
        return True

    def _envelope(self, frames: list[bytes], kind: str, source: str) -> wire.Envelope | None:
        """The envelope of ``[client, b"", envelope of kind]``, or None after counting one reject."""
        if len(frames) != 3 or frames[1]:
            self.reject(f"expected [client, empty, {kind}], got {len(frames)} frames", source)
            return None
        env = self.decode(frames[2], source)
        if env is not None and env.kind != kind:
            self.reject(f"expected a {kind}, got kind {env.kind!r}", source)
            return None
        return env

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

    @staticmethod
    def _poller(*registrations: tuple[zmq.Socket, int]) -> zmq.Poller:
        poller = zmq.Poller()
        for sock, flags in registrations:
            poller.register(sock, flags)
        return poller
