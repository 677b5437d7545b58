"""nodes.sequence: the bodies publishers build and the per-(run, topic) bookkeeping subscribers keep."""

from __future__ import annotations

import pytest

from nodes.core import wire
from nodes.pubsub import protocol, sequence
from nodes.pubsub.protocol import problem
from nodes.pubsub.sequence import DUPLICATE, GAP, IN_ORDER, LATE, LATE_JOIN, Outbox, Tracker, hat_for


def test_hat_follows_the_topic_suffix() -> None:
    assert [hat_for(t) for t in ("catA", "catB", "catC", "catD")] == ["hatA", "hatB", "hatC", "hatD"]
    assert hat_for("catZ9") == "hatZ9"


def test_outbox_round_robin_with_per_topic_seq() -> None:
    box = Outbox("run-1", ("catA", "catB", "catC"))
    bodies = [box.next() for _ in range(7)]
    assert [(t, b["seq"], b["n"]) for t, b in bodies] == [
        ("catA", 1, 1),
        ("catB", 1, 2),
        ("catC", 1, 3),
        ("catA", 2, 4),
        ("catB", 2, 5),
        ("catC", 2, 6),
        ("catA", 3, 7),
    ]
    assert bodies[0][1] == {"run": "run-1", "topic": "catA", "seq": 1, "n": 1, "hat": "hatA"}
    with pytest.raises(ValueError):
        Outbox("run-1", ())


def test_in_order_stream_has_no_anomalies() -> None:
    tr = Tracker(["catA"])
    assert [tr.record("r", "catA", s) for s in range(1, 6)] == [(IN_ORDER, 0)] * 5
    assert tr.summary()["catA"] == {
        "received": 5,
        "late_join": 0,
        "gaps": 0,
        "missing": 0,
        "duplicates": 0,
        "out_of_order": 0,
        "runs": 1,
        "run": "r",
        "last_seq": 5,
    }


def test_gap_counts_the_skipped_numbers() -> None:
    tr = Tracker()
    tr.record("r", "catA", 1)
    assert tr.record("r", "catA", 5) == (GAP, 3)
    assert tr.record("r", "catA", 6) == (IN_ORDER, 0)
    s = tr.summary()["catA"]
    assert (s["received"], s["gaps"], s["missing"], s["last_seq"]) == (3, 3, 3, 6)


def test_a_late_joiner_is_not_a_gap() -> None:
    tr = Tracker()
    assert tr.record("r", "catA", 3) == (LATE_JOIN, 2)  # 1 and 2 were published before it subscribed
    assert tr.record("r", "catA", 4) == (IN_ORDER, 0)
    assert tr.record("r", "catA", 6) == (GAP, 1)  # after the first one, a skip is a loss
    s = tr.summary()["catA"]
    assert (s["received"], s["late_join"], s["gaps"], s["missing"], s["last_seq"]) == (3, 2, 1, 1, 6)


def test_late_arrival_is_out_of_order_and_fills_the_gap() -> None:
    tr = Tracker()
    for s in (1, 3, 2, 4):
        tr.record("r", "catA", s)
    s = tr.summary()["catA"]
    assert (s["gaps"], s["missing"], s["out_of_order"], s["duplicates"], s["last_seq"]) == (1, 0, 1, 0, 4)


def test_duplicates_of_current_and_old_numbers() -> None:
    tr = Tracker()
    verdicts = [tr.record("r", "catA", s)[0] for s in (1, 2, 2, 1, 3)]
    assert verdicts == [IN_ORDER, IN_ORDER, DUPLICATE, DUPLICATE, IN_ORDER]
    # a late number that already arrived once is a duplicate the second time
    tr.record("r", "catA", 5)
    assert tr.record("r", "catA", 4)[0] == LATE
    assert tr.record("r", "catA", 4)[0] == DUPLICATE
    s = tr.summary()["catA"]
    assert (s["received"], s["duplicates"], s["out_of_order"], s["gaps"], s["missing"]) == (8, 3, 1, 1, 0)


