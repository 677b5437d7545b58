"""ops.chaos, the pure parts: the seeded fault schedule and the loss verdict from sample /status documents.

The docker side (injecting, healing, the load) is exercised by running ``make chaos``; what must not
drift silently is *what* it schedules and *how* it judges, so those are tested here on plain data.
"""

from __future__ import annotations

from typing import Any

import pytest

from ops import chaos
from ops.chaos import DRAIN_TIMEOUT_S, BatchRun, Fault, Growth, Observer, load_seconds

# --- the schedule ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_a_60s_run_uses_every_fault_kind_and_target(seed: int) -> None:
    faults = chaos.plan(60, seed)
    assert {f.kind for f in faults} == set(chaos.KINDS)
    assert {f.service for f in faults} == set(chaos.TARGETS)
    # every fault is healed before the run ends, and they come in order, one interval apart
    assert all(f.at + max(chaos.DOWN_S.values()) < 60 for f in faults)
    assert [f.at for f in faults] == sorted(f.at for f in faults)


def test_the_same_seed_gives_the_same_faults_and_another_seed_others() -> None:
    assert chaos.plan(60, 7) == chaos.plan(60, 7)
    assert any(chaos.plan(60, 7) != chaos.plan(60, s) for s in range(8, 12))


def test_a_run_too_short_for_every_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        chaos.plan(15, 1)


def test_a_soak_keeps_cycling_through_every_kind() -> None:
    faults = chaos.plan(600, 3)
    counts = {k: sum(f.kind == k for f in faults) for k in chaos.KINDS}
    assert min(counts.values()) >= len(faults) // len(chaos.KINDS)


# --- request-reply ---------------------------------------------------------------------------------------


def client(state: str = "done", requests: int = 100, **counters: int) -> dict[str, Any]:
    base = {"sent": requests, "replied": requests, "failed": 0, "retried": 0}
    return {"role": "client", "state": state, "requests": requests, "counters": {**base, **counters}}


def test_requests_all_replied_with_retries_is_no_loss() -> None:
    out = chaos.assess_requests({"client-1": client(retried=7), "client-2": client()})
    assert out.problems == []
    assert "sent 200  replied 200  failed 0  retried 7" in out.lines[0]
    assert "worst latency n/a" in out.lines[0]


def test_the_worst_latency_is_the_slowest_clients_max() -> None:
    slow = {**client(), "latency": {"count": 100, "p50_s": 0.004, "p99_s": 0.9, "max_s": 6.104}}
    fast = {**client(), "latency": {"count": 100, "p50_s": 0.003, "p99_s": 0.01, "max_s": 0.02}}
    out = chaos.assess_requests({"client-1": slow, "client-2": fast})
    assert out.problems == []
    assert out.lines[0].endswith("worst latency 6.104s")
    assert "latency p50 0.004s p99 0.900s max 6.104s" in out.lines[1]


def test_a_failed_request_is_a_loss_shown_with_the_broker_fault_around_it() -> None:
    growth = [Growth("client-1", "failed", 2, since=20.0, seen=21.0)]
    faults = [Fault("stop", "broker", "broker-1", 5.0, 15.0), Fault("kill", "redis", "redis-1", 18.0, 19.0)]
    out = chaos.assess_requests({"client-1": client(replied=98, failed=2)}, growth, faults)
    assert any("client-1 failed 2" in p for p in out.problems)
    assert "    2 failed, seen t+20.0..21.0s: during stop broker-1 t+5.0..15.0s" in out.lines


def test_a_failed_request_or_an_unfinished_client_is_a_loss() -> None:
    out = chaos.assess_requests({"client-1": client(replied=98, failed=2), "client-2": client("running", replied=50)})
    assert any("client-1 failed 2" in p for p in out.problems)
    assert any("client-2 did not finish" in p for p in out.problems)


# --- pipeline --------------------------------------------------------------------------------------------


def vent(batch: str, sent: int = 1000, tasks: int = 1000, **extra: Any) -> dict[str, Any]:
    return {"role": "ventilator", "state": "done", "batch": batch, "tasks": tasks, "sent": sent, **extra}


def ledger(size: int | None = 1000, distinct: int = 1000, duplicates: int = 0) -> dict[str, Any]:
    missing = None if size is None else size - distinct
    return {"size": size, "distinct": distinct, "missing": missing, "duplicates": duplicates, "pending": 0}


