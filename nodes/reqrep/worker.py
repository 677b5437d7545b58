"""worker: the stateless service behind the broker; connects to BROKER_BACKEND, binds nothing.

Workers are the scaled side, so they connect to the broker's stable backend endpoint and can
come and go freely.

proxy mode (default): a REP socket. REP strips the client's return address and restores it on
the reply, so each request is one frame, and REP must answer it before it may read the next —
hence a malformed request gets an error reply, never silence.

lru mode (Paranoid Pirate, zguide ppworker): a DEALER socket. It says READY, sends a heartbeat
every HEARTBEAT_IVL, and when the broker has been silent for HEARTBEAT_LIVENESS intervals it
closes the socket and reconnects after a backoff of 1 s doubling to 32 s. Requests arrive as
``[client, b"", request]`` and the reply goes back on the same address.

A request is answered in the dialect it came in (docs/wire.md):

- an envelope of kind "request" with a map body: a reply envelope whose body echoes the request's
  id (the client checks it), names this worker and carries the request's n;
- a plain request (one frame that is not an envelope, e.g. ``message #N`` from the chapter's REQ
  client): the chapter's plain reply ``Stop saying: message #N``, counted under ``plain``;
- a malformed request (an envelope of another kind or without a map body, or more than one frame):
  counted under ``rejected`` and answered with an error (an error envelope, or ``error: <reason>``
  in plain bytes), because a REQ client waits on it: never silence.

WORK_MS of sleep stands in for real work.
SIGTERM: the request in hand is finished and answered, then the node exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import zmq

from nodes.core import wire
from nodes.core.lifecycle import POLL_MS, Node
from nodes.core.log import event
from nodes.reqrep import protocol

log = logging.getLogger(__name__)

#: lru mode: reconnect backoff after the broker goes silent, seconds (zguide ppworker).
RECONNECT_INITIAL, RECONNECT_MAX = 1.0, 32.0


class Worker(Node):
    """Answers requests from the broker, one at a time."""

    def serve(self) -> int:
        return self._serve_lru() if self.settings.mode == "lru" else self._serve_rep()

    def peer_count(self) -> int:
        links = self.links  # the connection to the broker (handshake done), for /healthz
        return links[0].count if links else 0

    def required_peers(self) -> int:
        return 1  # a worker cut off from its broker gets no work

    def _connect(self, kind: int, **options: Any) -> zmq.Socket:
        """A socket to the broker whose connection is counted and re-dialled if libzmq cuts it off
        (a request over MAX_MSG_SIZE: see :class:`nodes.core.peers.Link`)."""
        return self.dial(kind, self.settings.broker, **options)

    def extra_status(self) -> dict:
        return {"mode": self.settings.mode}

    def summary(self) -> str:
        c = self.stats.counters
        return f"{self.settings.mode}: answered {c['sent']} of {c['received']} requests"

    def answer(self, frames: list[bytes]) -> bytes:
        """The reply to one request (``frames`` without the return address); an error reply if it is bad."""
        self.stats.counters["received"] += 1
        if len(frames) != 1:
            reason = f"expected 1 frame, got {len(frames)}"
            self.reject(reason, "broker")
            return protocol.plain_error(f"malformed request: {reason}")
        try:
            env = wire.decode(frames[0], self.max_size)
        except wire.WireError:  # not an envelope: a plain request, answered the chapter's way
            self.stats.incr("plain")
            self._work()
            return protocol.plain_reply(frames[0])
        if env.kind != protocol.REQUEST or not isinstance(env.body, dict):
            reason = f"expected a request with a map body, got kind {env.kind!r} with a {type(env.body).__name__} body"
            self.reject(reason, "broker")
            body = protocol.error_reply(f"malformed request: {reason}", self.name)
        else:
            self._work()
            body = protocol.reply(env.id, self.name, env.body.get("n"))
        return wire.make(protocol.REPLY, self.ids(), body, origin=self.name)

    def _work(self) -> None:
        if self.settings.work_ms:
            time.sleep(self.settings.work_ms / 1000)  # the simulated work itself, not synchronisation

    # --- proxy mode: REP ------------------------------------------------------------------------

    def _serve_rep(self) -> int:
        # ZMTP heartbeats both ways: a dead or paused broker drops the link (and /healthz says so).
        sock = self._connect(zmq.REP, **self.settings.zmtp_heartbeats())
        while self.running():
            if sock.poll(POLL_MS):
                sock.send(self.answer(sock.recv_multipart()))
                self.stats.counters["sent"] += 1
        return 0

    # --- lru mode: DEALER with READY, heartbeats and reconnect ----------------------------------

    def _serve_lru(self) -> int:
        s = self.settings
        silent_after = s.heartbeat_ivl * s.heartbeat_liveness
        backoff = RECONNECT_INITIAL
        sock: zmq.Socket | None = None
        reconnect_at = heard = heartbeat_at = 0.0
        while self.running():
            now = time.monotonic()
            if sock is None:
                if now < reconnect_at:  # backing off; keep beating health and watching the stop flag
                    self.stop.wait(min(POLL_MS / 1000, reconnect_at - now))
                    continue
                sock = self._connect(zmq.DEALER)
                self._control(sock, protocol.READY)
                heard, heartbeat_at = now, now + s.heartbeat_ivl
            if sock.poll(POLL_MS):
                heard, backoff = time.monotonic(), RECONNECT_INITIAL
                self._handle_lru(sock, sock.recv_multipart())
            now = time.monotonic()
            if now - heard > silent_after:
                event(log, "broker_silent", logging.WARNING, silent_s=round(now - heard, 2), reconnect_in_s=backoff)
                self.close_socket(sock)
                sock, reconnect_at = None, now + backoff
                backoff = min(backoff * 2, RECONNECT_MAX)
                self.stats.incr("reconnects")
            elif now >= heartbeat_at:
                self._control(sock, protocol.HEARTBEAT)
                heartbeat_at = now + s.heartbeat_ivl
        return 0

    def _handle_lru(self, sock: zmq.Socket, frames: list[bytes]) -> None:
        if len(frames) >= 3 and frames[1] == b"":  # [client, b"", request...]: answer on the same address
            sock.send_multipart([frames[0], b"", self.answer(frames[2:])])
            self.stats.counters["sent"] += 1
        elif len(frames) == 1:  # a control frame from the broker
            env = self.decode(frames[0], "broker")
            if env is not None and env.kind != protocol.HEARTBEAT:
                self.reject(f"unexpected control frame of kind {env.kind!r}", "broker")
        else:
            self.reject(f"expected [client, empty, request] or one control frame, got {len(frames)}", "broker")

    def _control(self, sock: zmq.Socket, kind: str) -> None:
        """Send READY or a heartbeat; if the broker is unreachable and the queue is full, skip it."""
        with contextlib.suppress(zmq.Again):
            sock.send(wire.make(kind, self.ids(), origin=self.name), zmq.NOBLOCK)
