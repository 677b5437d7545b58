"""Which nodes exist right now: DNS (compose) or a list given in advance (the local port plan).

In compose every service name resolves, through the docker network's DNS, to the address of every
running replica; a stopped or killed container leaves DNS at once. The dashboard sits on every
network, so ``getaddrinfo(service)`` at each poll is the whole discovery. A replica is named like
``ops.compose.label_of`` names it (``worker-2``), from the reverse lookup of its address (docker
answers ``<project>-worker-2.<network>``); without one, by the name the node reports.

Lookups run in a small thread pool with a deadline, so a name nobody serves (a service that is not
started resolves through the host's resolver) never holds up a poll; the pool is bounded and a name
still being looked up is not asked again.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from nodes.core.status import parse_target


@dataclass(frozen=True)
class Target:
    """A node to poll: ``label`` is None when only its /status can name it."""

    url: str
    service: str
    label: str | None = None


def parse_static(items: Iterable[str]) -> list[Target]:
    """``LABEL=http://HOST:PORT[/status]`` (or a bare URL) -> targets; the URL gets ``/status`` if it lacks it."""
    return [Target(url, "", label or None) for label, url in map(parse_target, items)]


def replica_label(service: str, hostname: str | None) -> str | None:
    """``worker-2`` from docker's reverse name ``proj-worker-2.proj_back`` (v2) or ``proj_worker_2.proj_back`` (v1)."""
    if not hostname:
        return None
    first = hostname.split(".", 1)[0]
    m = re.search(rf"(?:^|[-_]){re.escape(service)}[-_](\d+)$", first)
    return f"{service}-{m.group(1)}" if m else None


def url_of(ip: str, port: int) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}/status"


def resolve_all(name: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return sorted({str(ai[4][0]) for ai in infos})


def reverse(ip: str) -> str | None:
    try:
        return socket.gethostbyaddr(ip)[0]
    except OSError:
        return None


class Discovery:
    """Targets of one poll: the static list plus every address each service name resolves to now."""

    def __init__(
        self,
        services: Iterable[str],
        port: int,
        static: Iterable[str] = (),
        *,
        resolve: Callable[[str], list[str]] = resolve_all,
        lookup: Callable[[str], str | None] = reverse,
        deadline: float = 0.6,
    ) -> None:
        self.services = tuple(services)
        self.port = port
        self.static = parse_static(static)
        self.resolve, self.lookup, self.deadline = resolve, lookup, deadline
        self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="dashboard-dns")
        self.pending: dict[str, Future[Any]] = {}
        self.names: dict[str, str | None] = {}  # ip -> reverse name (forgotten when the ip leaves)

    def _submit(self, key: str, fn: Callable[[str], Any], arg: str) -> Future[Any]:
        fut = self.pending.get(key)
        if fut is None:
            fut = self.pending[key] = self.pool.submit(fn, arg)
        return fut

    def targets(self) -> list[Target]:
        found: dict[str, list[str]] = {}
        futures = {s: self._submit(f"A {s}", self.resolve, s) for s in self.services}
        wait(futures.values(), timeout=self.deadline)
        for service, fut in futures.items():
            if fut.done():
                self.pending.pop(f"A {service}", None)
                found[service] = fut.result() if fut.exception() is None else []
            else:
                found[service] = []  # still resolving (a name nobody serves): nothing there this poll
        ips = {ip for addrs in found.values() for ip in addrs}
        for ip in list(self.names):
            if ip not in ips:
                del self.names[ip]  # an address can come back as another container
        new = {ip: self._submit(f"PTR {ip}", self.lookup, ip) for ip in ips if ip not in self.names}
        wait(new.values(), timeout=self.deadline)
        for ip, fut in new.items():
            if fut.done():
                self.pending.pop(f"PTR {ip}", None)
                self.names[ip] = fut.result() if fut.exception() is None else None
        out = list(self.static)
        for service, addrs in found.items():
            for ip in addrs:
                out.append(Target(url_of(ip, self.port), service, replica_label(service, self.names.get(ip))))
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
