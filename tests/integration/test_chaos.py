"""`make chaos DURATION=60` in CI (issue 9): faults of every kind under load, and nothing lost that the design keeps.

Runs ``python -m ops.chaos`` as the operator does (its own compose project, free host ports, ``down -v`` at
the end) and checks its verdict and its evidence (``--save``): exit 0, every fault kind injected and healed,
every request replied, every batch complete at the sink. The seed is fixed so a failure replays with
``make chaos SEED=...``; CHAOS_SEED picks another. About two minutes on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ops.chaos import KINDS
from ops.harness import ROOT, child_env

SEED = int(os.environ.get("CHAOS_SEED", "9"))
DURATION = 60
#: The run's own bound: start-up, the fault window, draining (at most ops.chaos.DRAIN_TIMEOUT_S) and down.
TIMEOUT_S = 600

pytestmark = pytest.mark.docker


@pytest.mark.timeout(TIMEOUT_S + 60)
def test_chaos_60s_loses_nothing_with_every_fault_kind(docker_ready: None, tmp_path: Path, report) -> None:
    evidence_path = tmp_path / "chaos.json"
    cmd = [sys.executable, "-m", "ops.chaos", "--duration", str(DURATION), "--seed", str(SEED)]
    proc = subprocess.run(
        [*cmd, "--save", str(evidence_path)],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT_S,
    )
    out = proc.stdout
    print(out)
    verdict = next((line for line in out.splitlines() if line.startswith("VERDICT")), "no verdict")
    report(f"make chaos DURATION={DURATION} SEED={SEED}: {verdict}")
    for line in out.splitlines():
        if line.startswith("  total ") or line.lstrip().startswith("chaos-b"):
            report(line.strip())
    assert proc.returncode == 0, f"ops.chaos exited {proc.returncode}:\n{out[-6000:]}"
    evidence = json.loads(evidence_path.read_text())
    faults = evidence["faults"]
    assert {f["kind"] for f in faults if f["injected"]} == set(KINDS), faults
    assert all(f["end"] is not None for f in faults), [f for f in faults if f["end"] is None]
    batches = evidence["batches"]
    assert batches and all(b["finished"] and (b["doc"].get("sink") or {}).get("complete") for b in batches), batches
    report(f"{len(faults)} faults ({', '.join(sorted({f['kind'] for f in faults}))}), {len(batches)} batches complete")
