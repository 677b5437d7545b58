"""The sink's ledger on its own: arrival order, duplicates, missing, per-worker counts, bounds; its
journal (persisted, replayed after a restart, torn tails cut); the ledger-path bodies."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from nodes.pipeline import ledger as ledger_module
from nodes.pipeline.journal import Journal, file_name
from nodes.pipeline.ledger import (
    COUNTED,
    DROPPED,
    DUPLICATE,
    EXAMPLES,
    OTHER,
    OUT_OF_RANGE,
    PENDING,
    BatchLedger,
    Ledger,
)
from nodes.pipeline.protocol import (
    MAX_LIST,
    announcement,
    ledger_endpoint,
    progress,
    progress_of,
    query,
    query_of,
    task_ref,
)


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


# --- limits: bounded memory, and eviction by state (issue 10) ----------------------------------------------


def test_pending_results_are_capped_and_the_drops_counted() -> None:
    b = BatchLedger("early", max_pending=3)
    assert [b.record(n, "w", f"m{n}") for n in range(5)] == [PENDING] * 3 + [DROPPED] * 2
    assert (len(b.pending), b.dropped, b.summary()["dropped"]) == (3, 2, 2)
    assert b.announce(10) == 0
    s = b.summary()
    assert (s["distinct"], s["missing"], s["pending"]) == (3, 7, 0)  # the dropped ones are simply missing
    assert b.record(7, "w", "late") == COUNTED  # announced: no pending limit applies any more


def test_results_for_made_up_batches_never_evict_a_batch_in_progress() -> None:
    ledger = Ledger(keep=5, max_unannounced=2)
    real = ledger.get("real")
    real.announce(10)
    for n in range(5):
        ledger.record("real", n, "w1", f"r{n}")
    for i in range(100):  # a flood: one result for each of 100 batch ids nobody announced
        assert ledger.record(f"made-up-{i}", 0, "evil", f"x{i}")[1] == PENDING
    assert list(ledger.batches) == ["real", "made-up-98", "made-up-99"]
    assert ledger.counters == {
        "evicted_unannounced": 98,
        "evicted_complete": 0,
        "evicted_in_progress": 0,
        "results_dropped": 98,  # the pending result of each evicted made-up batch
        "batches_refused": 0,
    }
    assert ledger.evicted == 98 and len(ledger.take_evicted()) == 98
    for n in range(5, 10):
        ledger.record("real", n, "w2", f"r{n}")
    s = ledger.batches["real"].summary()
    assert (s["complete"], s["distinct"], s["duplicates"], s["missing"]) == (True, 10, 0, 0)


def test_unannounced_and_complete_batches_go_first_and_in_progress_only_for_an_announced_one() -> None:
    ledger = Ledger(keep=3, max_unannounced=3)
    ledger.get("done").announce(1)
    ledger.record("done", 0, "w", "m0")
    ledger.get("busy").announce(5)
    ledger.record("early", 0, "w", "m1")  # unannounced
    ledger.record("new1", 0, "w", "m2")  # full: the unannounced one goes first
    assert list(ledger.batches) == ["done", "busy", "new1"] and ledger.counters["evicted_unannounced"] == 1
    ledger.get("busy2").announce(5)  # new1 is unannounced: it goes
    ledger.get("busy3").announce(5)  # then the complete one
    assert list(ledger.batches) == ["busy", "busy2", "busy3"]
    assert (ledger.counters["evicted_unannounced"], ledger.counters["evicted_complete"]) == (2, 1)
    # every batch kept is in progress: a result for a new batch is dropped, nothing is evicted
    assert ledger.record("made-up", 0, "w", "m3") == (None, DROPPED)
    assert (ledger.counters["batches_refused"], ledger.counters["results_dropped"]) == (1, 3)  # 2 evicted + 1
    assert list(ledger.batches) == ["busy", "busy2", "busy3"]
    # an announced batch is in progress too: as a last resort it evicts the oldest one in progress
    ledger.get("busy4").announce(5)
    assert list(ledger.batches) == ["busy2", "busy3", "busy4"] and ledger.counters["evicted_in_progress"] == 1


def test_a_complete_batch_holds_no_set_of_numbers() -> None:
    b = BatchLedger("big")
    b.announce(1000)
    for n in range(1000):
        b.record(n, "w", f"m{n}")
    assert b.complete and b.seen == range(1000)  # O(1) memory instead of a set of 1000 ints
    assert b.record(5, "w", "again") == DUPLICATE and b.record(1000, "w", "x") == OUT_OF_RANGE
    assert (b.missing(), b.missing_ranges(10), b.summary()["distinct"]) == ((0, []), [], 1000)


def test_workers_per_batch_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_module, "MAX_WORKERS", 3)
    b = BatchLedger("b")
    b.announce(10)
    for n in range(10):
        b.record(n, f"w{n}", f"m{n}")
    assert b.summary()["by_worker"] == {"w0": 1, "w1": 1, "w2": 1, OTHER: 7}


def test_replay_keeps_the_unannounced_limit_and_forgets_the_rest(tmp_path: Path) -> None:
    journal = Journal(tmp_path).open()
    journal.announced("real", 3, 0.0)
    journal.result("real", 0, "w", "m", 0.5)
    for i in range(4):
        journal.result(f"early{i}", 0, "w", f"m{i}", float(i + 1))
    journal.close()
    ledger = Ledger(keep=10, max_unannounced=2)
    Journal(tmp_path).open().replay(ledger)
    assert list(ledger.batches) == ["real", "early2", "early3"]
    names = [file_name(b) for b in ("real", "early2", "early3")]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


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


def test_the_ledger_reports_evicted_batches_once() -> None:
    ledger = Ledger(keep=2)
    for i in range(4):
        ledger.get(f"b{i}")
    assert ledger.take_evicted() == ["b0", "b1"]
    assert ledger.take_evicted() == []


# --- missing task numbers as ranges (what the ventilator re-sends) ---------------------------------


def test_missing_ranges_are_half_open_lowest_first_and_bounded() -> None:
    b = BatchLedger("b1")
    assert b.missing_ranges(10) == []  # size unknown: nothing to list
    b.announce(20)
    for n in [*range(0, 5), 7, *range(10, 18)]:
        b.record(n, "w1", f"r{n}")
    assert b.missing_ranges(100) == [[5, 7], [8, 10], [18, 20]]
    assert b.missing_ranges(3) == [[5, 7], [8, 9]]  # exactly 3 numbers
    assert b.missing_ranges(0) == []
    for n in [5, 6, 8, 9, 18, 19]:
        b.record(n, "w2", f"s{n}")
    assert b.complete and b.missing_ranges(100) == []


# --- the journal: the ledger survives a restart ----------------------------------------------------


def fill(ledger: Ledger, journal: Journal) -> None:
    """The sink's calls, mirrored into the journal: early results, an announcement, duplicates, two batches."""
    calls = [
        ("a", "r", 3, "w1", "m1", 10.0),  # before the announcement: pending
        ("a", "A", 5, 11.0),
        ("a", "r", 0, "w2", "m2", 12.0),
        ("a", "r", 3, "w2", "m3", 13.0),  # a duplicate of the early one
        ("b", "A", 2, 14.0),
        ("b", "r", 1, "w1", "m4", 15.0),
        ("a", "r", 9, "w1", "m5", 16.0),  # out of range: the sink rejects it and journals nothing
    ]
    for batch, kind, *rest in calls:
        b = ledger.get(batch)
        if kind == "A":
            size, now = rest
            b.announce(size, now=now)
            journal.announced(batch, size, now)
        elif b.record(*rest) != OUT_OF_RANGE:
            journal.result(batch, *rest)


