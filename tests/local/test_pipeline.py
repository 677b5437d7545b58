"""Ventilator -> pipeworkers -> sink as real processes on 127.0.0.1 (and as threads over inproc).

Every delivery test names exact numbers: M tasks -> the sink's ledger shows M distinct, 0 missing,
0 duplicates, and every pipeworker took a share. Faults (pipeworkers and the sink killed mid-batch,
re-sends) are in ``test_reliable_pipeline.py``.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from nodes import roles
from nodes.core import wire
from nodes.pipeline.pipeworker import Pipeworker
from nodes.pipeline.sink import Sink
from nodes.pipeline.ventilator import Ventilator
from tests.support import NodeProc, free_port, get_json, wait_until


def tcp() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def events(node: NodeProc, name: str) -> list[dict[str, Any]]:
    """The node's JSON log records of event ``name``."""
    lines = node.log_path.read_text().splitlines()
    return [r for r in (json.loads(line) for line in lines if line.startswith("{")) if r["event"] == name]


def start_sink(nodes: Any, state: Path, sink_ep: str | None = None) -> tuple[NodeProc, str, str]:
    """A sink with its own results endpoint, ledger endpoint and journal directory: (sink, SINK_BIND, SINK_CONTROL)."""
    sink_ep, ctl_ep = sink_ep or tcp(), tcp()
    env = {"SINK_BIND": sink_ep, "SINK_CONTROL_BIND": ctl_ep, "SINK_STATE_DIR": str(state)}
    return nodes("sink", env), sink_ep, ctl_ep


def run_batch(
    nodes: Any, vent_ep: str, sink: NodeProc, sink_ep: str, ctl_ep: str, workers: int, tasks: int, batch: str
) -> tuple[dict[str, Any], list[NodeProc]]:
    """Start ``workers`` pipeworkers and a ventilator; return the sink's completed ledger of ``batch``."""
    peer = {"VENT_ENDPOINT": vent_ep, "SINK_ENDPOINT": sink_ep}
    pws = [nodes("pipeworker", peer, healthy=False) for _ in range(workers)]
    for pw in pws:
        pw.wait_healthy()
    vent = nodes(
        "ventilator",
        {
            "VENT_BIND": vent_ep,
            "SINK_CONTROL": ctl_ep,
            "TASKS": str(tasks),
            "TASK_MS": "1",
            "BATCH_ID": batch,
            "MIN_PIPEWORKERS": str(workers),
            "WAIT_TIMEOUT": "10",
            "HOLD": "1",
        },
        healthy=False,
    )
    done = vent.wait_state("done", 30)
    assert (done["batch"], done["tasks"], done["sent"], done["resent"]) == (batch, tasks, tasks, 0)
    assert done["sink"] == {"distinct": tasks, "missing": 0, "duplicates": 0, "complete": True}
    assert done["peers"] == workers
    ledger = wait_until(
        lambda: (b := sink.status()["batches"].get(batch)) and b["complete"] and b, 20, f"sink ledger of {batch}"
    )
    return ledger, pws


@pytest.mark.parametrize("transport, tasks", [("tcp", 1000), ("ipc", 200)])
def test_tasks_fan_out_to_every_pipeworker_and_all_come_back(
    nodes: Any, tmp_path: Path, transport: str, tasks: int
) -> None:
    if transport == "tcp":
        vent_ep, sink_ep = tcp(), tcp()
    else:
        vent_ep, sink_ep = f"ipc://{tmp_path}/vent.ipc", f"ipc://{tmp_path}/sink.ipc"
    sink, sink_ep, ctl_ep = start_sink(nodes, tmp_path / "state", sink_ep)

    ledger, pws = run_batch(nodes, vent_ep, sink, sink_ep, ctl_ep, workers=3, tasks=tasks, batch=f"b-{transport}")

    print(f"\n{transport}: {tasks} tasks, per-worker counts {ledger['by_worker']}")
    assert (ledger["size"], ledger["received"], ledger["distinct"]) == (tasks, tasks, tasks)
    assert (ledger["missing"], ledger["duplicates"], ledger["pending"]) == (0, 0, 0)
    assert sorted(ledger["by_worker"]) == sorted(pw.name for pw in pws)
    assert all(count > 0 for count in ledger["by_worker"].values()), ledger["by_worker"]
    assert sum(ledger["by_worker"].values()) == tasks
    for pw in pws:  # each worker's own counters agree with the sink's view of it
        c = pw.status()["counters"]
        assert (c["received"], c["sent"], c["rejected"]) == (ledger["by_worker"][pw.name],) * 2 + (0,)
    assert sink.status()["counters"]["rejected"] == 0


