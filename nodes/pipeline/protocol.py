"""The pipeline protocol: the bodies ventilator, pipeworkers and sink exchange, made and parsed in one place.

Data path (PUSH/PULL, no acknowledgements)::

    ventilator -> pipeworker   kind "task"    {"batch": id, "n": 0..N-1, "work_ms": ms}
    pipeworker -> sink         kind "result"  {"batch": id, "n": n, "worker": name}
    pipeworker -> sink         kind "results" {"batch": id, "ns": [n, ...], "worker": name}

``results`` carries the results of one batch that one pipeworker finished in one wake-up (1 to
:data:`MAX_RESULTS` task numbers, in the order done): one frame, one decode, one journal record at the
sink instead of one each. It counts exactly as the same numbers sent as single ``result`` messages
(which the sink keeps accepting: plain programs send them, and the pipeworker still does for AMQP tasks,
acknowledged one by one, and on its stop path). A malformed list (not a list, empty, longer than
MAX_RESULTS, an entry that is not a whole number) rejects the frame; a number outside the batch's
``[0, size)`` is rejected on its own, the others in the frame are counted.

Ledger path (ventilator DEALER -> sink ROUTER at SINK_CONTROL_BIND, by default the results port + 2;
a plain REQ works too)::

    ventilator -> sink         kind "batch"   {"batch": id, "size": N, "list": K}
    sink -> ventilator         kind "batch"   {"batch", "size", "distinct", "received", "duplicates",
                                               "missing", "complete", "missing_ranges": [[a, b), ...],
                                               "re": id of the query, "error": str (only on a conflict)}

Every query *is* the announcement (idempotent: the sink learns the size from the first one it
sees, and checks it against the rest), so repeating it until answered is how an announcement
survives a sink that was down or restarted. ``list`` asks for up to K missing task numbers, as
half-open ranges (0 = counts only: the cheap progress poll). A plain ``batch`` announcement pushed to
the sink's PULL endpoint (the pre-ledger protocol) is still accepted, but nothing confirms it.

Parsers raise ``ValueError`` naming the bad field, which the roles count and log as a reject.
"""

from __future__ import annotations

import math
from typing import Any

BATCH, TASK, RESULT, RESULTS = "batch", "task", "result", "results"
#: Most task numbers one ``results`` frame carries (~2.3 KB of numbers at most, far below MAX_MSG_SIZE's default).
MAX_RESULTS = 256
#: Tasks a worker may have queued (RCVHWM; SNDHWM at the ventilator); see the module docstring.
TASK_QUEUE = 10
#: Kernel socket buffer, bytes, for tasks on each side (SO_RCVBUF here, SO_SNDBUF at the ventilator).
TASK_QUEUE_BYTES = 4096
#: ZMTP heartbeats on the ventilator's sockets, ms: a pipeworker (or sink) that is paused or cut off
#: stops answering PINGs and its connection is dropped, so PUSH stops dealing to it (libzmq's
#: ZMQ_HEARTBEAT_IVL / ZMQ_HEARTBEAT_TIMEOUT; a SIGKILLed peer is noticed at once by its TCP reset).
HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS = 1000, 3000
#: The same on the pipeworker's result connection: a sink gone without a FIN reaching the pipeworker (cut off,
#: restarted meanwhile) is dropped on a missed PONG and dialled again by name. Not on its task connection (see
#: :mod:`nodes.pipeline.pipeworker`): a PULL held back by RCVHWM does not read its PONGs.
HEARTBEATS = {"heartbeat_ivl": HEARTBEAT_IVL_MS, "heartbeat_timeout": HEARTBEAT_TIMEOUT_MS}
#: TCP keepalive on the pipeworker's task connection instead: the kernel probes it after 5 s idle, every 2 s,
#: and drops it after 3 unanswered probes (at once on a reset), whether the PULL is reading or not. That is how
#: a pipeworker that never heard its ventilator go (cut off while it was replaced: the FIN was lost, and a PULL
#: sends nothing) finds out within ~11 s and dials the new one; a connection that moves tasks is never probed.
TASK_KEEPALIVE = {"tcp_keepalive": 1, "tcp_keepalive_idle": 5, "tcp_keepalive_intvl": 2, "tcp_keepalive_cnt": 3}
#: Unless set, the sink's ledger endpoint is its results endpoint with the TCP port this much higher
#: (5558 -> 5560), so every configuration that names the sink's results endpoint finds its ledger too.
LEDGER_PORT_OFFSET = 2
#: ... and for ipc:// and inproc:// endpoints, the results endpoint with this suffix.
LEDGER_SUFFIX = ".ledger"
#: Most missing task numbers one ledger reply lists (each a re-send); the next round asks again.
MAX_LIST = 100_000
#: Longest batch id accepted (ids appear in logs and /status keys).
MAX_BATCH_ID = 200
#: Longest work a task may ask for; more is rejected rather than tying the worker up.
MAX_WORK_MS = 60_000.0