def test_a_replayed_journal_rebuilds_the_same_ledger(tmp_path: Path) -> None:
    original, journal = Ledger(), Journal(tmp_path).open()
    fill(original, journal)
    journal.flush()
    journal.close()

    replayed = Ledger()
    report = Journal(tmp_path).open().replay(replayed)

    assert (report.batches, report.records, report.torn_bytes, report.bad_files) == (2, 6, 0, [])
    assert replayed.summaries() == original.summaries()
    a = replayed.batches["a"].summary()
    assert (a["size"], a["distinct"], a["duplicates"], a["missing"], a["by_worker"]) == (5, 2, 1, 3, {"w1": 1, "w2": 2})
    assert (a["first_at"], a["last_at"]) == (10.0, 13.0)  # arrival times survive too
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([file_name("a"), file_name("b")])


def test_a_torn_tail_is_cut_and_appending_goes_on(tmp_path: Path) -> None:
    ledger, journal = Ledger(), Journal(tmp_path).open()
    fill(ledger, journal)
    journal.close()
    path = tmp_path / file_name("a")
    whole = path.stat().st_size
    torn = msgpack.packb(["R", 4, "w1", "m9", 20.0])[:-3]  # a SIGKILL in the middle of a write
    with open(path, "ab") as f:
        f.write(torn)

    second, journal2 = Ledger(), Journal(tmp_path).open()
    report = journal2.replay(second)
    assert report.torn_bytes == len(torn) and path.stat().st_size == whole
    assert second.summaries() == ledger.summaries()
    journal2.result("a", 4, "w1", "m10", 21.0)  # the restarted sink appends after the cut
    second.batches["a"].record(4, "w1", "m10", 21.0)
    journal2.close()

    third = Ledger()
    assert Journal(tmp_path).open().replay(third).torn_bytes == 0
    assert third.batches["a"].summary()["distinct"] == 3
    assert third.summaries() == second.summaries()


