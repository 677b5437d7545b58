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


# --- plain workers (zguide lbbroker: a REQ socket, READY once, no heartbeats) --------------------


def test_plain_worker_is_never_heartbeated_nor_expired() -> None:
    q, clock = make(ttl=3.0)
    q.ready(b"p", plain=True, label="plain-1")
    q.ready(b"d", label="worker-1")
    assert q.idle() == [b"p", b"d"]
    assert q.heartbeat_due() == [b"d"]  # a heartbeat would break the REQ worker's state machine
    assert (q.is_plain(b"p"), q.is_plain(b"d"), q.plain) == (True, False, 1)
    clock.now += 1000.0
    assert q.purge() == [b"d"]  # the silent DEALER worker expires; the plain one's liveness is its connection
    assert q.idle() == [b"p"] and q.label(b"p") == "plain-1"
    assert q.next() == b"p"
    clock.now += 1000.0
    assert q.purge() == [] and q.busy == 1  # busy for as long as its work takes


def test_plain_worker_keeps_kind_and_label_across_replies_and_lru_order() -> None:
    q, _ = make()
    q.ready(b"p", plain=True, label="p")
    q.ready(b"d", plain=False, label="d")
    assert q.next() == b"p"
    q.ready(b"p")  # its reply: kind and label as known
    assert q.is_plain(b"p") and q.label(b"p") == "p"
    assert q.idle() == [b"d", b"p"]
    assert q.heartbeat_due() == [b"d"]


def test_remove_and_forget_busy_plain() -> None:
    q, _ = make()
    q.ready(b"p1", plain=True, label="p1")
    q.ready(b"p2", plain=True, label="p2")
    q.ready(b"d", label="d")
    assert [q.next(), q.next(), q.next()] == [b"p1", b"p2", b"d"]
    q.ready(b"p2", plain=True)  # p2 answered: idle again
    assert q.forget_busy_plain() == [b"p1"]  # a peer went: only busy plain workers are dropped (d expires)
    assert b"p1" not in q and q.label(b"p1") is None and not q.is_plain(b"p1")
    assert q.idle() == [b"p2"] and q.busy == 1
    q.ready(b"p1", plain=True)  # it was alive after all: its reply brings it back
    assert q.idle() == [b"p2", b"p1"] and q.plain == 2
    q.remove(b"p2")
    assert q.plain == 1 and q.label(b"p2") is None


def test_heartbeat_labels_an_unknown_worker_and_makes_it_heartbeating() -> None:
    q, _ = make()
    q.alive(b"z", "worker-z")  # e.g. after a broker restart, before its next READY
    assert q.label(b"z") == "worker-z" and q.heartbeat_due() == [b"z"]
    q.alive(b"z", "other")  # a known label is kept
    assert q.label(b"z") == "worker-z"
