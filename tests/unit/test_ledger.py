"""The sink's ledger on its own: arrival order, duplicates, missing, per-worker counts, bounds."""

from __future__ import annotations

import pytest

from nodes.pipeline.ledger import (
    COUNTED,
    DUPLICATE,
    EXAMPLES,
    OUT_OF_RANGE,
    PENDING,
    BatchLedger,
    Ledger,
)
from nodes.pipeline.protocol import announcement, task_ref


def test_results_before_the_announcement_are_held_then_replayed() -> None:
    b = BatchLedger("b1")
    assert b.record(2, "w1", "r1", now=10.0) == PENDING
    assert b.record(7, "w2", "r2", now=11.0) == PENDING  # outside [0, 5) once the size is known
    assert b.record(2, "w2", "r3", now=12.0) == PENDING  # a duplicate of n=2
    assert b.summary()["pending"] == 3 and b.summary()["missing"] is None and not b.complete

    assert b.announce(5, now=13.0) == 1  # one early result was out of range

    s = b.summary()
    assert (s["size"], s["received"], s["distinct"], s["duplicates"], s["pending"]) == (5, 2, 1, 1, 0)
    assert s["duplicate_examples"] == [{"n": 2, "id": "r3", "worker": "w2"}]
    assert (s["missing"], s["missing_examples"]) == (4, [0, 1, 3, 4])
    assert s["by_worker"] == {"w1": 1, "w2": 1}
    assert (s["first_at"], s["last_at"], s["elapsed_s"]) == (10.0, 12.0, 2.0)  # arrival times are kept


def test_announcing_twice_is_refused() -> None:
    b = BatchLedger("b1")
    b.announce(3)
    with pytest.raises(ValueError, match="already announced"):
        b.announce(4)


def test_duplicates_are_counted_with_the_first_few_examples() -> None:
    b = BatchLedger("b1")
    b.announce(3)
    assert b.record(0, "w1", "a") == COUNTED
    for i in range(EXAMPLES + 5):
        assert b.record(0, "w2", f"dup{i}") == DUPLICATE
    s = b.summary()
    assert (s["received"], s["distinct"], s["duplicates"]) == (EXAMPLES + 6, 1, EXAMPLES + 5)
    assert len(s["duplicate_examples"]) == EXAMPLES
    assert s["duplicate_examples"][0] == {"n": 0, "id": "dup0", "worker": "w2"}


def test_missing_counts_against_the_size_and_lists_the_first_few() -> None:
    b = BatchLedger("b1")
    b.announce(100)
    for n in range(0, 100, 2):
        b.record(n, "w1", f"r{n}")
    missing, examples = b.missing()
    assert missing == 50
    assert examples == [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]
    assert b.record(100, "w1", "x") == OUT_OF_RANGE and b.record(-1, "w1", "y") == OUT_OF_RANGE
    assert b.summary()["received"] == 50  # out-of-range results are not counted


def test_a_huge_announced_size_costs_only_what_was_received() -> None:
    b = BatchLedger("b1")
    b.announce(10**12)
    b.record(0, "w1", "r0")
    assert b.missing(limit=3) == (10**12 - 1, [1, 2, 3])


def test_per_worker_counts_and_completion() -> None:
    b = BatchLedger("b1")
    b.announce(6)
    for n, worker in enumerate(["w1", "w2", "w3", "w1", "w2", "w1"]):
        assert not b.complete
        b.record(n, worker, f"r{n}", now=float(n))
    s = b.summary()
    assert s["complete"] and b.completed_at == 5.0
    assert s["by_worker"] == {"w1": 3, "w2": 2, "w3": 1}
    assert (s["missing"], s["missing_examples"], s["duplicates"]) == (0, [], 0)


def test_an_empty_batch_is_complete_when_announced() -> None:
    b = BatchLedger("b0")
    assert b.announce(0) == 0 and b.complete


def test_the_ledger_keeps_a_bounded_number_of_batches() -> None:
    ledger = Ledger(keep=3)
    for i in range(5):
        ledger.get(f"b{i}").announce(1)
    assert list(ledger.summaries()) == ["b2", "b3", "b4"]
    assert ledger.evicted == 2
    assert ledger.get("b4") is ledger.get("b4")


@pytest.mark.parametrize(
    "body",
    [
        None,
        [1, 2],
        {"n": 1},
        {"batch": "", "n": 1},
        {"batch": 7, "n": 1},
        {"batch": "b" * 201, "n": 1},
        {"batch": "b"},
        {"batch": "b", "n": "1"},
        {"batch": "b", "n": 1.0},
        {"batch": "b", "n": True},
        {"batch": "b", "n": -1},
    ],
)
def test_bad_task_references_are_refused(body: object) -> None:
    with pytest.raises(ValueError):
        task_ref(body)


def test_body_parsers_accept_good_bodies() -> None:
    assert task_ref({"batch": "b", "n": 0, "worker": "w"}) == ("b", 0)
    assert announcement({"batch": "b", "size": 3}) == ("b", 3)
    for bad in ({"batch": "b"}, {"batch": "b", "size": -1}, {"batch": "b", "size": False}, {"size": 3}):
        with pytest.raises(ValueError):
            announcement(bad)