def test_topics_are_tracked_separately() -> None:
    tr = Tracker()
    for s in (1, 2, 3):
        tr.record("r", "catA", s)
    assert tr.record("r", "catB", 1) == (IN_ORDER, 0)
    assert tr.summary()["catB"]["last_seq"] == 1


def test_a_new_run_starts_a_fresh_stream() -> None:
    """A restarted publisher numbers from 1 again: neither duplicates nor gaps."""
    tr = Tracker()
    for s in (1, 2, 3):
        tr.record("run-1", "catA", s)
    assert tr.record("run-2", "catA", 1) == (IN_ORDER, 0)
    assert tr.record("run-2", "catA", 2) == (IN_ORDER, 0)
    s = tr.summary()["catA"]
    assert (s["received"], s["runs"], s["run"], s["last_seq"], s["duplicates"], s["gaps"]) == (5, 2, "run-2", 2, 0, 0)


def test_expected_topics() -> None:
    assert Tracker(["catA", "catC"]).expects("catC")
    assert not Tracker(["catA", "catC"]).expects("catAB")
    assert Tracker([]).expects("anything")


def test_streams_are_bounded_and_totals_stay_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sequence, "MAX_STREAMS", 3)
    tr = Tracker()
    tr.record("real", "catA", 1)
    for i in range(10):  # made-up runs flood the tracker; the real run keeps being heard
        tr.record(f"fake{i}", "catA", 5)
        tr.record("real", "catA", i + 2)
    assert len(tr.streams) == 3 and tr.retired == 8
    assert tr.record("real", "catA", 12) == (IN_ORDER, 0)  # never retired: it was heard recently
    s = tr.summary()["catA"]
    assert (s["received"], s["late_join"], s["runs"], s["run"], s["last_seq"]) == (22, 40, 11, "real", 12)


def test_missing_set_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sequence, "MISSING_LIMIT", 10)
    tr = Tracker()
    tr.record("r", "catA", 1)
    assert tr.record("r", "catA", 1001) == (GAP, 999)
    s = tr.summary()["catA"]
    assert (s["gaps"], s["missing"]) == (999, 10)


def env(body: object, kind: str = "event") -> wire.Envelope:
    return wire.decode(wire.make(kind, "id:1", body))


GOOD = {"run": "r", "topic": "catA", "seq": 1, "n": 1, "hat": "hatA"}


def test_problem_accepts_a_good_event() -> None:
    assert problem(env(GOOD), "catA") is None


@pytest.mark.parametrize(
    ("envelope", "needle"),
    [
        (env(GOOD, "reply"), "kind"),
        (env([1, 2]), "not a map"),
        (env({**GOOD, "run": ""}), "run id"),
        (env({**GOOD, "seq": 0}), "seq"),
        (env({**GOOD, "seq": "1"}), "seq"),
        (env({**GOOD, "seq": True}), "seq"),
        (env({**GOOD, "topic": "catB"}), "topic"),
        (env({**GOOD, "hat": "hatB"}), "hat"),
    ],
)
def test_problem_names_what_is_wrong(envelope: wire.Envelope, needle: str) -> None:
    reason = problem(envelope, "catA")
    assert reason is not None and needle in reason


def test_plain_and_envelope_are_told_apart_by_the_first_two_bytes() -> None:
    assert protocol.ENVELOPE_PREFIX == b"\x96\x01"
    assert protocol.is_envelope(wire.make("event", "id:1", GOOD))
    assert protocol.is_envelope(wire.make("reply", "id:1", None))  # an envelope, if not an event
    for plain in (b"hatA", b"", b"\x96", b"\x00not msgpack", b"Stop saying: message #1", "hätA".encode()):
        assert not protocol.is_envelope(plain), plain
    assert protocol.plain_payload("catC") == b"hatC"


def test_hello_names_the_zsub_and_its_subscriptions() -> None:
    h = protocol.hello(("catA", "catC"), "zsub-1.ab12")
    assert h.startswith(protocol.HELLO) and protocol.parse_hello(h) == ("zsub-1.ab12", 2)
    assert protocol.parse_hello(protocol.hello((), "z/odd name")) == ("z/odd name", 1)  # b"" = every topic
