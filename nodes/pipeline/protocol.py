"""The pipeline protocol: the bodies ventilator, pipeworkers and sink exchange, made and parsed in one place.

    ventilator -> sink         kind "batch"   {"batch": id, "size": N}           (announced first)
    ventilator -> pipeworker   kind "task"    {"batch": id, "n": 0..N-1, "work_ms": ms}
    pipeworker -> sink         kind "result"  {"batch": id, "n": n, "worker": name}

Parsers raise ``ValueError`` naming the bad field, which the roles count and log as a reject.
"""

from __future__ import annotations

import math
from typing import Any

BATCH, TASK, RESULT = "batch", "task", "result"
#: Tasks a worker may have queued (RCVHWM; SNDHWM at the ventilator); see the module docstring.
TASK_QUEUE = 10
#: Kernel socket buffer, bytes, for tasks on each side (SO_RCVBUF here, SO_SNDBUF at the ventilator).
TASK_QUEUE_BYTES = 4096
#: Longest batch id accepted (ids appear in logs and /status keys).
MAX_BATCH_ID = 200
#: Longest work a task may ask for; more is rejected rather than tying the worker up.
MAX_WORK_MS = 60_000.0


def _ref(body: Any, number: str) -> tuple[str, int]:
    if not isinstance(body, dict):
        raise ValueError("body is not a map")
    batch, n = body.get("batch"), body.get(number)
    if not isinstance(batch, str) or not 0 < len(batch) <= MAX_BATCH_ID:
        raise ValueError(f"'batch' must be a string of 1-{MAX_BATCH_ID} characters")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"'{number}' must be a whole number")
    return batch, n


def task_ref(body: Any) -> tuple[str, int]:
    """``(batch, n)`` of a task or result body; ``ValueError`` naming the bad field."""
    return _ref(body, "n")


def announcement(body: Any) -> tuple[str, int]:
    """``(batch, size)`` of a ``batch`` announcement; ``ValueError`` naming the bad field."""
    return _ref(body, "size")


def announce(batch: str, size: int) -> dict[str, Any]:
    return {"batch": batch, "size": size}


def task(batch: str, n: int, work_ms: float) -> dict[str, Any]:
    return {"batch": batch, "n": n, "work_ms": work_ms}


def task_of(body: Any) -> tuple[str, int, float]:
    """``(batch, n, work_ms)`` of a task body; ``ValueError`` naming the bad field."""
    batch, n = task_ref(body)
    work_ms = body.get("work_ms", 0)
    if isinstance(work_ms, bool) or not isinstance(work_ms, (int, float)) or not math.isfinite(work_ms):
        raise ValueError("'work_ms' must be a number")
    if not 0 <= work_ms <= MAX_WORK_MS:
        raise ValueError(f"'work_ms' must be within 0-{MAX_WORK_MS:g}")
    return batch, n, work_ms


def result(batch: str, n: int, worker: str) -> dict[str, Any]:
    return {"batch": batch, "n": n, "worker": worker}


def result_of(body: Any) -> tuple[str, int, str]:
    """``(batch, n, worker)`` of a result body; ``ValueError`` naming the bad field."""
    batch, n = task_ref(body)
    worker = body.get("worker")
    if not isinstance(worker, str) or not 0 < len(worker) <= MAX_BATCH_ID:
        raise ValueError("'worker' must be a non-empty string")
    return batch, n, worker
