"""The reliable pipeline under faults, as real processes on 127.0.0.1: nothing lost when nodes die.

Each test names exact numbers. A batch of 2000 tasks over 3 pipeworkers, one SIGKILLed and one
SIGTERMed mid-batch -> the sink holds 2000 distinct, 0 missing, and the ventilator exits 0; the same
with the sink SIGKILLed and restarted mid-batch (its journal replayed); a ventilator whose pipeworkers
are all gone gives up with exit 1 and the exact count of missing tasks. The tests wait on /status
(counts, states) and exits, never on sleeps. Re-send and duplicate counts are printed (``-s``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support import NodeProc, free_port, wait_until

TASKS = 2000


def tcp() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def events(node: NodeProc, name: str) -> list[dict[str, Any]]:
    lines = node.log_path.read_text().splitlines()
    return [r for r in (json.loads(line) for line in lines if line.startswith("{")) if r["event"] == name]


class Pipeline:
    """Endpoints and environments of one pipeline; nodes are started through the ``nodes`` fixture."""

    def __init__(self, nodes: Any, state: Path) -> None:
        self.nodes = nodes
        self.vent_ep, self.sink_ep, self.ctl_ep = tcp(), tcp(), tcp()
        self.sink_env = {"SINK_BIND": self.sink_ep, "SINK_CONTROL_BIND": self.ctl_ep, "SINK_STATE_DIR": str(state)}

    def sink(self, name: str = "sink-rp") -> NodeProc:
        return self.nodes("sink", self.sink_env, name=name, healthy=False)

    def pipeworkers(self, n: int) -> list[NodeProc]:
        env = {"VENT_ENDPOINT": self.vent_ep, "SINK_ENDPOINT": self.sink_ep}
        pws = [self.nodes("pipeworker", env, healthy=False) for _ in range(n)]
        return [pw.wait_healthy() for pw in pws]

    def ventilator(self, batch: str, tasks: int, task_ms: float, workers: int, **extra: str) -> NodeProc:
        env = {
            "VENT_BIND": self.vent_ep,
            "SINK_CONTROL": self.ctl_ep,
            "TASKS": str(tasks),
            "TASK_MS": str(task_ms),
            "BATCH_ID": batch,
            "MIN_PIPEWORKERS": str(workers),
            "WAIT_TIMEOUT": "15",
            "RESEND_AFTER": "1",
            "MAX_RESENDS": "5",
            **extra,
        }
        return self.nodes("ventilator", env, healthy=False)


def distinct_at(sink: NodeProc, batch: str) -> int:
    b = sink.status()["batches"].get(batch)
    return b["distinct"] if b else 0


def test_a_pipeworker_sigkilled_and_one_sigtermed_mid_batch_lose_nothing(nodes: Any, tmp_path: Path) -> None:
    p = Pipeline(nodes, tmp_path / "state")
    sink = p.sink().wait_healthy()
    pws = p.pipeworkers(3)
    vent = p.ventilator("faults", TASKS, 2, 3, HOLD="1")

    wait_until(lambda: distinct_at(sink, "faults") >= TASKS // 4, 60, "a quarter of the batch at the sink")
    pws[0].kill()  # SIGKILL: the tasks queued at it are gone with it
    at_kill = distinct_at(sink, "faults")
    wait_until(lambda: distinct_at(sink, "faults") >= TASKS // 2, 60, "half of the batch at the sink")
    assert pws[1].stop() == 0  # SIGTERM: stops taking tasks, finishes what it holds
    at_term = distinct_at(sink, "faults")

    done = vent.wait_state("done", 90)
    ledger = sink.status()["batches"]["faults"]
    (drained,) = events(pws[1], "stop_drained")
    print(
        f"\n{TASKS} tasks, SIGKILL at {at_kill} and SIGTERM at {at_term} done: sent {done['sent']},"
        f" re-sent {done['resent']} in {done['resend_rounds']} rounds; sink distinct {ledger['distinct']},"
        f" duplicates {ledger['duplicates']}, per worker {ledger['by_worker']};"
        f" SIGTERMed worker finished {drained['finished']} held tasks, dropped {drained['dropped']}"
    )
    assert (ledger["size"], ledger["distinct"], ledger["missing"], ledger["pending"]) == (TASKS, TASKS, 0, 0)
    assert ledger["received"] == TASKS + ledger["duplicates"]
    assert ledger["duplicates"] <= done["resent"]  # a copy can only come from a re-send
    assert done["resent"] >= 1  # the killed worker's queue was re-sent
    assert done["sink"] == {"distinct": TASKS, "missing": 0, "duplicates": ledger["duplicates"], "complete": True}
    assert drained["dropped"] == 0
    assert sum(ledger["by_worker"].values()) == ledger["received"]
    assert vent.stop() == 0  # the held ventilator's exit code: 0, the batch was delivered


def test_a_sink_sigkilled_and_restarted_mid_batch_loses_nothing(nodes: Any, tmp_path: Path) -> None:
    p = Pipeline(nodes, tmp_path / "state")
    first = p.sink().wait_healthy()
    p.pipeworkers(3)
    vent = p.ventilator("sink-restart", TASKS, 2, 3, HOLD="1")

    wait_until(lambda: distinct_at(first, "sink-restart") >= TASKS // 3, 60, "a third of the batch at the sink")
    first.kill()
    second = p.sink("sink-rp-2").wait_healthy()  # same endpoints, same SINK_STATE_DIR: replays the journal

    replayed = second.status()["journal"]["replayed"]
    done = vent.wait_state("done", 90)
    ledger = second.status()["batches"]["sink-restart"]
    print(
        f"\n{TASKS} tasks, sink SIGKILLed and restarted: replayed {replayed['results']} results"
        f" ({replayed['torn_bytes']} torn bytes cut); ventilator sent {done['sent']}, re-sent {done['resent']}"
        f" in {done['resend_rounds']} rounds; sink distinct {ledger['distinct']}, duplicates {ledger['duplicates']}"
    )
    # The announcement and the results (all but at most the last unflushed pass of <= 256 before the kill); a
    # record a ``results`` frame, so count the results.
    assert replayed["batches"] == 1 and replayed["results"] >= TASKS // 4
    assert (ledger["size"], ledger["distinct"], ledger["missing"], ledger["pending"]) == (TASKS, TASKS, 0, 0)
    assert ledger["received"] == TASKS + ledger["duplicates"]
    assert ledger["duplicates"] <= done["resent"]
    assert done["sink"]["complete"] and done["sink"]["distinct"] == TASKS
    assert vent.stop() == 0


def test_the_announcement_is_repeated_until_a_late_sink_has_it(nodes: Any, tmp_path: Path) -> None:
    p = Pipeline(nodes, tmp_path / "state")
    p.pipeworkers(2)
    vent = p.ventilator("late-sink", 200, 0, 2, HOLD="1")
    wait_until(lambda: vent.status()["counters"].get("queries_unsent", 0) >= 2, 20, "ventilator asking a missing sink")

    sink = p.sink().wait_healthy()

    done = vent.wait_state("done", 30)
    ledger = sink.status()["batches"]["late-sink"]
    assert (ledger["size"], ledger["distinct"], ledger["missing"], ledger["duplicates"]) == (200, 200, 0, 0)
    assert (done["sent"], done["resent"]) == (200, 0)
    assert vent.stop() == 0


def test_the_ventilator_gives_up_with_the_missing_count_when_no_pipeworker_is_left(nodes: Any, tmp_path: Path) -> None:
    p = Pipeline(nodes, tmp_path / "state")
    sink = p.sink().wait_healthy()
    (pw,) = p.pipeworkers(1)
    vent = p.ventilator("orphan", 40, 100, 1, WAIT_TIMEOUT="2")
    wait_until(lambda: distinct_at(sink, "orphan") >= 2, 20, "the first results at the sink")
    pw.kill()

    assert vent.wait_exit(30) == 1

    ledger = sink.status()["batches"]["orphan"]
    (gave_up,) = events(vent, "gave_up")
    print(f"\ngave up: {gave_up['waited_for']}; missing {gave_up['missing']} of 40 (sink: {ledger['missing']})")
    assert gave_up["level"] == "error" and "live pipeworker" in gave_up["waited_for"]
    assert gave_up["missing"] == ledger["missing"] == 40 - ledger["distinct"] > 0
    assert events(vent, "batch_complete") == []


def test_an_interrupted_ventilator_exits_3_and_a_rerun_sends_only_what_is_missing(nodes: Any, tmp_path: Path) -> None:
    p = Pipeline(nodes, tmp_path / "state")
    sink = p.sink().wait_healthy()
    (pw,) = p.pipeworkers(1)
    first = p.ventilator("resume", 400, 5, 1)
    wait_until(lambda: distinct_at(sink, "resume") >= 50, 30, "the first results at the sink")

    assert first.stop() == 3  # SIGTERM before the sink had the batch: not delivered, its own exit code
    (interrupted,) = events(first, "batch_interrupted")

    handed_out = interrupted["sent"]  # flushed to the pipeworker on close (LINGER = WAIT_TIMEOUT)

    def settled() -> bool:  # everything the first ventilator handed out has come back
        c = pw.status()["counters"]
        return c["received"] == c["sent"] == distinct_at(sink, "resume") == handed_out

    wait_until(settled, 30, f"the pipeworker and the sink through all {handed_out} tasks handed out")
    before = handed_out
    second = p.ventilator("resume", 400, 5, 1, HOLD="1")
    done = second.wait_state("done", 60)
    ledger = sink.status()["batches"]["resume"]
    print(f"\ninterrupted at {interrupted['sent']} sent; sink had {before}; the rerun sent {done['sent']}")
    assert 0 < before < 400 and done["sent"] == 400 - before and done["resent"] == 0
    assert (ledger["distinct"], ledger["missing"], ledger["duplicates"]) == (400, 0, 0)
    assert second.stop() == 0
