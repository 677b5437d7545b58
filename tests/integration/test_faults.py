"""Nothing lost when containers die (issue 9): the pipeline across real containers, with faults injected
by the docker engine while a batch is in flight. The numbers are printed and kept in the summary.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest

from ops.compose import Project
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
