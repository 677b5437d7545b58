"""Run *inside* the probe container (``python -c`` of this file's text): fetch /status + /healthz of URLs.

Standard library only: the probe is the node image, which has no ``ops``. Prints one JSON object,
``{url: document or null}``, each document with ``_healthz`` (its /healthz verdict) as
:func:`ops.table.fetch_one` adds it, so the host renders the same table as for compose.
"""

import json
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

TIMEOUT = 2.0


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # /healthz answers 503 with a JSON body
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {}


def fetch(url):
    try:
        code, doc = get(url + "/status")
        if code != 200 or not isinstance(doc, dict):
            return None
        code, health = get(url + "/healthz")
        doc["_healthz"] = code == 200 and bool(health.get("ok"))
        return doc
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    urls = json.loads(sys.argv[1])
    with ThreadPoolExecutor(max(1, min(16, len(urls)))) as pool:
        print(json.dumps(dict(zip(urls, pool.map(fetch, urls), strict=True))))
