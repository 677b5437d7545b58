"""One node's /status plus its /healthz verdict, over plain HTTP - standard library only.

Why a module of its own with no imports from the project: :mod:`ops.table` uses it on the host, and
ops.swarm's probe runs this very file inside the stack (``python -c`` of its text, in the node image,
which has no ``ops``), so both read a node the same way. Run as a script it takes a JSON list of
/status URLs and prints ``{url: document or null}``.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

#: Seconds to wait for one node; a table must stay quick even when nodes are down.
TIMEOUT = 2.0


def get(url: str) -> tuple[int, dict[str, Any]]:
    """GET a JSON document; returns (HTTP status, document) also for 503 answers."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # /healthz answers 503 with a JSON body
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {}


def fetch_one(url: str) -> dict[str, Any] | None:
    """The node's /status document plus ``"_healthz"`` (its /healthz verdict), or None if unreachable."""
    try:
        code, doc = get(url)
        if code != 200 or not isinstance(doc, dict):
            return None
    except (OSError, ValueError):
        return None
    base = url[: -len("/status")] if url.endswith("/status") else url
    try:
        code, health = get(base + "/healthz")
        doc["_healthz"] = code == 200 and bool(health.get("ok"))
    except (OSError, ValueError):
        doc["_healthz"] = False
    return doc


def fetch_all(urls: list[str]) -> dict[str, dict[str, Any] | None]:
    """Every URL concurrently: ``{url: document or None}``."""
    if not urls:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(urls))) as pool:
        return dict(zip(urls, pool.map(fetch_one, urls), strict=True))


if __name__ == "__main__":
    print(json.dumps(fetch_all(json.loads(sys.argv[1]))))
