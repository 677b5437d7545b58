"""``python -m bench --quick`` runs every case end to end (as threads, tiny sizes) and writes valid JSON.

The figures of a quick run mean nothing; what this checks is that every case starts its parties,
delivers and verifies every message, reports its ratios, and stops everything it started.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cases import CASES
from tests.support import ROOT


# The peers case boots Celery, Dramatiq and RQ workers (subprocesses, even in --quick): allow for that.
@pytest.mark.timeout(150)
def test_quick_bench_runs_every_case(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:  # a missing service fails, never skips
        pytest.fail("redis-server not found: install it (make install) - the Redis cases need a real server")
    out = tmp_path / "quick.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out), "--plots", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=140,
    )
    assert proc.returncode == 0, f"bench --quick exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    doc = json.loads(out.read_text())
    assert doc["meta"]["failed"] == []
    assert [c["id"] for c in doc["cases"]] == [c.id for c in CASES]
    for case, spec in zip(doc["cases"], CASES, strict=True):
        assert "error" not in case, case["id"]
        assert len(case["results"]) == len(spec.payloads), case["id"]
        for res in case["results"]:
            for variant in res["variants"].values():
                assert len(variant["samples"]) == 1, (case["id"], variant["label"])
                assert variant["summary"][spec.metrics[0]]["median"] > 0, (case["id"], variant["label"])
            # --quick runs every party as a thread: a CPU goal gets a ratio only where CPU time was measured.
            goals = [g for g in spec.goals if g.factor is not None]
            needed = [g for g in goals if g.metric != "cpu_us"]
            verdicts = [r["verdict"] for r in res["ratios"] if r["goal"]]
            assert len(needed) <= len(verdicts) <= len(goals), case["id"]
            assert set(verdicts) <= {"PASS", "SHORT"}, case["id"]
    assert (tmp_path / "rates.png").stat().st_size > 0
    assert (tmp_path / "ratios.png").stat().st_size > 0
