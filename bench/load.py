"""Load generators that run in the bench process itself (which is otherwise idle during a run).

Each is bounded in count and in time and verifies delivery: a run that does not get back every
message it sent raises :class:`~bench.procs.BenchError` instead of reporting a rate.
"""

from __future__ import annotations

import time
from typing import Any

import zmq

from bench import frames
from bench.procs import BenchError
from nodes.core import wire
from nodes.pubsub.protocol import HELLO
from ops.wait import until


class DealerLoad:
    """A DEALER client keeping ``window`` requests in flight: the pipelined load for broker throughput."""

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.endpoint = endpoint

    def run(self, count: int, size: int, window: int, timeout: float) -> dict[str, float]:
        """Send ``count`` requests, each answered once; returns the round-trip rate."""
        batch = [frames.request(seq, size) for seq in range(count)]
        seen = bytearray(count)
        sock, seq_of = self.sock, frames.request_seq
        got = sent = dups = 0
        deadline = time.monotonic() + timeout
        t0 = time.perf_counter()
        while got < count:
            while sent < count and sent - got < window:
                sock.send_multipart((b"", batch[sent]))
                sent += 1
            if not sock.poll(1000):
                if time.monotonic() > deadline:
                    raise BenchError(f"{self.endpoint}: {got}/{count} replies after {timeout:.0f}s (lost messages)")
                continue
            while True:
                try:
                    reply = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                seq = seq_of(reply[-1])
                if seen[seq]:
                    dups += 1
                seen[seq] = 1
                got += 1
        elapsed = time.perf_counter() - t0
        if dups or seen.count(1) != count:
            raise BenchError(f"{self.endpoint}: {dups} duplicate and {count - seen.count(1)} missing replies")
        return {"msgs_per_s": count / elapsed, "elapsed_s": elapsed, "count": count}

    def close(self) -> None:
        self.sock.close(0)


class ReqLatency:
    """A REQ client timing each round trip (``perf_counter_ns``); the reply must answer its request id."""

    def __init__(self, ctx: zmq.Context, *, connect: str | None = None, bind: str | None = None) -> None:
        self.sock = ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        if bind:
            self.sock.bind(bind)
        if connect:
            self.sock.connect(connect)
        self.where = connect or bind

    def run(self, count: int, size: int, timeout: float, warmup: int = 100) -> dict[str, float]:
        batch = [frames.request(seq, size) for seq in range(count + warmup)]
        sock = self.sock
        sock.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
        now = time.perf_counter_ns
        lat: list[int] = []
        replies: list[bytes] = []
        for i, frame in enumerate(batch):
            t0 = now()
            sock.send(frame)
            try:
                reply = sock.recv()
            except zmq.Again:
                raise BenchError(f"{self.where}: no reply to request {i} within {timeout:.0f}s") from None
            t1 = now()
            if i >= warmup:
                lat.append(t1 - t0)
                replies.append(reply)
        for seq, reply in enumerate(replies, start=warmup):  # verify outside the timed loop
            env = wire.decode(reply)
            if env.kind != "reply" or env.body.get("request_id") != f"b{seq:09d}":
                raise BenchError(f"{self.where}: reply {seq} does not answer its request: {env}")
        lat.sort()
        us = 1000.0

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] / us

        return {"p50_us": pct(0.50), "p99_us": pct(0.99), "mean_us": sum(lat) / len(lat) / us, "count": count}

    def close(self) -> None:
        self.sock.close(0)


class RedisSource:
    """Pipelined PUBLISH (``batch`` commands a round trip): fast enough that subscribers are the bottleneck."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def wait_subscribers(self, topics: list[str], k: int, timeout: float) -> None:
        counts: dict[bytes, int] = {}

        def subscribed() -> bool:
            counts.update(self.client.pubsub_numsub(*topics))
            return all(counts.get(t.encode(), 0) >= k for t in topics)

        until(
            subscribed,
            timeout,
            lambda: f"redis: {k} subscribers on {topics} (seen {counts})",
            interval=0.02,
            error=BenchError,
        )

    def publish(self, batch: list[tuple[bytes, bytes]], per_round_trip: int = 256) -> tuple[float, int]:
        """Publish all of ``batch``; returns (start time, receivers counted by Redis)."""
        t0 = time.monotonic()
        receivers = 0
        for i in range(0, len(batch), per_round_trip):
            pipe = self.client.pipeline(transaction=False)
            for topic, frame in batch[i : i + per_round_trip]:
                pipe.publish(topic, frame)
            receivers += sum(pipe.execute())
        return t0, receivers


class ZmqSource:
    """XPUB that waits for subscriber hellos (the zsub handshake) and sends prebuilt ``[topic, frame]`` events.

    SNDHWM 0 (no limit): a subscriber slower than this loop is queued for, never dropped, so the
    subscriber's own rate is what is measured.
    """

    def __init__(self, ctx: zmq.Context, bind: str) -> None:
        self.sock = ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.sock.bind(bind)
        self.bind = bind
        self.hellos: set[bytes] = set()

    def wait_hellos(self, k: int, timeout: float) -> None:
        def enough() -> bool:
            if self.sock.poll(100):  # the poll is the pacing: until() need not sleep
                notice = self.sock.recv()
                if notice[:1] == b"\x01" and notice[1:].startswith(HELLO):
                    self.hellos.add(notice[1:])
            return len(self.hellos) >= k

        def what() -> str:
            return f"{self.bind}: {k} subscriber hellos (got {len(self.hellos)})"

        until(enough, timeout, what, interval=0, error=BenchError)

    def publish(self, batch: list[tuple[bytes, bytes]]) -> float:
        t0 = time.monotonic()
        send = self.sock.send_multipart
        for msg in batch:
            send(msg)
        return t0

    def close(self) -> None:
        self.sock.close(0)
