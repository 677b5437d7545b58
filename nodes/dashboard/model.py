"""What the dashboard shows, computed from successive polls of every node's ``/status`` (pure: no I/O).

:class:`Tracker` remembers each node it has seen (keyed by its label: ``worker-2``, or the name the
port plan gives it), the previous document and when it was taken. Each :meth:`Tracker.update` gets
what one poll observed - label -> document, or ``None`` for a node that was found but did not answer -
and derives from the difference to the previous poll:

- per-second in/out rates (``received``/``sent`` growth over the time between the two documents);
- events: a node joined, was lost (gone from discovery or not answering), came back or restarted
  (its counters went down), changed state or health, and counters that mean trouble grew (rejects,
  retries, failures, gaps, re-sends ...);
- the load balance: per-worker shares from the broker's (and the clients') ``replies_by_worker``,
  per-pipeworker shares from the sink's latest batch ``by_worker``, per-subscriber per-topic counts.

:func:`view` turns the tracker into the one JSON document the page polls.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Pattern -> its roles in the order of the README's diagram (senders, the middle, receivers).
TOPOLOGY: dict[str, tuple[tuple[str, ...], ...]] = {
    "reqrep": (("client",), ("broker",), ("worker",)),
    "pipeline": (("ventilator",), ("pipeworker",), ("sink",)),
    "pubsub": (("publisher", "zpub"), ("subscriber", "zsub")),
    "dashboard": (("dashboard",),),
    "sockets": (("udpclient", "tcpclient"), ("udpserver", "tcpserver")),
}
TITLES = {
    "reqrep": "request-reply (load-balancing broker)",
    "pipeline": "pipeline (fan-out, fan-in)",
    "pubsub": "pub/sub (Redis and ZeroMQ)",
    "dashboard": "this dashboard",
    "sockets": "plain sockets (UDP and TCP echo, no ZeroMQ)",
}
PATTERN_OF = {role: p for p, columns in TOPOLOGY.items() for column in columns for role in column}
#: Counters whose growth is worth an event line, with the words for it and how bad it is.
WATCHED = {
    "rejected": ("rejected", "bad"),
    "failed": ("failed", "bad"),
    "retried": ("retried", "warn"),
    "gaps": ("gaps", "bad"),
    "duplicates": ("duplicates", "warn"),
    "out_of_order": ("out of order", "warn"),
    "resent": ("re-sent", "warn"),
    "workers_lost": ("workers lost", "warn"),
    "reconnects": ("reconnects", "warn"),
    "results_dropped": ("results dropped", "bad"),
    "answers_dropped": ("answers dropped", "warn"),
    "abandoned": ("abandoned", "warn"),
    "lost": ("lost", "bad"),
}
HEALTHY_STATES = ("running", "done")
#: A lost node stays on the page (red) this long, so a person sees what went away.
KEEP_LOST_S = 300.0
MAX_EVENTS = 60
#: A node found but not answering yet is "starting" this long before it counts as lost.
STARTING_GRACE_S = 30.0


def counters(doc: Mapping[str, Any] | None) -> dict[str, int]:
    raw = (doc or {}).get("counters") or {}
    return {k: v for k, v in raw.items() if isinstance(v, int) and not isinstance(v, bool)}


def labelled(doc: Mapping[str, Any] | None, group: str) -> dict[str, int]:
    raw = ((doc or {}).get("labelled") or {}).get(group) or {}
    return {str(k): v for k, v in raw.items() if isinstance(v, int)}


def rate(before: int | None, after: int, dt: float) -> float:
    """Growth per second; 0 without a previous value, a time step, or when the counter went down (restart)."""
    if before is None or dt <= 0 or after < before:
        return 0.0
    return (after - before) / dt


def restarted(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> bool:
    """A new process behind the same label: another pid, or a counter that went down."""
    if before is None:
        return False
    if before.get("pid") is not None and after.get("pid") is not None and before.get("pid") != after.get("pid"):
        return True
    old, new = counters(before), counters(after)
    return any(new.get(k, 0) < v for k, v in old.items())


def health_of(doc: Mapping[str, Any] | None) -> tuple[bool, str]:
    """``(ok, reason)`` from a /status document (its ``health``, else its state)."""
    if doc is None:
        return False, "not answering"
    h = doc.get("health")
    if isinstance(h, Mapping):
        return bool(h.get("ok")), str(h.get("reason", ""))
    state = doc.get("state")
    return state in HEALTHY_STATES, f"state is {state}"


def counter_events(label: str, before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(level, text)`` for each watched counter that grew between two documents of the same process."""
    if before is None or restarted(before, after):
        return []
    old, new = counters(before), counters(after)
    out = []
    for name, (words, level) in WATCHED.items():
        grew = new.get(name, 0) - old.get(name, 0)
        if grew > 0:
            out.append((level, f"{label}: {words} +{grew} (total {new[name]})"))
    return out