def test_pipeworker_stops_taking_tasks_then_finishes_what_it_holds_on_sigterm(nodes: Any, tmp_path: Path) -> None:
    vent_ep = tcp()
    sink, sink_ep, ctl_ep = start_sink(nodes, tmp_path / "state")
    pw = nodes("pipeworker", {"VENT_ENDPOINT": vent_ep, "SINK_ENDPOINT": sink_ep})
    env = {"VENT_BIND": vent_ep, "SINK_CONTROL": ctl_ep, "TASKS": "3", "TASK_MS": "800", "BATCH_ID": "term"}
    vent = nodes("ventilator", {**env, "MIN_PIPEWORKERS": "1", "WAIT_TIMEOUT": "10", "HOLD": "1"}, healthy=False)
    wait_until(lambda: pw.status()["counters"]["received"] == 1, 10, "pipeworker holding its first task")

    assert pw.stop() == 0  # SIGTERM while task 0 is being worked on; tasks 1 and 2 are queued at the worker

    (taking,) = events(pw, "stopped_taking_tasks")
    (drained,) = events(pw, "stop_drained")
    (stopped,) = events(pw, "stopped")
    # Task 0 in hand, then the two queued ones, finished within STOP_GRACE (3 s > 2 x 0.8 s): none dropped.
    assert (taking["held"], drained["finished"], drained["dropped"]) == (2, 2, 0)
    assert stopped["counters"] == {
        "received": 3,
        "sent": 3,
        "rejected": 0,
        "finished_on_stop": 2,
        "dropped_on_stop": 0,
    }
    done = vent.wait_state("done", 10)  # the batch completed: nothing left to re-send
    assert (done["sent"], done["resent"], done["sink"]["distinct"], done["sink"]["missing"]) == (3, 0, 3, 0)
    ledger = sink.status()["batches"]["term"]
    assert (ledger["distinct"], ledger["missing"], ledger["duplicates"]) == (3, 0, 0)


# --- fuzzing the sink ----------------------------------------------------------------------------

FUZZ_SEED, FUZZ_COUNT = 20240607, 1000
FUZZ_BATCH, FUZZ_SIZE = "fuzz", 10


def _envelope(kind: Any, body: Any, id_: Any = "fz:1", version: Any = wire.VERSION, origin: Any = "fuzz") -> bytes:
    return msgpack.packb([version, id_, kind, body, 1.0, origin], use_bin_type=True)


def _random_value(rng: random.Random) -> Any:
    return rng.choice([None, True, -1, 2**40, 3.5, "x" * rng.randint(0, 20), b"\x00\xff", [1, "a"], {"k": 1}])


BAD_RESULT_BODIES = [
    None,
    [FUZZ_BATCH, 1],
    {"n": 1, "worker": "w"},
    {"batch": 5, "n": 1, "worker": "w"},
    {"batch": "", "n": 1, "worker": "w"},
    {"batch": FUZZ_BATCH, "worker": "w"},
    {"batch": FUZZ_BATCH, "n": "1", "worker": "w"},
    {"batch": FUZZ_BATCH, "n": 1.5, "worker": "w"},
    {"batch": FUZZ_BATCH, "n": True, "worker": "w"},
    {"batch": FUZZ_BATCH, "n": -3, "worker": "w"},
    {"batch": FUZZ_BATCH, "n": FUZZ_SIZE, "worker": "w"},  # outside [0, size) of the announced batch
    {"batch": FUZZ_BATCH, "n": 10**9, "worker": "w"},
    {"batch": FUZZ_BATCH, "n": 1},
    {"batch": FUZZ_BATCH, "n": 1, "worker": 7},
]


def fuzz_message(rng: random.Random) -> tuple[str, list[bytes]]:
    """One message the sink must reject, and its category."""
    category = rng.choice(["bytes", "msgpack", "bad_envelope", "wrong_kind", "bad_result", "bad_batch", "multipart"])
    if category == "bytes":
        return category, [rng.randbytes(rng.randint(0, 200))]
    if category == "msgpack":
        return category, [msgpack.packb(_random_value(rng), use_bin_type=True)]
    if category == "bad_envelope":
        return category, [
            rng.choice(
                [
                    _envelope("result", {}, version=2),
                    _envelope("result", {}, id_=""),
                    _envelope("result", {}, id_=7),
                    _envelope("result", {}, origin=3),
                    _envelope("no-such-kind", {}),
                    msgpack.packb([1, "a", "result", {}, 1.0], use_bin_type=True),  # five elements
                ]
            )
        ]
    if category == "wrong_kind":
        kind = rng.choice(sorted(wire.KINDS - {"result", "batch"}))
        return category, [_envelope(kind, {"batch": FUZZ_BATCH, "n": 1, "worker": "w"})]
    if category == "bad_result":
        return category, [_envelope("result", rng.choice(BAD_RESULT_BODIES))]
    if category == "bad_batch":
        body = rng.choice(
            [None, {"batch": FUZZ_BATCH}, {"batch": "b", "size": -1}, {"size": 3}, {"batch": "b", "size": "3"}]
        )
        body = {"batch": FUZZ_BATCH, "size": FUZZ_SIZE + 1} if rng.random() < 0.2 else body  # conflicting size
        return category, [_envelope("batch", body)]
    good = _envelope("result", {"batch": FUZZ_BATCH, "n": 1, "worker": "w"})  # valid alone, not as one of several
    return category, [rng.choice([good, rng.randbytes(8), b""]) for _ in range(rng.randint(2, 4))]