def ledger_endpoint(results: str, explicit: str = "") -> str:
    """The sink's ledger endpoint: ``explicit`` if set, else derived from its results endpoint.

    ``ValueError`` when it cannot be derived (a tcp:// endpoint with port ``*`` or too high a port).
    """
    if explicit:
        return explicit
    if not results.startswith("tcp://"):
        return results + LEDGER_SUFFIX
    head, _, port = results.rpartition(":")
    if not port.isdigit() or int(port) + LEDGER_PORT_OFFSET > 65535:
        raise ValueError(f"cannot derive the ledger endpoint from {results!r}: set it explicitly")
    return f"{head}:{int(port) + LEDGER_PORT_OFFSET}"


def _batch_of(body: Any) -> str:
    """The ``batch`` of a body (a map); ``ValueError`` naming what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("body is not a map")
    batch = body.get("batch")
    if not isinstance(batch, str) or not 0 < len(batch) <= MAX_BATCH_ID:
        raise ValueError(f"'batch' must be a string of 1-{MAX_BATCH_ID} characters")
    return batch


def _worker_of(body: dict[str, Any]) -> str:
    worker = body.get("worker")
    if not isinstance(worker, str) or not 0 < len(worker) <= MAX_BATCH_ID:
        raise ValueError("'worker' must be a non-empty string")
    return worker


def _ref(body: Any, number: str) -> tuple[str, int]:
    batch, n = _batch_of(body), body.get(number)
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


def task(batch: str, n: int, work_ms: float, pad: bytes = b"") -> dict[str, Any]:
    """A task body; ``pad`` (PAYLOAD_BYTES) only gives it a size, pipeworkers ignore it."""
    body: dict[str, Any] = {"batch": batch, "n": n, "work_ms": work_ms}
    if pad:
        body["pad"] = pad
    return body


def task_of(body: Any) -> tuple[str, int, float]:
    """``(batch, n, work_ms)`` of a task body; ``ValueError`` naming the bad field."""
    if type(body) is dict:  # the common case in one test (a pipeworker parses every task); a NaN fails 0 <= w
        batch, n, w = body.get("batch"), body.get("n"), body.get("work_ms", 0)
        if (
            type(batch) is str
            and 0 < len(batch) <= MAX_BATCH_ID
            and type(n) is int
            and n >= 0
            and (type(w) is float or type(w) is int)
            and 0 <= w <= MAX_WORK_MS
        ):
            return batch, n, w
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
    if type(body) is dict:  # the common case in one test; anything else gets the field-by-field checks
        batch, n, worker = body.get("batch"), body.get("n"), body.get("worker")
        if (
            type(batch) is str
            and 0 < len(batch) <= MAX_BATCH_ID
            and type(n) is int
            and n >= 0
            and type(worker) is str
            and 0 < len(worker) <= MAX_BATCH_ID
        ):
            return batch, n, worker
    batch, n = task_ref(body)
    return batch, n, _worker_of(body)


def results(batch: str, ns: list[int], worker: str) -> dict[str, Any]:
    """The body of a ``results`` frame: task numbers ``ns`` (1 to MAX_RESULTS) of one batch done by ``worker``."""
    return {"batch": batch, "ns": ns, "worker": worker}


def results_of(body: Any) -> tuple[str, list[int], str]:
    """``(batch, ns, worker)`` of a ``results`` body; ``ValueError`` naming the bad field.

    Every entry must be a whole number (else the whole frame is bad); whether each is inside the batch's
    ``[0, size)`` is the sink's to check, number by number.
    """
    batch = _batch_of(body)
    worker, ns = _worker_of(body), body.get("ns")
    if type(ns) is not list or not 0 < len(ns) <= MAX_RESULTS:
        raise ValueError(f"'ns' must be a list of 1-{MAX_RESULTS} task numbers")
    # One pass in C for the common case (exact ints, none negative); a bool is not a task number.
    if not all(type(n) is int for n in ns) or min(ns) < 0:
        bad = next(n for n in ns if type(n) is not int or n < 0)
        raise ValueError(f"'ns' must hold whole numbers only, not {bad!r}")
    return batch, ns, worker


# --- the ledger path -----------------------------------------------------------------------------


def query(batch: str, size: int, list_missing: int = 0) -> dict[str, Any]:
    """The ventilator's announcement-and-question: "batch of ``size``; which (up to K) are missing?"."""
    return {"batch": batch, "size": size, "list": list_missing}


