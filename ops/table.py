"""The status table: one row a node, read from each node's ``/status``.

Used by ``make status`` / ``make status-local`` and by a person watching a cluster. It only reads
HTTP, so it works the same for local processes and for containers whose status ports are published
on 127.0.0.1. No per-role cases: every role reports its connected ``peers`` and a one-line
``summary`` in words, and the table shows those. Every field is read with a default, and a node
that does not answer is a row saying so rather than an error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from nodes import roles
from nodes.core.status import parse_target
from ops.status_fetch import TIMEOUT, fetch_all, fetch_one

__all__ = ["TIMEOUT", "fetch", "fetch_one", "healthy", "main", "render"]

#: States in which a node counts as healthy (one-shot roles hold in "done" after their batch).
HEALTHY_STATES = ("running", "done")
#: The pattern where every receiver gets a full copy of the traffic: a "share" of it would mislead.
FAN_OUT_PATTERN = "pubsub"

Row = tuple[str, "dict[str, Any] | None"]


def fetch(targets: list[tuple[str, str]]) -> list[Row]:
    """Fetch every (label, status URL) concurrently; keeps the order of ``targets``."""
    docs = fetch_all([url for _, url in targets])
    return [(label, docs[url]) for label, url in targets]


def healthy(doc: Mapping[str, Any] | None) -> bool:
    if doc is None:
        return False
    return bool(doc.get("_healthz", doc.get("state") in HEALTHY_STATES))


def _counter(doc: Mapping[str, Any], name: str) -> int:
    value = (doc.get("counters") or {}).get(name, 0)
    return value if isinstance(value, int) else 0


def _fan_out(role: Any) -> bool:
    spec = roles.ROLES.get(role) if isinstance(role, str) else None
    return spec is not None and spec.pattern == FAN_OUT_PATTERN


def shares(rows: Iterable[Row]) -> dict[str, float]:
    """Each node's received as a fraction of its role's total, for load-balanced roles with several nodes."""
    by_role: dict[str, list[tuple[str, int]]] = {}
    for label, doc in rows:
        if doc is not None and not _fan_out(doc.get("role")):
            by_role.setdefault(str(doc.get("role", "?")), []).append((label, _counter(doc, "received")))
    out: dict[str, float] = {}
    for members in by_role.values():
        total = sum(n for _, n in members)
        if len(members) > 1 and total:
            out.update({label: n / total for label, n in members})
    return out


def peers(doc: Mapping[str, Any]) -> str:
    """Connected peers as every role reports them (``peers``: broker: workers, ventilator: pipeworkers, ...)."""
    value = doc.get("peers")
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else ""


def detail(doc: Mapping[str, Any]) -> str:
    """The node's own one-line ``summary``: each role words its state, the table only shows it."""
    summary = doc.get("summary")
    line = summary if isinstance(summary, str) else ""
    health = doc.get("health")
    if isinstance(health, dict) and not health.get("ok", True):  # say why first: it is what needs doing
        return f"UNHEALTHY: {health.get('reason')}; {line}" if line else f"UNHEALTHY: {health.get('reason')}"
    return line


def render(rows: list[Row], hosts: Mapping[str, str] | None = None) -> Table:
    """Build the rich table for ``rows`` (label, document or None).

    ``hosts``: label -> the machine the node runs on (a swarm's node), shown as a ``host`` column.
    """
    table = Table(title="messaging-patterns cluster", title_justify="left")
    columns = [
        ("node", "left"),
        ("role", "left"),
        ("state", "left"),
        ("health", "left"),
        ("in", "right"),
        ("out", "right"),
        ("rejected", "right"),
        ("share", "right"),
        ("peers", "right"),
        ("summary", "left"),
    ]
    if hosts is not None:
        columns.insert(1, ("host", "left"))
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=name != "summary")
    share = shares(rows)

    def where(label: str) -> tuple[str, ...]:
        return (label,) if hosts is None else (label, hosts.get(label, "?"))

    for label, doc in rows:
        if doc is None:
            table.add_row(*where(label), "?", "unreachable", "[red]down[/]", "", "", "", "", "", "")
            continue
        ok = healthy(doc)
        rejected = _counter(doc, "rejected")
        table.add_row(
            *where(label),
            str(doc.get("role", "?")),
            str(doc.get("state", "?")),
            "[green]ok[/]" if ok else "[red]unhealthy[/]",
            str(_counter(doc, "received")),
            str(_counter(doc, "sent")),
            f"[yellow]{rejected}[/]" if rejected else "0",
            f"{share[label]:.0%}" if label in share else "",
            peers(doc),
            detail(doc),
        )
    return table


def _name(label: str, url: str, doc: Mapping[str, Any] | None) -> str:
    """A given label wins; else the node's own name; else host:port."""
    if label:
        return label
    if doc is not None and doc.get("node"):
        return str(doc["node"])
    return url.split("://", 1)[-1][: -len("/status")]


def main(urls: list[str], as_json: bool = False) -> int:
    """Print the table (or the documents as JSON); exit 1 if any node is unreachable or unhealthy."""
    targets = [parse_target(u) for u in urls]
    docs = fetch([(url, url) for _, url in targets])
    rows = [(_name(label, url, doc), doc) for (label, url), (_, doc) in zip(targets, docs, strict=True)]
    if as_json:
        print(json.dumps({label: doc for label, doc in rows}, indent=2))
    else:
        # A terminal gets its own width; a pipe or a CI log gets room for the detail column.
        (Console() if sys.stdout.isatty() else Console(width=200)).print(render(rows))
    bad = [label for label, doc in rows if not healthy(doc)]
    if bad:
        print(f"not healthy: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m ops.table", description="Print the status table of the nodes at the given /status URLs."
    )
    parser.add_argument("urls", nargs="+", metavar="[LABEL=]URL")
    parser.add_argument("--json", action="store_true", help="print the collected documents as JSON")
    args = parser.parse_args()
    sys.exit(main(args.urls, as_json=args.json))
