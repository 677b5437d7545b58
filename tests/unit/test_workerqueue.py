"""The lru broker's worker queue: LRU order, busy/ready states, heartbeats and expiry (fake clock)."""

from __future__ import annotations

from nodes.reqrep.workerqueue import WorkerQueue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(ttl: float = 3.0) -> tuple[WorkerQueue, Clock]:
    clock = Clock()
    return WorkerQueue(ttl, clock), clock


def test_least_recently_used_first_and_busy_until_reply() -> None:
    q, _ = make()
    for w in (b"a", b"b", b"c"):
        q.ready(w)
    assert len(q) == 3 and q.busy == 0
    assert q.next() == b"a"
    assert q.next() == b"b"
    assert (len(q), q.busy) == (1, 2)
    q.ready(b"a")  # a replied: it goes to the back, behind c
    assert q.idle() == [b"c", b"a"]
    assert q.next() == b"c"
    assert q.next() == b"a"
    assert q.next() is None
    assert (len(q), q.busy) == (0, 3)


def test_ready_twice_keeps_one_entry_at_the_back() -> None:
    q, _ = make()
    q.ready(b"a")
    q.ready(b"b")
    q.ready(b"a")
    assert q.idle() == [b"b", b"a"]
    assert len(q) == 2


def test_heartbeat_does_not_make_a_busy_worker_ready() -> None:
    q, _ = make()
    q.ready(b"a")
    assert q.next() == b"a"
    q.alive(b"a")  # a heartbeat that crossed the request in flight
    assert len(q) == 0 and q.busy == 1 and b"a" in q
    q.ready(b"a")  # the reply
    assert len(q) == 1 and q.busy == 0


def test_heartbeat_keeps_place_and_unknown_worker_becomes_ready() -> None:
    q, _ = make()
    q.ready(b"a")
    q.ready(b"b")
    q.alive(b"a")
    assert q.idle() == [b"a", b"b"]  # a heartbeat does not reorder
    q.alive(b"z")  # e.g. the broker restarted and the worker never noticed
    assert q.idle() == [b"a", b"b", b"z"]


def test_expiry_forgets_silent_workers_idle_or_busy() -> None:
    q, clock = make(ttl=3.0)
    for w in (b"x", b"y", b"z"):
        q.ready(w)
    assert q.next() == b"x"  # x is busy, y and z are idle
    clock.now += 2.0
    q.alive(b"z")  # only z keeps heartbeating
    assert q.purge() == []
    clock.now += 1.0  # x and y were last heard from 3 s ago: expired (expiry <= now)
    assert sorted(q.purge()) == [b"x", b"y"]
    assert q.idle() == [b"z"] and q.busy == 0
    assert b"x" not in q and b"y" not in q
    clock.now += 2.0
    assert q.purge() == [b"z"]
    assert len(q) == 0


def test_remove_forgets_in_any_state() -> None:
    q, _ = make()
    q.ready(b"a")
    q.ready(b"b")
    q.next()
    q.remove(b"a")
    q.remove(b"b")
    q.remove(b"never-seen")
    assert len(q) == 0 and q.busy == 0
    assert q.next() is None