def query_of(body: Any) -> tuple[str, int, int]:
    """``(batch, size, list)`` of a query; ``list`` is clamped to :data:`MAX_LIST`."""
    batch, size = announcement(body)
    k = body.get("list", 0)
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError("'list' must be a whole number")
    return batch, size, min(k, MAX_LIST)


def progress(
    summary: dict[str, Any], batch: str, ranges: list[list[int]], re: str, error: str | None = None
) -> dict[str, Any]:
    """The sink's answer, from a :meth:`BatchLedger.summary` and the missing ranges it was asked for."""
    body = {
        "batch": batch,
        "size": summary["size"],
        "distinct": summary["distinct"],
        "received": summary["received"],
        "duplicates": summary["duplicates"],
        "missing": summary["missing"],
        "complete": summary["complete"],
        "missing_ranges": ranges,
        "re": re,
    }
    if error:
        body["error"] = error
    return body


def _count(body: dict[str, Any], key: str) -> int:
    v = body.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ValueError(f"'{key}' must be a whole number")
    return v


def progress_of(body: Any) -> dict[str, Any]:
    """A checked copy of the sink's answer; ``ValueError`` naming the bad field."""
    batch, size = announcement(body)
    out: dict[str, Any] = {"batch": batch, "size": size}
    for key in ("distinct", "received", "duplicates", "missing"):
        out[key] = _count(body, key)
    if not isinstance(body.get("complete"), bool):
        raise ValueError("'complete' must be true or false")
    out["complete"] = body["complete"]
    re, error = body.get("re"), body.get("error")
    if not isinstance(re, str):
        raise ValueError("'re' must be a string")
    if error is not None and not isinstance(error, str):
        raise ValueError("'error' must be a string")
    out["re"], out["error"] = re, error
    ranges = body.get("missing_ranges")
    if not isinstance(ranges, list):
        raise ValueError("'missing_ranges' must be a list")
    checked = []
    for r in ranges:
        if (
            not isinstance(r, list)
            or len(r) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in r)
            or not 0 <= r[0] < r[1] <= size
        ):
            raise ValueError(f"'missing_ranges' has a bad range {r!r} (want [a, b) within [0, {size}))")
        checked.append((r[0], r[1]))
    out["missing_ranges"] = checked
    return out