def test_a_complete_batch_with_duplicates_is_no_loss() -> None:
    runs = [BatchRun("b1", vent("b1"), 0, True)]
    out = chaos.assess_pipeline(runs, [{"batches": {"b1": ledger(duplicates=40)}}])
    assert out.problems == []


def test_tasks_missing_from_a_batch_the_ventilator_reported_complete_are_a_loss() -> None:
    runs = [BatchRun("b1", vent("b1"), 0, True)]
    out = chaos.assess_pipeline(runs, [{"batches": {"b1": ledger(distinct=860)}}])
    assert out.problems == [
        "tasks: batch b1 was reported complete by the ventilator but 140 tasks missing at the sink (e.g. [])"
    ]


def test_a_batch_a_restarted_sink_forgot_is_a_loss_and_is_named() -> None:
    runs = [BatchRun("b1", vent("b1"), 0, True)]
    lives = [{"batches": {"b1": ledger(distinct=500)}}, {"batches": {"b1": {"size": None, "pending": 300}}}]
    out = chaos.assess_pipeline(runs, lives)
    assert "never learnt its size" in out.problems[0]


def test_the_reliable_ventilator_reports_through_the_sinks_view() -> None:
    done = BatchRun("b1", vent("b1", resent=120, sink={"complete": True, "missing": 0}), 0, True)
    gave_up = BatchRun("b2", vent("b2", sink={"complete": False, "missing": 3}), 1, True)
    assert chaos.ventilator_complete(done) and not chaos.ventilator_complete(gave_up)
    out = chaos.assess_pipeline([done, gave_up], [{"batches": {"b1": ledger(), "b2": ledger(distinct=997)}}])
    assert out.problems == ["tasks: the ventilator gave up on batch b2: 3 missing at the sink"]
    assert " 120 " in out.lines[1]  # re-sent tasks are shown


def test_an_unfinished_batch_is_a_loss() -> None:
    out = chaos.assess_pipeline([BatchRun("b9", vent("b9", sent=10), None, False)], [{"batches": {}}])
    assert "did not finish" in out.problems[0]


# --- pub/sub ---------------------------------------------------------------------------------------------


def sub(role: str = "subscriber", received: int = 100, gaps: int = 0, uptime: float = 10.0) -> dict[str, Any]:
    return {
        "role": role,
        "uptime_s": uptime,
        "counters": {"received": received, "gaps": gaps, "duplicates": 0, "out_of_order": 0},
        "topics_subscribed": ["catA"] if role == "subscriber" else ["*"],
        "topics": {"catA": {"received": received, "gaps": gaps, "last_seq": received + gaps, "runs": 1}},
    }


def publisher(role: str = "publisher", published: int = 100) -> dict[str, Any]:
    return {
        "role": role,
        "state": "done",
        "counters": {"failed": 0},
        "labelled": {"published_by_topic": {"catA": published}},
    }


def test_the_observer_counts_gaps_per_incarnation_and_when_they_appeared() -> None:
    obs = Observer()
    obs.record("subscriber-1", sub(received=50, uptime=5), now=5.0)
    obs.record("subscriber-1", sub(received=60, uptime=6), now=6.0)
    obs.record("subscriber-1", sub(received=10, gaps=12, uptime=1), now=9.0)  # restarted: counters from 0
    assert obs.growth == [Growth("subscriber-1", "gaps", 12, since=6.0, seen=9.0, topic="catA")]
    assert [d["counters"]["received"] for d in obs.of_role("subscriber")["subscriber-1"]] == [60, 10]


def test_a_late_join_counts_as_missed_only_for_a_restarted_subscriber() -> None:
    obs = Observer()
    first = sub(role="zsub", received=50, uptime=5)
    first["topics"]["catA"]["late_join"] = 3  # joined after the start: the publishers waited, no loss
    obs.record("zsub-1", first, now=5.0)
    again = sub(role="zsub", received=10, uptime=1)
    again["topics"]["catA"]["late_join"] = 70  # restarted: 70 published before its first message
    obs.record("zsub-1", again, now=9.0)
    assert obs.growth == [Growth("zsub-1", "late_join", 70, since=5.0, seen=9.0, topic="catA")]