def test_sink_rejects_fuzz_exactly_and_keeps_serving(nodes: Any, tmp_path: Path) -> None:
    sink, sink_ep, ctl_ep = start_sink(nodes, tmp_path / "state")
    rng = random.Random(FUZZ_SEED)
    messages = [fuzz_message(rng) for _ in range(FUZZ_COUNT)]
    print(f"\nfuzz categories: {dict(sorted(Counter(c for c, _ in messages).items()))}")

    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    try:
        push.connect(sink_ep)
        push.send(wire.make("batch", "fz:announce", {"batch": FUZZ_BATCH, "size": FUZZ_SIZE}, "fuzz"))
        for _, frames in messages:
            push.send_multipart(frames)
        wait_until(
            lambda: sink.status()["counters"]["received"] == FUZZ_COUNT + 1, 15, f"sink received {FUZZ_COUNT + 1}"
        )
    finally:
        push.close(0)
        ctx.term()

    status = sink.status()
    assert status["counters"]["rejected"] == FUZZ_COUNT
    assert status["counters"].get("results", 0) == 0
    assert status["batches"][FUZZ_BATCH]["received"] == 0
    assert get_json(sink.url + "/healthz")["ok"]

    ledger, _ = run_batch(nodes, tcp(), sink, sink_ep, ctl_ep, workers=2, tasks=100, batch="after-fuzz")
    assert (ledger["distinct"], ledger["missing"], ledger["duplicates"]) == (100, 0, 0)
    assert sink.status()["counters"]["rejected"] == FUZZ_COUNT


# --- the ventilator gives up clearly -------------------------------------------------------------


def test_ventilator_exits_nonzero_naming_what_it_waited_for(nodes: Any) -> None:
    vent_ep = tcp()
    env = {"VENT_BIND": vent_ep, "SINK_CONTROL": tcp(), "MIN_PIPEWORKERS": "2", "WAIT_TIMEOUT": "1"}
    vent = nodes("ventilator", env, healthy=False)

    assert vent.wait_exit(15) == 1
    gave_up = events(vent, "gave_up")
    assert len(gave_up) == 1, vent.log_tail()
    assert gave_up[0]["waited_for"] == f"2 pipeworkers connected to {vent_ep}"
    assert gave_up[0]["level"] == "error" and gave_up[0]["timeout_s"] == 1.0
    assert events(vent, "wait_timeout")[0]["what"] == gave_up[0]["waited_for"]
    assert events(vent, "batch_announced") == []


# --- inproc: the same nodes as threads of one process ----------------------------------------------


@pytest.mark.parametrize("payload", [0, 4096])
def test_inproc_pipeline_in_one_process(tmp_path: Path, payload: int) -> None:
    """Also with PAYLOAD_BYTES (the ventilator's tasks padded to ~4 KiB): every task still counted once."""
    ctx, stop = zmq.Context(), threading.Event()
    common = {"STATUS_PORT": "0", "WAIT_TIMEOUT": "10"}
    sink_env = {"SINK_BIND": "inproc://sink", "SINK_CONTROL_BIND": "inproc://ctl", "SINK_STATE_DIR": str(tmp_path)}
    sink = Sink(roles.load("sink", {**common, "NODE_NAME": "sink", **sink_env}), ctx, stop)
    peer = {**common, "VENT_ENDPOINT": "inproc://vent", "SINK_ENDPOINT": "inproc://sink"}
    pws = [Pipeworker(roles.load("pipeworker", {**peer, "NODE_NAME": f"pw{i}"}), ctx, stop) for i in range(2)]
    vent_env = {"VENT_BIND": "inproc://vent", "SINK_CONTROL": "inproc://ctl", "TASKS": "300", "BATCH_ID": "ip"}
    vent_env["PAYLOAD_BYTES"] = str(payload)
    vent = Ventilator(roles.load("ventilator", {**common, **vent_env, "MIN_PIPEWORKERS": "2"}), ctx, stop)
    codes: dict[str, int] = {}
    threads = [
        threading.Thread(target=lambda n=n: codes.__setitem__(n.name, n.run()), daemon=True) for n in [sink, *pws]
    ]
    try:
        for t in threads:
            t.start()
        wait_until(lambda: all(n.stats.state == "running" for n in [sink, *pws]), 5, "inproc nodes running")
        assert vent.run() == 0 and vent.sent == 300
        assert sum(pw.stats.counters["received"] for pw in pws) == 300 and not any(
            pw.stats.counters["rejected"] for pw in pws
        )
        ledger = wait_until(lambda: (b := sink.ledger.summaries().get("ip")) and b["complete"] and b, 10, "ledger ip")
        print(f"\ninproc: 300 tasks, per-worker counts {ledger['by_worker']}")
        assert (ledger["distinct"], ledger["missing"], ledger["duplicates"]) == (300, 0, 0)
        assert sorted(ledger["by_worker"]) == ["pw0", "pw1"] and all(ledger["by_worker"].values())
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        ctx.term()
    assert codes == {"sink": 0, "pw0": 0, "pw1": 0}
