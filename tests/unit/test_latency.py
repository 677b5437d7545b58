"""The client's latency figures: percentiles within a bucket's width, the maximum exact, memory bounded."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from nodes.core.latency import RATIO, Latency


def test_no_sample_reports_none() -> None:
    lat = Latency()
    assert lat.summary() == {"count": 0, "p50_s": None, "p99_s": None, "max_s": None}
    assert lat.text() == ""


def test_percentiles_of_a_known_spread() -> None:
    lat = Latency()
    for ms in range(1, 1001):  # 1..1000 ms: p50 = 500 ms, p99 = 990 ms
        lat.record(ms / 1000)
    s = lat.summary()
    assert s["count"] == 1000
    assert s["max_s"] == 1.0
    assert abs(s["p50_s"] - 0.5) / 0.5 <= RATIO - 1
    assert abs(s["p99_s"] - 0.99) / 0.99 <= RATIO - 1
    assert lat.text().startswith("p50 ") and lat.text().endswith("max 1.00s")


def test_one_slow_request_is_the_exact_max_and_not_the_median() -> None:
    lat = Latency()
    for _ in range(999):
        lat.record(0.002)
    lat.record(7.654321)
    s = lat.summary()
    assert s["max_s"] == 7.654321
    assert s["p50_s"] <= 0.002 * RATIO and s["p99_s"] <= 0.002 * RATIO


def test_memory_is_bounded_by_the_buckets_not_the_samples() -> None:
    lat = Latency()
    rng = random.Random(9)
    for _ in range(50_000):
        lat.record(rng.uniform(0.0005, 20.0))
    assert lat.count == 50_000
    assert len(lat._buckets) < 250


@given(st.lists(st.floats(min_value=0.0, max_value=3600.0), min_size=1, max_size=300))
def test_percentiles_are_ordered_and_never_above_the_max(samples: list[float]) -> None:
    lat = Latency()
    for x in samples:
        lat.record(x)
    s = lat.summary()
    assert s["p50_s"] <= s["p99_s"] <= s["max_s"] == round(max(samples), 6)
