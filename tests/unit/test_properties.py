"""Property-based tests (hypothesis) of the wire decoder and every pure model.

The decoder must turn *any* bytes into an Envelope or a WireError, never anything else (no TypeError from
an unhashable kind, no RecursionError from deep nesting, no MemoryError from a huge length prefix). The
models (the sink's ledger, the subscribers' sequence tracker, the lru broker's worker queue) must keep
their counting rules whatever order and mix of inputs they get.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from nodes.core import wire
from nodes.core.status import Stats
from nodes.pipeline.ledger import COUNTED, DUPLICATE, OUT_OF_RANGE, PENDING, BatchLedger, Ledger
from nodes.pubsub.protocol import EVENT, Inbox
from nodes.pubsub.sequence import DUPLICATE as SEQ_DUPLICATE
from nodes.pubsub.sequence import GAP, Outbox, Tracker, hat_for
from nodes.reqrep.workerqueue import WorkerQueue

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- the wire decoder --------------------------------------------------------------------------------

#: Anything msgpack can pack (bin and str, nested lists and maps with str keys).
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text() | st.binary()
packable = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)
#: Plain objects that may hit each field of the envelope with the wrong type, unhashable ones included.
any_field = st.one_of(packable, st.lists(scalars, max_size=2), st.dictionaries(st.text(max_size=3), scalars))


def decodes_or_wire_error(frame: bytes, max_size: int = wire.DEFAULT_MAX_SIZE) -> wire.Envelope | None:
    try:
        env = wire.decode(frame, max_size)
    except wire.WireError:
        return None
    assert isinstance(env, wire.Envelope)
    assert env.kind in wire.KINDS and isinstance(env.id, str) and env.id and isinstance(env.origin, str)
    assert isinstance(env.sent_at, float)
    return env


@FAST
@given(st.binary(max_size=512))
def test_any_bytes_decode_or_raise_wire_error(frame: bytes) -> None:
    decodes_or_wire_error(frame)


@FAST
@given(st.binary(max_size=64))
def test_bytes_after_the_envelope_prefix_decode_or_raise_wire_error(tail: bytes) -> None:
    decodes_or_wire_error(b"\x96\x01" + tail)


@FAST
@given(st.lists(any_field, min_size=0, max_size=8))
def test_any_packed_array_decodes_or_raises_wire_error(fields: list) -> None:
    decodes_or_wire_error(msgpack.packb(fields, use_bin_type=True))


@FAST
@given(any_field, any_field, any_field, any_field, any_field)
def test_every_field_of_the_wrong_type_is_a_wire_error(id_, kind, body, sent_at, origin) -> None:
    env = decodes_or_wire_error(msgpack.packb([wire.VERSION, id_, kind, body, sent_at, origin], use_bin_type=True))
    if env is not None:
        assert (env.id, env.kind, env.origin) == (id_, kind, origin)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 100_000), st.sampled_from([b"\x91", b"\x81\xa1k", b"\xdc\x00\x01", b"\x96\x01\xa1x\xa7request"]))
def test_deep_nesting_is_a_wire_error(depth: int, opener: bytes) -> None:
    """A frame of ``depth`` nested one-element arrays or maps: bounded by msgpack, never a RecursionError."""
    decodes_or_wire_error(b"\x96\x01\xa1x\xa7request" + opener * depth + b"\xc0" + b"\x00\xa0")


@FAST
@given(
    st.sampled_from([b"\xc6", b"\xdb", b"\xdd", b"\xdf", b"\xc9\x00"]),  # bin32, str32, array32, map32, ext32
    st.integers(2**20, 2**32 - 1),
    st.binary(max_size=16),
)
def test_huge_length_prefixes_are_a_wire_error(marker: bytes, length: int, tail: bytes) -> None:
    """A length prefix far beyond the frame (up to 4 GiB) never allocates it: WireError at once."""
    assert decodes_or_wire_error(b"\x96\x01\xa1x\xa5event" + marker + length.to_bytes(4, "big") + tail) is None


envelopes = st.builds(
    wire.Envelope,
    id=st.text(min_size=1, max_size=40),
    kind=st.sampled_from(sorted(wire.KINDS)),
    body=packable,
    sent_at=st.floats(allow_nan=False),
    origin=st.text(max_size=20),
)


@FAST
@given(envelopes)
def test_valid_envelopes_round_trip_and_every_truncation_fails(env: wire.Envelope) -> None:
    frame = wire.encode(env)
    assert frame[:2] == b"\x96\x01"
    got = wire.decode(frame)
    assert (got.id, got.kind, got.origin) == (env.id, env.kind, env.origin)
    assert got.sent_at == env.sent_at or (math.isinf(env.sent_at) and got.sent_at == env.sent_at)
    for cut in {0, 1, len(frame) // 2, len(frame) - 1}:
        assert decodes_or_wire_error(frame[:cut]) is None
    assert decodes_or_wire_error(frame, max_size=len(frame) - 1) is None


# --- the sink's ledger ---------------------------------------------------------------------------------


@FAST
@given(st.integers(0, 60), st.lists(st.integers(-5, 70), max_size=120), st.booleans())
def test_ledger_counts_each_task_once_whatever_the_order(size: int, results: list[int], announce_first: bool) -> None:
    ledger = BatchLedger("b")
    if announce_first:
        ledger.announce(size, now=0.0)
    verdicts = [ledger.record(n, f"w{n % 3}", f"id{i}", now=float(i)) for i, n in enumerate(results)]
    if not announce_first:
        assert set(verdicts) <= {PENDING}
        out = ledger.announce(size, now=1.0)
        assert out == sum(1 for n in results if not 0 <= n < size)
    else:
        assert set(verdicts) <= {COUNTED, DUPLICATE, OUT_OF_RANGE}
    in_range = [n for n in results if 0 <= n < size]
    s = ledger.summary()
    assert s["received"] == len(in_range)
    assert s["distinct"] == len(set(in_range))
    assert s["duplicates"] == len(in_range) - len(set(in_range))
    assert s["missing"] == size - len(set(in_range))
    assert s["complete"] == (len(set(in_range)) == size)
    assert sum(s["by_worker"].values()) == len(in_range)
    assert s["pending"] == 0
    expected_missing = [n for n in range(size) if n not in set(in_range)]
    assert s["missing_examples"] == expected_missing[: len(s["missing_examples"])]


@FAST
@given(st.integers(0, 300), st.sets(st.integers(0, 299)), st.integers(-1, 400))
def test_missing_ranges_are_exactly_the_lowest_missing_numbers(size: int, seen: set[int], limit: int) -> None:
    ledger = BatchLedger("b")
    ledger.announce(size, now=0.0)
    for n in seen:
        ledger.record(n, "w", "id", now=0.0)
    ranges = ledger.missing_ranges(limit)
    numbers = [n for a, b in ranges for n in range(a, b)]
    missing = [n for n in range(size) if n not in seen]
    assert numbers == missing[: max(0, limit)]
    assert all(a < b for a, b in ranges)
    assert all(b1 < a2 for (_, b1), (a2, _) in zip(ranges, ranges[1:], strict=False))  # separate, not adjacent


@FAST
@given(st.integers(1, 8), st.lists(st.text(alphabet="abcdefghij", min_size=1, max_size=2), max_size=60))
def test_ledger_keeps_a_bounded_number_of_batches(keep: int, names: list[str]) -> None:
    ledger = Ledger(keep=keep)
    for name in names:
        ledger.get(name)
        assert len(ledger.batches) <= keep
        assert name in ledger.batches  # the batch just asked for is always there
    assert ledger.evicted == len(ledger.take_evicted())


# --- the subscribers' sequence tracker ----------------------------------------------------------------


@FAST
@given(st.lists(st.tuples(st.sampled_from(["r1", "r2"]), st.sampled_from(["catA", "catB"]), st.integers(1, 80))))
def test_tracker_counts_every_event_and_calls_every_repeat_a_duplicate(events: list[tuple[str, str, int]]) -> None:
    tracker = Tracker()
    seen: set[tuple[str, str, int]] = set()
    gaps = 0
    for run, topic, seq in events:
        verdict, skipped = tracker.record(run, topic, seq)
        if (run, topic, seq) in seen:
            assert verdict == SEQ_DUPLICATE
        assert skipped >= 0 and (skipped == 0 or verdict in (GAP, "late_join"))
        gaps += skipped if verdict == GAP else 0
        seen.add((run, topic, seq))
    summary = tracker.summary()
    assert sum(t["received"] for t in summary.values()) == len(events)
    assert sum(t["gaps"] for t in summary.values()) == gaps
    for (run, topic), stream in tracker.streams.items():
        assert all(n < stream.last_seq for n in stream.missing)
        assert stream.missing.isdisjoint({s for r, t, s in seen if (r, t) == (run, topic)})


@FAST
@given(st.lists(st.integers(1, 200), unique=True).map(sorted))
def test_tracker_in_order_subset_has_no_duplicates_and_counts_every_skip(seqs: list[int]) -> None:
    tracker = Tracker(["catA"])
    for seq in seqs:
        tracker.record("run", "catA", seq)
    if seqs:
        t = tracker.summary()["catA"]
        assert (t["duplicates"], t["out_of_order"], t["received"]) == (0, 0, len(seqs))
        assert t["late_join"] + t["gaps"] + t["received"] == seqs[-1]
        assert t["missing"] == t["gaps"]


@FAST
@given(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=5, unique=True), st.integers(0, 50))
def test_outbox_numbers_each_topic_from_one_round_robin(topics: list[str], count: int) -> None:
    box = Outbox("run", topics)
    per_topic: dict[str, list[int]] = {}
    for i in range(count):
        topic, body = box.next()
        assert topic == topics[i % len(topics)] and body["n"] == i + 1 and body["topic"] == topic
        per_topic.setdefault(topic, []).append(body["seq"])
    for seqs in per_topic.values():
        assert seqs == list(range(1, len(seqs) + 1))


# --- the lru broker's worker queue ------------------------------------------------------------------------

WORKERS = [b"w1", b"w2", b"w3", b"w4"]


class WorkerQueueMachine(RuleBasedStateMachine):
    """The queue against a plain model: LRU order, expiry, plain workers never heartbeated or expired."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.q = WorkerQueue(ttl=3.0, clock=lambda: self.now)
        self.idle: OrderedDict[bytes, float] = OrderedDict()
        self.busy: dict[bytes, float] = {}
        self.plain: set[bytes] = set()

    def expiry(self, w: bytes) -> float:
        return math.inf if w in self.plain else self.now + 3.0

    @rule(w=st.sampled_from(WORKERS), plain=st.sampled_from([None, True, False]))
    def ready(self, w: bytes, plain: bool | None) -> None:
        self.q.ready(w, plain=plain)
        if plain is not None:
            (self.plain.add if plain else self.plain.discard)(w)
        self.busy.pop(w, None)
        self.idle.pop(w, None)
        self.idle[w] = self.expiry(w)

    @rule(w=st.sampled_from(WORKERS))
    def heartbeat(self, w: bytes) -> None:
        self.q.alive(w)
        self.plain.discard(w)
        if w in self.busy:
            self.busy[w] = self.expiry(w)
        else:
            self.idle[w] = self.expiry(w)

    @rule()
    def take(self) -> None:
        got = self.q.next()
        if not self.idle:
            assert got is None
            return
        want, _ = self.idle.popitem(last=False)
        assert got == want
        self.busy[want] = self.expiry(want)

    @rule(w=st.sampled_from(WORKERS))
    def remove(self, w: bytes) -> None:
        self.q.remove(w)
        self.idle.pop(w, None)
        self.busy.pop(w, None)
        self.plain.discard(w)

    @rule(dt=st.floats(0, 5))
    def tick(self, dt: float) -> None:
        self.now += dt

    @rule()
    def purge(self) -> None:
        gone = set(self.q.purge())
        want = {w for t in (self.idle, self.busy) for w, e in t.items() if e <= self.now}
        assert gone == want
        assert not gone & self.plain
        for w in gone:
            self.remove(w)

    @precondition(lambda self: bool(self.busy))
    @rule()
    def forget_busy_plain(self) -> None:
        gone = set(self.q.forget_busy_plain())
        assert gone == {w for w in self.busy if w in self.plain}
        for w in gone:
            self.remove(w)

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.q.idle() == list(self.idle)
        assert len(self.q) == len(self.idle) and self.q.busy == len(self.busy)
        assert not set(self.idle) & set(self.busy)
        assert self.q.heartbeat_due() == [w for w in self.idle if w not in self.plain]
        for w in WORKERS:
            assert (w in self.q) == (w in self.idle or w in self.busy)


