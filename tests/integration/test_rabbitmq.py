"""``make up RABBITMQ=1`` then ``make demo``, as a person runs them (issue 14), on a project of its own.

The RabbitMQ image is built the way ``make up RABBITMQ=1`` builds it (scripts/build-service-image.sh,
cached). ``ops.cluster up --rabbitmq`` starts RabbitMQ first and points the publisher, subscribers,
ventilator and pipeworkers at it; the demo then counts every request, task and event and must print the
RabbitMQ lines with nothing lost. The cluster CLI is run as a subprocess, exactly as the Makefile runs it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable

import pytest

from ops.cluster import RABBITMQ_IMAGE
from ops.compose import Project
from tests.support import ROOT

pytestmark = pytest.mark.docker
Report = Callable[[str], None]
TASKS, MESSAGES, REQUESTS = 1000, 300, 200


@pytest.fixture(scope="module")
def rabbitmq_image(docker_ready: None) -> None:
    build = subprocess.run(
        ["bash", "scripts/build-service-image.sh", "rabbitmq"], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert build.returncode == 0, f"building {RABBITMQ_IMAGE} failed:\n{build.stdout[-2000:]}\n{build.stderr[-3000:]}"


def cli(project: Project, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **project.env, "COLUMNS": "160"}
    cmd = [sys.executable, "-m", "ops.cluster", "-p", project.name, *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_up_rabbitmq_and_demo_count_every_message_through_rabbitmq(
    cluster: Project, rabbitmq_image: None, report: Report
) -> None:
    try:
        up = cli(cluster, "up", "--rabbitmq", "--workers", "2", "--pipe-workers", "2", "--subscribers", "2")
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-2000:]
        assert "starting rabbitmq first" in up.stdout
        for c in cluster.containers(["publisher", "subscriber", "ventilator", "pipeworker"]):
            assert "BACKEND=rabbitmq" in c.attrs["Config"]["Env"], c.name
        demo = cli(cluster, "demo", "--requests", str(REQUESTS), "--tasks", str(TASKS), "--messages", str(MESSAGES))
        out = demo.stdout
        print(out)
        assert demo.returncode == 0, out[-4000:] + demo.stderr[-2000:]
        assert "RabbitMQ (make up RABBITMQ=1)" in out
        pipeline = re.search(r"pipeline \(AMQP\)\s+size (\d+)\s+distinct (\d+)\s+missing (\d+)\s+duplicates (\d+)", out)
        assert pipeline, out
        assert tuple(map(int, pipeline.groups()[:3])) == (TASKS, TASKS, 0)
        assert re.search(rf"RabbitMQ pub/sub\s+published {MESSAGES} ", out), out
        subs = re.findall(r"subscriber-\d+\s+got (\d+)/(\d+) .* gaps\+dups\+reordered\+unexpected (\d+)", out)
        assert len(subs) == 2, out
        for got, want, anomalies in subs:
            assert int(got) == int(want) > 0 and int(anomalies) == 0
        assert "lost: 0" in out
        report(f"{pipeline.group(0)}; RabbitMQ subscribers got {[f'{g}/{w}' for g, w, _ in subs]}; lost: 0")
    finally:
        down = cli(cluster, "down", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        left = cluster.containers()
        assert not left, f"down left {[c.name for c in left]}"
