"""The ``results`` kind: the results of one batch from one pipeworker wake-up in one frame.

Its parsing (good, bad, bounds), the sink counting it exactly like the same numbers sent as single
``result`` messages (ledger, counters, journal, replay after a restart), and the pipeworker's framing
(one frame per run of one batch, at most MAX_RESULTS numbers, within MAX_MSG_SIZE). In process, no
network: the nodes are built but not served.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from nodes import roles
from nodes.core import wire
from nodes.pipeline import pipeworker as pipeworker_module
from nodes.pipeline import protocol
from nodes.pipeline.journal import Journal, file_name
from nodes.pipeline.ledger import Ledger
from nodes.pipeline.pipeworker import Pipeworker
from nodes.pipeline.protocol import MAX_RESULTS, result_of, results, results_of, task_of
from nodes.pipeline.sink import Sink

# --- parsing ---------------------------------------------------------------------------------------


def test_a_results_body_round_trips_through_the_wire() -> None:
    assert "results" in wire.KINDS and protocol.RESULTS == "results"
    frame = wire.make(protocol.RESULTS, "pw.1:1", results("b1", [3, 0, 3, 2**40], "pw"), "pw")
    env = wire.decode(frame)
    assert env.kind == "results"
    assert results_of(env.body) == ("b1", [3, 0, 3, 2**40], "pw")


def test_results_bounds_one_to_max_results() -> None:
    assert results_of(results("b", [0], "w"))[1] == [0]
    assert results_of(results("b", list(range(MAX_RESULTS)), "w"))[1] == list(range(MAX_RESULTS))
    with pytest.raises(ValueError, match="'ns'"):
        results_of(results("b", list(range(MAX_RESULTS + 1)), "w"))
    with pytest.raises(ValueError, match="'ns'"):
        results_of(results("b", [], "w"))
    # The largest list fits the smallest MAX_MSG_SIZE's default by far, and the default limit at worst.
    worst = wire.make(protocol.RESULTS, "x" * 40, results("b" * 200, [2**64 - 1] * MAX_RESULTS, "w" * 200), "w" * 200)
    assert len(worst) < 4 * 1024 < wire.DEFAULT_MAX_SIZE


GOOD = {"batch": "b", "ns": [1, 2], "worker": "w"}


@pytest.mark.parametrize(
    "change",
    [
        None,  # not a map
        {"batch": None},
        {"batch": 7},
        {"batch": ""},
        {"batch": "b" * (protocol.MAX_BATCH_ID + 1)},
        {"worker": None},
        {"worker": ""},
        {"worker": 3},
        {"ns": None},
        {"ns": 5},
        {"ns": "12"},
        {"ns": {"0": 1}},
        {"ns": []},
        {"ns": [1, "2"]},
        {"ns": [1, 2.0]},
        {"ns": [True]},
        {"ns": [1, None]},
        {"ns": [1, -1]},
        {"ns": [[1]]},
        {"ns": list(range(MAX_RESULTS + 1))},
    ],
)
def test_bad_results_bodies_are_refused(change: dict | None) -> None:
    body: Any = [GOOD] if change is None else {**GOOD, **change}
    with pytest.raises(ValueError):
        results_of(body)


@pytest.mark.parametrize(
    "body",
    [
        {"batch": "b", "n": 1, "work_ms": 0},
        {"batch": "b", "n": 1, "work_ms": 2.5},
        {"batch": "b", "n": 1},
        {"batch": "b", "n": 1, "work_ms": math.nan},
        {"batch": "b", "n": 1, "work_ms": math.inf},
        {"batch": "b", "n": 1, "work_ms": -1},
        {"batch": "b", "n": 1, "work_ms": True},
        {"batch": "b", "n": 1, "work_ms": protocol.MAX_WORK_MS + 1},
        {"batch": "b", "n": True, "work_ms": 0},
        {"batch": "b", "n": -1, "work_ms": 0},
        {"batch": "", "n": 1, "work_ms": 0},
        {"batch": "b" * 201, "n": 1, "work_ms": 0},
        {"batch": "b", "n": 1, "worker": "w"},
        {"batch": "b", "n": 1, "worker": ""},
        {"batch": "b", "n": 1, "worker": 7},
        {"batch": "b", "n": 1.0, "worker": "w"},
    ],
)
def test_the_fast_paths_of_task_and_result_agree_with_the_field_checks(body: dict) -> None:
    """task_of/result_of accept the common case in one test: never what the field-by-field checks refuse."""

    def slow_task(b: dict) -> Any:
        batch, n = protocol.task_ref(b)
        w = b.get("work_ms", 0)
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise ValueError
        if not 0 <= w <= protocol.MAX_WORK_MS:
            raise ValueError
        return batch, n, w

    def slow_result(b: dict) -> Any:
        batch, n = protocol.task_ref(b)
        w = b.get("worker")
        if not isinstance(w, str) or not 0 < len(w) <= protocol.MAX_BATCH_ID:
            raise ValueError
        return batch, n, w

    for fast, slow in ((task_of, slow_task), (result_of, slow_result)):
        try:
            want = slow(body)
        except ValueError:
            with pytest.raises(ValueError):
                fast(body)
        else:
            assert fast(body) == want


# --- the sink: a "results" frame counts like the same single results --------------------------------


def make_sink(state: Path) -> Sink:
    env = {"SINK_STATE_DIR": str(state), "SINK_BIND": "tcp://127.0.0.1:1", "STATUS_PORT": "0", "NODE_NAME": "sink"}
    sink = Sink(roles.load("sink", environ=env), ctx=zmq.Context.instance(), stop=threading.Event())
    sink.open_journal()
    return sink


def announce(batch: str, size: int) -> list[bytes]:
    return [wire.make(protocol.BATCH, f"v:{batch}", protocol.announce(batch, size), "v")]


def singles(batch: str, ns: list[int], worker: str) -> list[list[bytes]]:
    return [[wire.make(protocol.RESULT, f"{worker}:{n}", protocol.result(batch, n, worker), worker)] for n in ns]


def grouped(batch: str, ns: list[int], worker: str) -> list[list[bytes]]:
    return [[wire.make(protocol.RESULTS, f"{worker}:f", results(batch, ns, worker), worker)]]


def counts(sink: Sink) -> dict[str, Any]:
    """What /status shows of the results, without arrival times and message ids (they differ by design)."""
    c = sink.stats.counters
    out: dict[str, Any] = {k: c.get(k, 0) for k in ("results", "duplicates", "rejected", "batches_unannounced")}
    out["by_worker"] = dict(sink.stats.labelled.get("results_by_worker", {}))
    for name, b in sink.ledger.summaries().items():
        out[name] = {k: v for k, v in b.items() if k not in ("first_at", "last_at", "elapsed_s", "duplicate_examples")}
        out[name]["duplicate_ns"] = [d["n"] for d in b["duplicate_examples"]]
    return out


# (frames before the announcement, size, frames after, worker): early numbers, duplicates, out of range.
SCENARIOS = {
    "announced": ([], 10, [0, 1, 2, 2, 5, 9, 9, 3], "w1"),
    "out_of_range_in_the_list": ([], 10, [1, 10, 3, 10**9, 4], "w1"),
    "early_then_announced": ([7, 1, 12, 1], 10, [0, 7, 2], "w2"),
    "completes_the_batch": ([], 4, [3, 2, 1, 0, 2], "w1"),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_results_frame_counts_exactly_like_single_results(tmp_path: Path, scenario: str) -> None:
    early, size, later, worker = SCENARIOS[scenario]
    by_kind: dict[str, dict[str, Any]] = {}
    for kind, frames_of in (("single", singles), ("grouped", grouped)):
        sink = make_sink(tmp_path / kind)
        if early:
            for frames in frames_of("b", early, worker):
                sink.handle(frames)
        sink.handle(announce("b", size))
        for frames in frames_of("b", later, worker):
            sink.handle(frames)
        sink.journal.flush()
        by_kind[kind] = counts(sink)
        summaries = sink.ledger.summaries()
        sink.journal.close()

        restarted = make_sink(tmp_path / kind)  # replays the journal: the same ledger, arrival times too
        assert restarted.ledger.summaries() == summaries
        restarted.journal.close()
    assert by_kind["grouped"] == by_kind["single"]
    got = by_kind["grouped"]
    out_of_range = sum(not 0 <= n < size for n in early + later)
    assert got["rejected"] == out_of_range  # each number outside [0, size) one reject; the others counted
    # ``results`` counts what was kept when it came: an early number found out of range later still counts.
    assert got["results"] == len(early) + len(later) - sum(not 0 <= n < size for n in later)


def test_one_journal_record_a_frame_and_old_journals_still_replay(tmp_path: Path) -> None:
    sink = make_sink(tmp_path / "new")
    sink.handle(announce("b", 600))
    for frames in grouped("b", list(range(256)), "w") + grouped("b", list(range(256, 512)), "w"):
        sink.handle(frames)
    sink.handle(singles("b", [600], "w")[0])  # out of range: rejected, not journalled
    assert sink.journal.counters["records"] == 3  # the announcement, two frames
    sink.journal.close()
    restarted = make_sink(tmp_path / "new")
    assert restarted.ledger.summaries()["b"]["distinct"] == 512
    assert (restarted.replayed["records"], restarted.replayed["results"]) == (3, 512)  # /status journal.replayed
    restarted.journal.close()

    # A journal written before "results" existed: "R" records only.
    old = Journal(tmp_path / "old").open()
    old.announced("b", 3, 1.0)
    for n in (0, 2, 2):
        old.result("b", n, "w", f"m{n}", 2.0 + n)
    old.close()
    b = make_sink(tmp_path / "old").ledger.summaries()["b"]
    assert (b["distinct"], b["duplicates"], b["missing"], b["first_at"], b["last_at"]) == (2, 1, 1, 2.0, 4.0)


def test_a_bad_results_record_ends_the_replay_like_a_torn_tail(tmp_path: Path) -> None:
    j = Journal(tmp_path).open()
    j.announced("b", 10, 1.0)
    j.results("b", [0, 1], "w", "m1", 2.0)
    j.close()
    path = tmp_path / file_name("b")
    good = path.stat().st_size
    with open(path, "ab") as f:
        f.write(msgpack.packb(["S", [2, "x"], "w", "m2", 3.0]))  # a non-number: not a record
        f.write(msgpack.packb(["S", [3], "w", "m3", 4.0]))
    ledger = Ledger()
    report = Journal(tmp_path).open().replay(ledger)
    assert ledger.batches["b"].summary()["distinct"] == 2
    assert report.torn_bytes > 0 and path.stat().st_size == good


@pytest.mark.parametrize(
    "body",
    [
        {"batch": "b", "ns": [1, "2"], "worker": "w"},
        {"batch": "b", "ns": [], "worker": "w"},
        {"batch": "b", "ns": list(range(MAX_RESULTS + 1)), "worker": "w"},
        {"batch": "b", "ns": 3, "worker": "w"},
        {"batch": "b", "ns": [1], "worker": ""},
        {"batch": "b", "n": 1, "worker": "w"},  # a single result's body under the new kind
        [1, 2],
    ],
)
def test_the_sink_rejects_a_bad_results_frame_once_and_counts_nothing_of_it(tmp_path: Path, body: Any) -> None:
    sink = make_sink(tmp_path)
    sink.handle(announce("b", 1000))
    sink.handle([wire.make(protocol.RESULTS, "x:1", body, "x")])
    c = sink.stats.counters
    assert (c["rejected"], c.get("results", 0), sink.ledger.batches["b"].received) == (1, 0, 0)
    assert sink.journal.counters["records"] == 1  # the announcement only
    sink.journal.close()


def test_no_room_drops_every_number_of_a_frame_as_single_results_would(tmp_path: Path) -> None:
    single, frame = Ledger(keep=1, max_unannounced=1), Ledger(keep=1, max_unannounced=1)
    for ledger in (single, frame):
        ledger.get("busy").announce(5)  # in progress: never evicted for an unannounced batch
    for n in (0, 1, 2):
        assert single.record("new", n, "w", "m")[0] is None
    assert frame.record_many("new", [0, 1, 2], "w", "m") == (None, [], [], 0)
    assert frame.counters == single.counters
    assert frame.counters["results_dropped"] == 3 and frame.counters["batches_refused"] == 3


# --- the pipeworker: one frame per run of one batch ----------------------------------------------------


def pipeworker_and_sink(max_size: int = wire.DEFAULT_MAX_SIZE) -> tuple[Pipeworker, zmq.Socket, zmq.Socket]:
    ctx = zmq.Context.instance()
    env = {"VENT_ENDPOINT": "tcp://127.0.0.1:1", "SINK_ENDPOINT": "inproc://s", "STATUS_PORT": "0"}
    env |= {"NODE_NAME": "pw", "MAX_MSG_SIZE": str(max_size)}
    pw = Pipeworker(roles.load("pipeworker", environ=env), ctx=ctx, stop=threading.Event())
    pull = ctx.socket(zmq.PULL)
    pull.bind(f"inproc://s-{id(pw)}")
    push = ctx.socket(zmq.PUSH)
    push.connect(f"inproc://s-{id(pw)}")
    return pw, push, pull


def received(pull: zmq.Socket) -> list[wire.Envelope]:
    out = []
    while pull.poll(100):
        out.append(wire.decode(pull.recv()))
    return out


def test_the_pipeworker_frames_one_batch_run_at_most_max_results_each() -> None:
    pw, push, pull = pipeworker_and_sink()
    try:
        done = [("a", n) for n in range(300)] + [("b", 0), ("b", 1), ("a", 300)]
        pw.push_all(push, done)
        frames = received(pull)
        assert [env.kind for env in frames] == ["results"] * 4
        bodies = [results_of(env.body) for env in frames]
        assert bodies == [
            ("a", list(range(256)), "pw"),
            ("a", list(range(256, 300)), "pw"),
            ("b", [0, 1], "pw"),
            ("a", [300], "pw"),
        ]
        assert pw.stats.counters["sent"] == 303  # results, not frames
    finally:
        push.close(0)
        pull.close(0)


def test_a_results_frame_is_split_to_fit_a_small_max_msg_size() -> None:
    pw, push, pull = pipeworker_and_sink(max_size=1024)
    try:
        ns = [2**63 + n for n in range(MAX_RESULTS)]  # 9 bytes each: ~2.3 KB in one frame
        pw.push_all(push, [("b" * 200, n) for n in ns])
        frames = received(pull)
        assert len(frames) > 2
        got = [n for env in frames for n in results_of(env.body)[1]]
        assert got == ns
        assert all(len(wire.encode(env)) <= 1024 for env in frames)
    finally:
        push.close(0)
        pull.close(0)


def test_a_single_task_path_still_sends_one_result(tmp_path: Path) -> None:
    """work() (AMQP tasks, acknowledged one by one; the stop path) pushes a single ``result``."""
    pw, push, pull = pipeworker_and_sink()
    try:
        task = wire.make(protocol.TASK, "v:1", protocol.task("b", 4, 0), "v")
        assert pw.work([task], push)
        (env,) = received(pull)
        assert env.kind == "result" and result_of(env.body) == ("b", 4, "pw")
        assert pw.work([b"garbage"], push) and pw.stats.counters["rejected"] == 1
    finally:
        push.close(0)
        pull.close(0)


def test_results_carry_over_wake_ups_until_flush_s_then_go_in_one_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks that come one a wake-up (4 KiB tasks do) still share a frame: results wait up to FLUSH_S."""
    monkeypatch.setattr(pipeworker_module, "FLUSH_S", 60.0)  # a loaded machine may not take 5 ms for this
    pw, push, pull = pipeworker_and_sink()
    ctx = zmq.Context.instance()
    vent, tasks = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    tasks.bind(f"inproc://t-{id(pw)}")
    vent.connect(f"inproc://t-{id(pw)}")
    try:
        for n in range(2):  # two wake-ups, one task each
            vent.send(wire.make(protocol.TASK, f"v:{n}", protocol.task("b", n, 0), "v"))
            assert tasks.poll(1000)
            pw.work_through(tasks, push)
        assert not pull.poll(0) and [n for _, n in pw._done] == [0, 1]  # FLUSH_S not over yet
        pw.flush(push)  # what serve() does once the first result is FLUSH_S old
        (env,) = received(pull)
        assert results_of(env.body) == ("b", [0, 1], "pw") and pw._done == []
    finally:
        for sock in (vent, tasks, push, pull):
            sock.close(0)
