"""Nothing lost when containers die (issue 9): the pipeline across real containers, with faults injected
by the docker engine while a batch is in flight. The numbers are printed and kept in the summary.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest

from nodes.pipeline import protocol
from ops.compose import NUMBER_LABEL, Project, docker_client
from tests.integration.test_cluster import names, only, start, status, wait_done
from tests.support import wait_until

pytestmark = pytest.mark.docker
Report = Callable[[str], None]

TASKS = 2000
#: Slow enough that the faults land mid-batch: 2000 tasks x 2 ms over 3 pipeworkers is several seconds.
BATCH_ENV = {"TASKS": str(TASKS), "TASK_MS": "2", "MIN_PIPEWORKERS": "3", "PIPE_RATE": "0", "RESEND_AFTER": "2"}


def sink_batch(cluster: Project, batch: str) -> dict:
    return status(only(cluster, "sink"))["batches"].get(batch) or {}


def run_batch_with(cluster: Project, report: Report, what: str, fault: Callable[[], None]) -> None:
    """A batch of TASKS; ``fault()`` once a quarter of it is at the sink; then exactly TASKS distinct, exit 0."""
    batch = f"it-{secrets.token_hex(4)}"
    env = {**BATCH_ENV, "BATCH_ID": batch}
    cluster.up(["ventilator"], {"ventilator": 1}, env=env, no_deps=True, recreate="force", quiet=True)
    wait_until(lambda: sink_batch(cluster, batch).get("distinct", 0) >= TASKS // 4, 60, f"{batch}: a quarter done")
    fault()
    (doc,) = wait_done(cluster.targets(["ventilator"]), 120)
    ledger = wait_until(lambda: (b := sink_batch(cluster, batch)) and b.get("complete") and b, 60, f"{batch} complete")
    report(
        f"{what}: batch {batch} distinct {ledger['distinct']}/{ledger['size']} missing {ledger['missing']} "
        f"duplicates (re-sent copies) {ledger['duplicates']}; ventilator {doc['summary']}"
    )
    assert (ledger["size"], ledger["distinct"], ledger["missing"]) == (TASKS, TASKS, 0), ledger
    assert doc["exit_code"] == 0, f"ventilator exit code {doc['exit_code']}: {doc['summary']}"


def test_pipeworkers_killed_and_stopped_mid_batch_lose_nothing(cluster: Project, report: Report) -> None:
    start(cluster, ["sink", "pipeworker"], {"sink": 1, "pipeworker": 3})
    victims = sorted(cluster.containers(["pipeworker"], running=True), key=lambda c: c.name)[:2]

    def fault() -> None:
        victims[0].kill()  # SIGKILL: its queued tasks are gone, the ventilator re-sends them
        victims[1].stop(timeout=5)  # SIGTERM: it stops taking tasks and finishes what it holds

    run_batch_with(cluster, report, "1 pipeworker killed, 1 stopped", fault)
    assert len(names(cluster, "pipeworker")) >= 1


def test_a_sink_killed_and_restarted_mid_batch_loses_nothing(cluster: Project, report: Report) -> None:
    start(cluster, ["sink", "pipeworker"], {"sink": 1, "pipeworker": 3})

    def fault() -> None:
        (sink,) = cluster.containers(["sink"], running=True)
        sink.kill()
        sink.start()  # same container, same volume: the journal is replayed

    run_batch_with(cluster, report, "sink killed and restarted", fault)


def test_a_pipeworker_cut_off_while_the_ventilator_is_replaced_dials_the_new_one(
    cluster: Project, report: Report
) -> None:
    """A pipeworker off the network while the ventilator is replaced never hears the old one go (its FIN
    is lost), and a PULL sends nothing, so only TCP keepalive probes (protocol.TASK_KEEPALIVE) can find the
    connection dead; then the pipeworker dials the new ventilator. That one resumes the batch only once
    both pipeworkers are connected (MIN_PIPEWORKERS=2): without keepalive it waited in vain (chaos, issue 9)."""
    start(cluster, ["sink", "pipeworker"], {"sink": 1, "pipeworker": 2})
    (victim,) = [c for c in cluster.containers(["pipeworker"], running=True) if c.labels.get(NUMBER_LABEL) == "1"]
    victim_url = dict(cluster.targets(["pipeworker"]))["pipeworker-1"]
    victim_name = status(victim_url)["node"]
    batch = f"it-{secrets.token_hex(4)}"
    env = {**BATCH_ENV, "BATCH_ID": batch, "MIN_PIPEWORKERS": "2", "TASK_MS": "5"}
    cluster.up(["ventilator"], {"ventilator": 1}, env=env, no_deps=True, recreate="force", quiet=True)
    wait_until(lambda: sink_batch(cluster, batch).get("distinct", 0) >= 100, 60, f"{batch}: 100 done")
    victim.reload()
    networks = {n: list(v.get("Aliases") or []) for n, v in victim.attrs["NetworkSettings"]["Networks"].items()}
    for name in networks:
        docker_client().networks.get(name).disconnect(victim)
    try:  # the ventilator is replaced (killed, a new container) while the victim cannot hear it
        cluster.up(["ventilator"], {"ventilator": 1}, env=env, no_deps=True, recreate="force", quiet=True)
    finally:
        for name, aliases in networks.items():
            docker_client().networks.get(name).connect(victim, aliases=aliases)
    before = (sink_batch(cluster, batch).get("by_worker") or {}).get(victim_name, 0)
    (doc,) = wait_done(cluster.targets(["ventilator"]), 150)
    ledger = wait_until(lambda: (b := sink_batch(cluster, batch)) and b.get("complete") and b, 60, f"{batch} complete")
    after = ledger["by_worker"].get(victim_name, 0)
    report(
        f"pipeworker-1 cut off while the ventilator was replaced: it did {after - before} tasks of the resumed"
        f" batch; distinct {ledger['distinct']}/{ledger['size']} missing {ledger['missing']}; {doc['summary']}"
    )
    assert doc["exit_code"] == 0, f"ventilator exit code {doc['exit_code']}: {doc['summary']}"
    assert (ledger["distinct"], ledger["missing"]) == (TASKS, 0)
    assert after - before > protocol.TASK_QUEUE  # tasks it took from the new ventilator, not only what it held
