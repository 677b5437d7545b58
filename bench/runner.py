"""Runs the cases: variants interleaved A B C A B C ..., repeats, medians, spreads and paired ratios.

A ratio is taken per round (subject and baseline measured back to back in the same round) and the
median of those paired ratios is reported, so slow drift of a noisy machine cancels out of it.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
import traceback
from typing import Any

from bench.cases import Case, Env
from bench.procs import BenchError
from ops.wait import WaitError

log = logging.getLogger(__name__)


def summarize(values: list[float]) -> dict[str, float]:
    vals = sorted(values)
    out = {"median": statistics.median(vals), "min": vals[0], "max": vals[-1], "n": len(vals)}
    if len(vals) >= 4:
        q = statistics.quantiles(vals, n=4, method="inclusive")
        out.update(q1=q[0], q3=q[2])
    return out


def payload_label(payload: int | None) -> str:
    if payload is None:
        return "node's own"
    return f"{payload // 1024} KiB" if payload >= 1024 and payload % 1024 == 0 else f"{payload} B"


def run_case(case: Case, env: Env, repeat: int, progress: Any = None) -> dict[str, Any]:
    """Run one case; errors (a party that would not start, a lost message) are recorded, not raised."""
    started = time.monotonic()
    record: dict[str, Any] = {"id": case.id, "title": case.title, "what": case.what, "metrics": case.metrics}
    record["rounds"] = repeat
    samples: dict[tuple[int | None, str], list[dict[str, float]]] = {}
    labels: dict[str, str] = {}
    variants_list: list = []
    try:
        with case.setup(env) as variants:
            variants_list = list(variants)
            labels = {v.key: v.label for v in variants}
            for r in range(repeat):
                for payload in case.payloads:
                    for v in variants:
                        if progress:
                            progress(f"{case.id} {payload_label(payload)} round {r + 1}/{repeat}: {v.label}")
                        samples.setdefault((payload, v.key), []).append(v.measure(payload))
    except (BenchError, WaitError) as exc:  # said in words already: no traceback
        record["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - a broken case is reported and fails the run, others go on
        record["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
    finally:
        env.launcher.stop_all()
    record["seconds"] = round(time.monotonic() - started, 1)
    record["results"] = []
    for payload in case.payloads:
        variants_out = {}
        for key, label in labels.items():
            runs = samples.get((payload, key), [])
            if runs:
                variants_out[key] = {
                    "label": label,
                    "samples": runs,
                    # a metric some runs lack (a peer's rate in a run that lost tasks) is summarised over the rest
                    "summary": {
                        m: summarize(vals)
                        for m in case.metrics
                        if (vals := [s[m] for s in runs if s.get(m) is not None])
                    },
                }
        ratios = []
        goals = list(case.goals)
        for v in variants_list:  # a --lab variant is held to the goals of the node variant it changes
            if v.lab_of:
                goals += [dataclasses.replace(g, subject=v.key) for g in case.goals if g.subject == v.lab_of]
        for goal in goals:
            a, b = samples.get((payload, goal.subject), []), samples.get((payload, goal.baseline), [])
            m = goal.metric
            paired = [x[m] / y[m] for x, y in zip(a, b, strict=False) if x.get(m) is not None and y.get(m)]
            if not paired:
                continue
            summ = summarize(paired)
            met = goal.met(summ["median"])
            ratios.append(
                {
                    "subject": goal.subject,
                    "baseline": goal.baseline,
                    "metric": goal.metric,
                    "goal": goal.text,
                    "ratios": paired,
                    **summ,
                    "verdict": "" if met is None else ("PASS" if met else "SHORT"),
                }
            )
        record["results"].append(
            {"payload": payload, "label": payload_label(payload), "variants": variants_out, "ratios": ratios}
        )
    return record