def shares(counts: Mapping[str, int], names: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """``counts`` as bars: key, a label a person knows (``names``: node name -> label), count, fraction."""
    names = names or {}
    total = sum(counts.values())
    rows = [
        {"key": k, "label": names.get(k, k), "count": n, "share": (n / total if total else 0.0)}
        for k, n in counts.items()
    ]
    return sorted(rows, key=lambda r: (r["label"], r["key"]))


def merge(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts:
        for k, n in c.items():
            out[k] = out.get(k, 0) + n
    return out


def latest_batch(doc: Mapping[str, Any] | None) -> tuple[str | None, dict[str, Any]]:
    """The sink's most recent batch (its ledger keeps them in arrival order)."""
    batches = (doc or {}).get("batches") or {}
    if not isinstance(batches, Mapping) or not batches:
        return None, {}
    batch = list(batches)[-1]
    return batch, dict(batches[batch] or {})


@dataclass
class Seen:
    """One node as the dashboard knows it."""

    label: str
    first_seen: float
    doc: dict[str, Any] | None = None
    at: float = 0.0
    lost_at: float | None = None
    reason: str = ""
    in_rate: float = 0.0
    out_rate: float = 0.0
    role: str = "?"

    @property
    def lost(self) -> bool:
        return self.lost_at is not None


@dataclass
class Tracker:
    keep_lost: float = KEEP_LOST_S
    max_events: int = MAX_EVENTS
    nodes: dict[str, Seen] = field(default_factory=dict)
    events: deque[dict[str, Any]] = field(default_factory=deque)
    polls: int = 0

    def event(self, now: float, level: str, text: str) -> None:
        self.events.appendleft({"t": now, "level": level, "text": text})
        while len(self.events) > self.max_events:
            self.events.pop()

    def update(self, now: float, observed: Mapping[str, Mapping[str, Any] | None]) -> None:
        """One poll: ``observed`` maps every node discovery found to its document (None: did not answer)."""
        self.polls += 1
        for label, doc in observed.items():
            seen = self.nodes.get(label)
            if doc is None:
                if seen is None:  # found (e.g. in DNS) before its status server answers: starting, not lost
                    seen = self.nodes[label] = Seen(label, now)
                if seen.doc is not None or now - seen.first_seen > STARTING_GRACE_S:
                    self._lose(seen, now, "not answering")
                continue
            doc = dict(doc)
            if seen is None or (seen.doc is None and not seen.lost):
                seen = self.nodes.setdefault(label, Seen(label, now))
                self.event(now, "info", f"{label} joined ({doc.get('role', '?')}, {doc.get('state', '?')})")
            elif seen.lost:
                self.event(now, "info", f"{label} is back ({doc.get('state', '?')}) after {now - seen.lost_at:.0f}s")
                seen.lost_at, seen.reason = None, ""
                if restarted(seen.doc, doc):  # a new process (a recreated container): rates start afresh
                    seen.doc = None
            self._observe(seen, now, doc)
        for label, seen in list(self.nodes.items()):
            if label not in observed:
                self._lose(seen, now, "gone from discovery (stopped or removed)")
            if seen.lost and now - seen.lost_at > self.keep_lost:
                del self.nodes[label]

    def _lose(self, seen: Seen, now: float, why: str) -> None:
        seen.in_rate = seen.out_rate = 0.0
        if not seen.lost:
            seen.lost_at, seen.reason = now, why
            self.event(now, "bad", f"{seen.label} lost: {why}")

    def _observe(self, seen: Seen, now: float, doc: dict[str, Any]) -> None:
        before = seen.doc
        seen.role = str(doc.get("role", seen.role))
        if before is not None and restarted(before, doc):
            self.event(now, "warn", f"{seen.label} restarted: a new process, its counters start again")
            before = None
        if before is not None:
            dt = now - seen.at
            old, new = counters(before), counters(doc)
            seen.in_rate = rate(old.get("received"), new.get("received", 0), dt)
            seen.out_rate = rate(old.get("sent"), new.get("sent", 0), dt)
            for level, text in counter_events(seen.label, before, doc):
                self.event(now, level, text)
            if before.get("state") != doc.get("state"):
                self.event(now, "info", f"{seen.label}: {before.get('state')} -> {doc.get('state')}")
            was_ok, _ = health_of(before)
            ok, reason = health_of(doc)
            if was_ok and not ok:
                self.event(now, "bad", f"{seen.label} unhealthy: {reason}")
            elif ok and not was_ok:
                self.event(now, "info", f"{seen.label} healthy again")
        else:
            seen.in_rate = seen.out_rate = 0.0
        seen.doc, seen.at = doc, now

    # --- what the page reads ---------------------------------------------------------------------

    def live(self, role: str) -> list[Seen]:
        return [s for s in self.nodes.values() if s.role == role and not s.lost and s.doc is not None]

    def names(self) -> dict[str, str]:
        """Node name (as the broker and the sink count it) -> label."""
        return {str(s.doc.get("node")): s.label for s in self.nodes.values() if s.doc and s.doc.get("node")}


def node_row(seen: Seen) -> dict[str, Any]:
    doc = seen.doc or {}
    ok, reason = health_of(doc) if seen.doc is not None else (False, "found, not answering yet")
    c = counters(doc)
    role = seen.role
    return {
        "label": seen.label,
        "node": doc.get("node"),
        "role": role,
        "pattern": PATTERN_OF.get(role, "other"),
        "state": "lost" if seen.lost else str(doc.get("state", "starting")),
        "ok": ok and not seen.lost,
        "lost": seen.lost,
        "reason": seen.reason if seen.lost else reason,
        "in_rate": round(seen.in_rate, 1),
        "out_rate": round(seen.out_rate, 1),
        "received": c.get("received", 0),
        "sent": c.get("sent", 0),
        "rejected": c.get("rejected", 0),
        "peers": doc.get("peers"),
        "summary": str(doc.get("summary") or ""),
    }


def balance(tracker: Tracker) -> dict[str, Any]:
    """The load balance of each pattern, from the live nodes that count it."""
    names = tracker.names()
    brokers = tracker.live("broker")
    clients = tracker.live("client")
    sink = next(iter(tracker.live("sink")), None)
    batch, ledger = latest_batch(sink.doc if sink else None)
    subscribers = sorted(tracker.live("subscriber") + tracker.live("zsub"), key=lambda s: s.label)
    return {
        "reqrep": {
            "broker": shares(merge(labelled(b.doc, "replies_by_worker") for b in brokers), names),
            "clients": shares(merge(labelled(c.doc, "replies_by_worker") for c in clients), names),
        },
        "pipeline": {
            "batch": batch,
            "size": ledger.get("size"),
            "distinct": ledger.get("distinct"),
            "complete": ledger.get("complete"),
            "by_worker": shares(ledger.get("by_worker") or {}, names),
        },
        "pubsub": [
            {
                "label": s.label,
                "role": s.role,
                "topics": merge([labelled(s.doc, "received_by_topic"), labelled(s.doc, "plain_by_topic")]),
            }
            for s in subscribers
        ],
    }


def view(tracker: Tracker, now: float, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document of ``/api/cluster``: nodes, topology, balance, accounting, events."""
    rows = [node_row(s) for s in tracker.nodes.values()]
    rows.sort(key=lambda r: (r["role"], _number(r["label"]), r["label"]))
    accounting = {
        p: [{"label": r["label"], "summary": r["summary"], "ok": r["ok"]} for r in rows if r["pattern"] == p]
        for p in TOPOLOGY
    }
    return {
        "now": now,
        "polls": tracker.polls,
        "topology": {p: [list(col) for col in cols] for p, cols in TOPOLOGY.items()},
        "titles": TITLES,
        "nodes": rows,
        "counts": {
            "nodes": len(rows),
            "ok": sum(r["ok"] for r in rows),
            "lost": sum(r["lost"] for r in rows),
        },
        "balance": balance(tracker),
        "accounting": accounting,
        "events": list(tracker.events),
        **(extra or {}),
    }


def _number(label: str) -> int:
    tail = label.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0
