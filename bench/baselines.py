"""Minimal hand-written counterparts of the project's nodes: the yardsticks the nodes are measured against.

Each baseline does the least its role must do under the project's own rules (poll with a timeout so a
stop request is seen, count what a delivery check needs) and nothing more: no envelope decode, no
logging, no status server. They have the shape :mod:`bench.host` runs: ``stats.counters``, ``stop``,
``ready``, ``run() -> int`` and ``shutdown()``.

Parties that are not being measured (the echo workers) run in C through ``zmq.proxy_steerable`` with
the same socket as frontend and backend, so that they are never the bottleneck of a comparison.
"""

from __future__ import annotations

import os
import struct
import threading
from types import SimpleNamespace
from typing import Any

import zmq

from bench.frames import REPLY_KIND, REQUEST_KIND
from nodes.pubsub.protocol import HELLO

POLL_MS = 100
#: One-shot sources close right after their last send: let queued messages out (bounded), as nodes do.
SOURCE_LINGER_MS = 30_000
SEQ = struct.Struct(">Q")


class Baseline:
    """Common shape: counters, a stop flag, a ready flag set once sockets are bound or connected."""

    def __init__(self, ctx: zmq.Context, stop: threading.Event, **args: Any) -> None:
        self.ctx = ctx
        self.stop = stop
        self.args = args
        self.stats = SimpleNamespace(counters={"received": 0, "sent": 0, "rejected": 0}, state="running")
        self.ready = threading.Event()
        self.sockets: list[zmq.Socket] = []

    def socket(self, kind: int, bind: str | None = None, connect: str | None = None, **opts: int) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)  # a stopped baseline drops what it holds, unless told otherwise
        for name, value in opts.items():
            sock.setsockopt(getattr(zmq, name.upper()), value)
        if bind:
            sock.bind(bind)
        if connect:
            sock.connect(connect)
        self.sockets.append(sock)
        return sock

    def run(self) -> int:
        try:
            return self.serve()
        except zmq.ContextTerminated:
            return 0
        finally:
            for sock in self.sockets:
                sock.close()

    def serve(self) -> int:
        raise NotImplementedError

    def shutdown(self) -> None:
        """Called after ``stop`` is set, to wake loops that do not poll (C proxies)."""

    def extra_status(self) -> dict[str, Any]:
        return {}


class _Steerable(Baseline):
    """A C loop (``zmq.proxy_steerable``) stopped through an inproc control socket."""

    def control(self) -> zmq.Socket:
        addr = f"inproc://bench-ctl-{id(self)}"
        self._ctl_out = self.ctx.socket(zmq.PAIR)
        self._ctl_out.bind(addr)
        ctl = self.socket(zmq.PAIR, connect=addr)
        return ctl

    def shutdown(self) -> None:
        self._ctl_out.send(b"TERMINATE")

    def run(self) -> int:
        try:
            return super().run()
        finally:
            self._ctl_out.close(0)


class Proxy(_Steerable):
    """``zmq.proxy`` between a ROUTER frontend and a DEALER backend: the C reference for the broker."""

    def serve(self) -> int:
        front = self.socket(zmq.ROUTER, bind=self.args["frontend"])
        back = self.socket(zmq.DEALER, bind=self.args["backend"])
        ctl = self.control()
        self.ready.set()
        zmq.proxy_steerable(front, back, None, ctl)
        return 0


class MinLoop(Baseline):
    """The smallest honest broker loop in Python: poll both sockets, move one message per socket per poll."""

    def serve(self) -> int:
        front = self.socket(zmq.ROUTER, bind=self.args["frontend"])
        back = self.socket(zmq.DEALER, bind=self.args["backend"])
        poller = zmq.Poller()
        poller.register(front, zmq.POLLIN)
        poller.register(back, zmq.POLLIN)
        self.ready.set()
        stop = self.stop
        while not stop.is_set():
            events = dict(poller.poll(POLL_MS))
            if back in events:
                front.send_multipart(back.recv_multipart())
            if front in events:
                back.send_multipart(front.recv_multipart())
        return 0


