"""Latency percentiles in bounded memory: a log-bucketed histogram with an exact count and maximum.

Why: a client reports the round trip of its requests (p50/p99/max on ``/status``), and the chaos
report's "worst latency" is how long a request waited out a fault. A client may send up to 2**31
requests, so it cannot keep every sample; buckets 5 % wide (about 370 of them from 1 µs to an hour)
give each percentile within 2.5 % of the true value, and the maximum is kept exactly - it is the
number a fault report is about. Only the owner's thread records; :meth:`summary` reads copies.
"""

from __future__ import annotations

import math
from typing import Any

#: Relative width of a bucket: a percentile is reported as its bucket's geometric middle (within ±2.5 %).
RATIO = 1.05
#: Samples below this many seconds share the lowest bucket.
FLOOR_S = 1e-6


class Latency:
    """Round-trip times in seconds: count, exact max, p50/p99 from log buckets."""

    def __init__(self) -> None:
        self.count = 0
        self.max_s = 0.0
        self._buckets: dict[int, int] = {}

    def record(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        i = int(math.log(max(seconds, FLOOR_S) / FLOOR_S, RATIO))
        self._buckets[i] = self._buckets.get(i, 0) + 1
        self.count += 1
        self.max_s = max(self.max_s, seconds)

    def percentile(self, p: float) -> float | None:
        """The ``p`` quantile (0 < p <= 1) in seconds, None before the first sample; never above the max."""
        buckets = self._buckets.copy()  # atomic under the GIL: the HTTP thread reads while the loop records
        total = sum(buckets.values())
        if total == 0:
            return None
        rank = max(1, math.ceil(p * total))
        seen = 0
        for i in sorted(buckets):
            seen += buckets[i]
            if seen >= rank:
                return min(FLOOR_S * RATIO ** (i + 0.5), self.max_s)
        return self.max_s

    def summary(self) -> dict[str, Any]:
        """``{"count", "p50_s", "p99_s", "max_s"}`` (seconds, rounded to µs; None before the first sample)."""
        p50, p99 = self.percentile(0.5), self.percentile(0.99)
        return {
            "count": self.count,
            "p50_s": None if p50 is None else round(p50, 6),
            "p99_s": None if p99 is None else round(p99, 6),
            "max_s": round(self.max_s, 6) if self.count else None,
        }

    def text(self) -> str:
        """``p50 3.1ms p99 12ms max 4.2s`` for a summary line ("" before the first sample)."""
        s = self.summary()
        if not self.count:
            return ""
        return " ".join(f"{k} {_human(s[f'{k}_s'])}" for k in ("p50", "p99", "max"))


def _human(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms" if seconds < 1 else f"{seconds:.2f}s"
