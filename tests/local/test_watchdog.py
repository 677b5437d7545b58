"""The watchdog (issue 9, item 3): a node whose loop is stuck exits 4 so `restart: on-failure` restarts it;
a node that was only frozen (SIGSTOP, like `docker pause`) is not killed for it. Real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nodes.core.lifecycle import EXIT_STUCK
from ops.harness import ROOT, child_env, stop_process
from tests.support import free_port, get_json, wait_until

#: A real worker started through ``python -m nodes``'s entry point whose loop, after a few healthy
#: passes, wedges in a call that never returns (what a bug or a hung library call looks like from outside).
STUCK_WORKER = """
import sys, threading
from nodes.reqrep.worker import Worker
def serve(self):
    for _ in range(5):
        self.running()
        self.stop.wait(0.1)
    threading.Event().wait()  # stuck for good: no beat, ignores the stop flag
Worker.serve = serve
from nodes.__main__ import main
sys.exit(main(["worker"]))
"""


def test_a_node_whose_loop_is_stuck_exits_4_and_says_where(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "NODE_NAME": "worker-stuck",
        "STATUS_PORT": str(port),
        "BROKER_BACKEND": f"tcp://127.0.0.1:{free_port()}",
        "WATCHDOG_S": "2",
    }
    log = tmp_path / "stuck.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", STUCK_WORKER], env=child_env(env), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        rc = proc.wait(30)
    finally:
        stop_process(proc)
    text = log.read_text()
    print(f"\n[watchdog] stuck worker exited {rc}; last line: {text.strip().splitlines()[-1][:300]}")
    assert rc == EXIT_STUCK, text
    assert '"event": "loop_stuck"' in text and "<string>:8 in serve" in text, text


def test_a_frozen_node_is_not_killed_for_the_freeze(nodes) -> None:
    worker = nodes("worker", {"BROKER_BACKEND": f"tcp://127.0.0.1:{free_port()}", "WATCHDOG_S": "1"})
    os.kill(worker.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(4)  # the fault itself: frozen for four times WATCHDOG_S
    finally:
        os.kill(worker.proc.pid, signal.SIGCONT)
    wait_until(lambda: get_json(f"{worker.url}/status")["counters"] is not None, 10, "the thawed worker answers")
    beat = get_json(f"{worker.url}/status")["uptime_s"]
    wait_until(lambda: get_json(f"{worker.url}/status")["uptime_s"] >= beat + 3, 10, "three more seconds of life")
    assert worker.proc.poll() is None, worker.log_tail()
    assert "loop_stuck" not in worker.log_tail(200)