class Echo(_Steerable):
    """A worker that replies at once with what it got, in C (DEALER, for pipelined load)."""

    def serve(self) -> int:
        kind = zmq.REP if self.args.get("rep") else zmq.DEALER
        sock = self.socket(kind, bind=self.args.get("bind"), connect=self.args.get("connect"))
        ctl = self.control()
        self.ready.set()
        zmq.proxy_steerable(sock, sock, None, ctl)
        return 0


class SwapEcho(Baseline):
    """A worker that replies at once in Python: the request frames back, kind ``request`` turned ``reply``.

    The broker validates both directions (a reply must be of kind ``reply``), so a C echo cannot stand
    in for a worker there. This loop drains in batches like the broker does, so it stays ahead of it.
    """

    def serve(self) -> int:
        sock = self.socket(zmq.DEALER, connect=self.args["connect"])
        self.ready.set()
        recv, send, stop = sock.recv_multipart, sock.send_multipart, self.stop
        while not stop.is_set():
            if not sock.poll(POLL_MS):
                continue
            for _ in range(256):
                try:
                    frames = recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                frames[-1] = frames[-1].replace(REQUEST_KIND, REPLY_KIND, 1)
                send(frames)
        return 0


class Relay(Baseline):
    """Minimal pipeline worker: PULL a frame, PUSH it on; polls per message like any node loop."""

    def serve(self) -> int:
        pull = self.socket(zmq.PULL, connect=self.args["source"])
        push = self.socket(zmq.PUSH, connect=self.args["sink"])
        self.ready.set()
        counters, stop = self.stats.counters, self.stop
        while not stop.is_set():
            if pull.poll(POLL_MS):
                push.send(pull.recv(copy=False), copy=False)
                counters["received"] += 1
        return 0


class PushSource(Baseline):
    """Minimal ventilator: waits (socket monitor, no sleep) for ``peers`` connections, then pushes ``count``
    frames of ``size`` bytes that start with an 8-byte sequence number."""

    def serve(self) -> int:
        push = self.socket(zmq.PUSH, bind=self.args["bind"], linger=SOURCE_LINGER_MS)
        monitor = push.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        try:
            self.ready.set()
            peers, connected = int(self.args.get("peers", 1)), 0
            while connected < peers:
                if self.stop.is_set():
                    return 1
                if monitor.poll(POLL_MS):
                    monitor.recv_multipart()
                    connected += 1
        finally:
            push.disable_monitor()
            monitor.close(0)
        pad = b"\0" * max(0, int(self.args["size"]) - SEQ.size)
        pack, first = SEQ.pack, int(self.args.get("first", 0))
        for seq in range(first, first + int(self.args["count"])):
            push.send(pack(seq) + pad)
        self.stats.counters["sent"] = int(self.args["count"])
        return 0


class PullSink(Baseline):
    """Minimal sink: counts frames and distinct sequence numbers (a lost or doubled frame shows)."""

    def serve(self) -> int:
        pull = self.socket(zmq.PULL, bind=self.args["bind"])
        self.ready.set()
        counters, stop = self.stats.counters, self.stop
        seen: set[bytes] = set()
        self.seen = seen
        while not stop.is_set():
            if pull.poll(POLL_MS):
                seen.add(pull.recv()[:8])
                counters["received"] += 1
        return 0

    def extra_status(self) -> dict[str, Any]:
        return {"distinct": len(self.seen)}


class ZSub(Baseline):
    """Bare SUB loop: connect, subscribe, count ``[topic, payload]`` messages.

    It says hello like a zsub node (its topics, then a private ``HELLO`` topic), so that one publisher
    handshake serves both; that is the least a SUB must do not to lose the first messages.
    """

    def serve(self) -> int:
        sub = self.socket(zmq.SUB, connect=self.args["connect"])
        for topic in self.args.get("topics") or [""]:
            sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
        sub.setsockopt(zmq.SUBSCRIBE, HELLO + f"bare-{id(self)}-{os.getpid()}".encode())
        self.ready.set()
        counters, stop = self.stats.counters, self.stop
        while not stop.is_set():
            if sub.poll(POLL_MS):
                sub.recv_multipart(copy=False)
                counters["received"] += 1
        return 0