def test_files_that_are_not_journals_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "garbage.ledger").write_bytes(b"\xc1\xc1 not msgpack")
    (tmp_path / "empty.ledger").write_bytes(b"")
    (tmp_path / "noheader.ledger").write_bytes(msgpack.packb(["A", 3, 1.0]))
    (tmp_path / "notes.txt").write_text("ignored: not a .ledger file")
    ledger = Ledger()
    report = Journal(tmp_path).open().replay(ledger)
    assert sorted(report.bad_files) == ["empty.ledger", "garbage.ledger", "noheader.ledger"]
    assert (report.batches, ledger.batches) == (0, {})


def test_replay_keeps_the_newest_batches_and_deletes_the_evicted_journals(tmp_path: Path) -> None:
    journal = Journal(tmp_path).open()
    for i in range(4):
        journal.announced(f"b{i}", 1, float(i))
        journal.result(f"b{i}", 0, "w", f"m{i}", float(i))
    journal.close()
    ledger = Ledger(keep=2)
    Journal(tmp_path).open().replay(ledger)
    assert list(ledger.batches) == ["b2", "b3"]  # oldest first, by creation
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([file_name("b2"), file_name("b3")])


def test_forget_deletes_a_batch_and_fsync_counts(tmp_path: Path) -> None:
    journal = Journal(tmp_path, fsync_every=0).open()
    journal.announced("x", 1, 1.0)
    journal.flush()  # fsync_every=0: every flush is fsync'd
    assert journal.counters["flushes"] == 1 and journal.counters["fsyncs"] >= 1
    journal.forget("x")
    assert list(tmp_path.iterdir()) == []
    journal.close()


def test_file_names_are_safe_and_unique() -> None:
    a, b = file_name("../etc/passwd"), file_name("..-etc-passwd")
    assert "/" not in a and a != b and a.endswith(".ledger")
    assert len(file_name("x" * 200)) < 120


def test_an_unwritable_state_dir_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError):
        Journal(blocker / "sub").open()


# --- the ledger path's bodies -----------------------------------------------------------------------


def test_query_and_progress_round_trip() -> None:
    assert query_of(query("b", 10, 5)) == ("b", 10, 5)
    assert query_of({"batch": "b", "size": 10}) == ("b", 10, 0)  # a plain announcement is a query too
    assert query_of(query("b", 10, 10**9))[2] == MAX_LIST
    b = BatchLedger("b")
    b.announce(4)
    b.record(1, "w", "m")
    body = progress(b.summary(), "b", b.missing_ranges(10), "q:1")
    p = progress_of(body)
    assert (p["distinct"], p["missing"], p["complete"], p["re"], p["error"]) == (1, 3, False, "q:1", None)
    assert p["missing_ranges"] == [(0, 1), (2, 4)]


@pytest.mark.parametrize(
    "change",
    [
        {"missing_ranges": [[3, 3]]},
        {"missing_ranges": [[0, 5]]},
        {"missing_ranges": [[-1, 2]]},
        {"missing_ranges": [[0, 1, 2]]},
        {"missing_ranges": "0-3"},
        {"distinct": -1},
        {"complete": 1},
        {"re": 7},
        {"error": 3},
    ],
)
def test_bad_progress_bodies_are_refused(change: dict) -> None:
    b = BatchLedger("b")
    b.announce(4)
    body = {**progress(b.summary(), "b", [], "q:1"), **change}
    with pytest.raises(ValueError):
        progress_of(body)


def test_the_ledger_endpoint_is_derived_from_the_results_endpoint_unless_set() -> None:
    assert ledger_endpoint("tcp://*:5558") == "tcp://*:5560"
    assert ledger_endpoint("tcp://sink:5558") == "tcp://sink:5560"
    assert ledger_endpoint("tcp://[::1]:7000") == "tcp://[::1]:7002"
    assert ledger_endpoint("ipc:///tmp/s.ipc") == "ipc:///tmp/s.ipc.ledger"
    assert ledger_endpoint("inproc://sink") == "inproc://sink.ledger"
    assert ledger_endpoint("tcp://*:5558", "tcp://*:6000") == "tcp://*:6000"
    for bad in ("tcp://*:*", "tcp://*:65534"):
        with pytest.raises(ValueError, match="set it explicitly"):
            ledger_endpoint(bad)
