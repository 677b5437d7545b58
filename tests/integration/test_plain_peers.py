"""The chapter's plain programs against the compose cluster, from the host, on its published ports.

A plain REQ client (``examples/reqclient.py``) on the broker frontend's fixed host port gets the
project's workers' plain replies; a plain SUB (``examples/zmqsub.py``) on zpub's host port receives the
continuous, plain ``[catX, hatX]`` messages ``make up`` publishes - no project code on the host side.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from ops.compose import Project
from tests.integration.test_cluster import start
from tests.support import ROOT

pytestmark = pytest.mark.docker
Report = Callable[[str], None]


def example(*args: str, timeout: float = 120) -> list[str]:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{args[0]} exited {proc.returncode}: {proc.stderr.strip()}"
    return proc.stdout.splitlines()


def test_a_plain_req_client_on_the_published_frontend_gets_every_reply(cluster: Project, report: Report) -> None:
    start(cluster, ["broker"], {"broker": 1})
    start(cluster, ["worker"], {"worker": 2})
    endpoint = f"tcp://127.0.0.1:{cluster.env['FRONTEND_HOST_PORT']}"
    lines = example("examples/reqclient.py", endpoint, "100", "10")
    report(f"examples/reqclient.py -> {endpoint}: {len(lines)}/100 replies, last {lines[-1]!r}")
    assert lines == [f"Stop saying: message #{n}" for n in range(1, 101)]


def test_a_plain_sub_on_the_published_zpub_port_receives_messages(cluster: Project, report: Report) -> None:
    start(cluster, ["zsub"], {"zsub": 1})
    start(cluster, ["zpub"], {"zpub": 1}, env={"MESSAGES": "0", "ZPUB_FORMAT": "plain", "PUB_RATE": "200"})
    endpoint = f"tcp://127.0.0.1:{cluster.env['ZPUB_HOST_PORT']}"
    lines = example("examples/zmqsub.py", "--connect", endpoint, "--count", "40", "--timeout", "30")
    report(f"examples/zmqsub.py <- {endpoint}: {len(lines)} messages, first {lines[0]!r}")
    assert len(lines) == 40
    assert all(
        line.split() in (["catA", "hatA"], ["catB", "hatB"], ["catC", "hatC"], ["catD", "hatD"]) for line in lines
    )