class RedisListen(Baseline):
    """Bare redis-py subscriber: ``for m in pubsub.listen()`` counting messages.

    ``listen()`` blocks with no timeout, so the bench stops it by publishing on ``control`` (which
    the loop also subscribes to) after setting the stop flag. ``parser`` picks redis-py's pure-Python
    RESP2 parser or hiredis, to show what the C parser buys.
    """

    def serve(self) -> int:
        import redis
        from redis._parsers import _HiredisParser, _RESP2Parser

        parser = _HiredisParser if self.args.get("parser", "hiredis") == "hiredis" else _RESP2Parser
        pool = redis.ConnectionPool.from_url(
            self.args["url"], password=self.args["password"], parser_class=parser, socket_timeout=None
        )
        client = redis.Redis(connection_pool=pool)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        control = self.args["control"]
        pubsub.subscribe(*self.args["topics"], control)
        counters = self.stats.counters
        self.ready.set()
        try:
            for message in pubsub.listen():
                if message["channel"] == control.encode():
                    if self.stop.is_set():
                        break
                    continue
                counters["received"] += 1
        finally:
            pubsub.close()
            pool.disconnect()
        return 0

    def shutdown(self) -> None:
        """Wake ``listen()``: the loop sees the stop flag on this control message."""
        import redis

        client = redis.Redis.from_url(self.args["url"], password=self.args["password"], socket_timeout=5)
        try:
            client.publish(self.args["control"], b"stop")
        except redis.RedisError:
            pass  # server already gone: the host's bounded join and exit end the thread
        finally:
            client.close()


class PubLoop(Baseline):
    """Bare publisher: XPUB bind, wait for ``peers`` hellos, send ``count`` prebuilt events (one-shot).

    SNDHWM 0 (no limit) so that a subscriber slower than this loop is queued for, not dropped.
    """

    def serve(self) -> int:
        from bench.frames import events

        xpub = self.socket(zmq.XPUB, bind=self.args["bind"], sndhwm=0, xpub_verbose=1, linger=SOURCE_LINGER_MS)
        batch = events(int(self.args["count"]), self.args["topics"], int(self.args["size"]), f"pub{os.getpid()}")
        self.ready.set()
        hellos: set[bytes] = set()
        while len(hellos) < int(self.args.get("peers", 1)):
            if self.stop.is_set():
                return 1
            if xpub.poll(POLL_MS):
                notice = xpub.recv()
                if notice[:1] == b"\x01" and notice[1:].startswith(HELLO):
                    hellos.add(notice)
        send = xpub.send_multipart
        for topic, frame in batch:
            send([topic, frame])
        self.stats.counters["sent"] = len(batch)
        return 0


class RedisPublish(Baseline):
    """Bare Redis publisher: one ``PUBLISH`` round trip per prebuilt event, as the publisher node does (one-shot)."""

    def serve(self) -> int:
        import redis

        from bench.frames import events

        client = redis.Redis.from_url(self.args["url"], password=self.args["password"])
        batch = events(int(self.args["count"]), self.args["topics"], int(self.args["size"]), f"rpub{os.getpid()}")
        self.ready.set()
        publish = client.publish
        for topic, frame in batch:
            publish(topic, frame)
        self.stats.counters["sent"] = len(batch)
        client.close()
        return 0


BASELINES: dict[str, type[Baseline]] = {
    "proxy": Proxy,
    "minloop": MinLoop,
    "echo": Echo,
    "relay": Relay,
    "pushsource": PushSource,
    "pullsink": PullSink,
    "swapecho": SwapEcho,
    "zsub": ZSub,
    "publoop": PubLoop,
    "redis_publish": RedisPublish,
    "redis_listen": RedisListen,
}