TestWorkerQueueMachine = WorkerQueueMachine.TestCase
TestWorkerQueueMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


# --- the subscribers' fast path ----------------------------------------------------------------------


class _Receiver:
    """What :class:`~nodes.pubsub.protocol.Inbox` needs of a node: stats, the frame limit, a reject counter."""

    def __init__(self) -> None:
        self.stats = Stats("sub", "subscriber")
        self.max_size = wire.DEFAULT_MAX_SIZE
        self.rejects: list[str] = []

    def reject(self, reason: str, source: str) -> None:
        self.rejects.append(reason)


event_body = st.fixed_dictionaries(
    {},
    optional={
        "run": st.one_of(st.text(max_size=4), any_field),
        "topic": st.sampled_from(["catA", "catB", ""]) | any_field,
        "seq": st.integers(-2, 5) | any_field,
        "hat": st.sampled_from(["hatA", "hatB"]) | any_field,
        "n": st.integers(0, 5),
    },
)
event_fields = st.tuples(
    st.sampled_from([1, 1, 2, True]) | any_field,  # version
    st.text(max_size=3) | any_field,  # id
    st.sampled_from(["event", "event", "task"]) | any_field,  # kind
    event_body | any_field,  # body
    st.floats(allow_nan=False) | st.integers(0, 9) | any_field,  # sent_at
    st.text(max_size=3) | any_field,  # origin
)


@FAST
@given(event_fields, st.sampled_from(["catA", "catB"]))
def test_the_subscribers_fast_path_accepts_only_what_the_full_decode_accepts(fields: tuple, topic: str) -> None:
    payload = msgpack.packb(list(fields), use_bin_type=True)
    inbox = Inbox(_Receiver(), ["catA", "catB"])
    fast = inbox.fast_event(topic, payload)
    full = inbox.checked_event(topic, payload, "test")
    if fast is not None:  # never more lenient, and the same event
        assert full == fast
    assert (full is None) == bool(inbox.node.rejects)


@FAST
@given(st.text(min_size=1, max_size=5), st.integers(1, 10**6), st.sampled_from(["catA", "catB"]))
def test_the_subscribers_fast_path_takes_every_well_formed_event(run: str, seq: int, topic: str) -> None:
    body = {"run": run, "topic": topic, "seq": seq, "n": seq, "hat": hat_for(topic)}
    payload = wire.make(EVENT, "e:1", body, "pub")
    assert Inbox(_Receiver(), [topic]).fast_event(topic, payload) == (run, seq)