def test_a_gap_inside_a_redis_outage_or_the_subscribers_own_fault_is_allowed() -> None:
    faults = [Fault("kill", "redis", "redis-1", 10.0, 12.0), Fault("pause", "subscriber", "subscriber-2", 30.0, 34.0)]
    growth = [
        Growth("subscriber-1", "gaps", 40, since=12.5, seen=13.5, topic="catA"),
        Growth("subscriber-2", "gaps", 5, since=34.0, seen=35.0, topic="catA"),
    ]
    subs = {"subscriber-1": [sub(received=60, gaps=40)], "subscriber-2": [sub(received=95, gaps=5)]}
    out = chaos.assess_pubsub(subs, {"publisher-1": publisher()}, growth, faults)
    assert out.problems == []
    assert any("gap   40 on catA" in line and "inside kill redis-1" in line for line in out.lines)


def test_a_gap_outside_every_window_or_at_another_nodes_fault_is_a_loss() -> None:
    faults = [Fault("kill", "worker", "worker-1", 10.0, 12.0), Fault("pause", "zsub", "zsub-1", 10.0, 14.0)]
    growth = [Growth("subscriber-1", "gaps", 3, since=11.0, seen=12.0, topic="catA")]
    out = chaos.assess_pubsub(
        {"subscriber-1": [sub(gaps=3)]}, {"publisher-1": publisher(published=103)}, growth, faults
    )
    assert out.problems == [
        "pub/sub: subscriber-1 lost 3 messages on catA (seen t+11.0..12.0s)"
        " outside any outage of Redis/zpub or of itself"
    ]


def test_a_subscriber_missing_the_tail_of_a_topic_is_a_loss_though_no_gap_shows_it() -> None:
    out = chaos.assess_pubsub({"zsub-1": [sub("zsub", received=90)]}, {"zpub-1": publisher("zpub")}, [], [])
    assert out.problems == ["pub/sub: zsub-1 never got the last messages of its topics: {'catA': 10}"]


def test_a_miss_no_counter_shows_is_a_loss() -> None:
    quiet = sub(received=95)
    quiet["topics"]["catA"]["last_seq"] = 100  # heard the last one, no gap counted, yet 5 never arrived
    out = chaos.assess_pubsub({"subscriber-1": [quiet]}, {"publisher-1": publisher()}, [], [])
    assert out.problems == [
        "pub/sub: subscriber-1 missed 5 messages but gaps and late joins inside outage windows account for only 0"
    ]


def test_an_incarnation_restarted_after_the_last_message_leaves_the_tail_to_its_predecessor() -> None:
    after = {**sub(received=0, uptime=2.0), "topics": {}}
    out = chaos.assess_pubsub({"subscriber-1": [sub(), after]}, {"publisher-1": publisher()}, [], [])
    assert out.problems == []


def test_a_fault_docker_refused_excuses_nothing() -> None:
    refused = Fault("kill", "redis", "redis-1", 10.0, 10.5, injected=False)
    growth = [Growth("subscriber-1", "gaps", 3, since=11.0, seen=12.0, topic="catA")]
    out = chaos.assess_pubsub(
        {"subscriber-1": [sub(gaps=3)]}, {"publisher-1": publisher(published=103)}, growth, [refused]
    )
    assert len(out.problems) == 1 and "outside any outage" in out.problems[0]
    assert "NOT INJECTED" in refused.describe()


def test_the_verdict_adds_faults_that_were_never_healed() -> None:
    problems = chaos.verdict([chaos.Assessment()], [Fault("pause", "sink", "sink-1", 3.0, None)])
    assert len(problems) == 1 and "never healed" in problems[0]


def test_a_fault_docker_refuses_once_is_tried_again_and_a_second_refusal_is_reported() -> None:
    import docker.errors

    class Flaky:
        def __init__(self, refusals: int) -> None:
            self.refusals = refusals
            self.calls = 0

        def _inject(self, *_args: Any) -> None:
            self.calls += 1
            if self.calls <= self.refusals:
                raise docker.errors.APIError("500", explanation="OCI runtime pause failed: unable to freeze")

    once, always = Flaky(1), Flaky(5)
    assert chaos.FaultInjector._inject_or_refused(once, "pause", None, {}) == ""  # type: ignore[arg-type]
    assert "unable to freeze" in chaos.FaultInjector._inject_or_refused(always, "pause", None, {})  # type: ignore[arg-type]
    assert (once.calls, always.calls) == (2, 2)


def test_senders_are_sized_to_finish_inside_the_drain_however_long_the_run() -> None:
    """The senders' batches outlast the fault window (drifting faults still find load) by a slack that
    stays well inside the drain: the first soak sized them x 1.25 and reported them unfinished."""
    assert load_seconds(60) == 75
    for duration in (60, 600, 3600):
        extra = load_seconds(duration) - duration
        assert 0 < extra <= DRAIN_TIMEOUT_S / 2
