"""The dashboard of a running compose cluster, read in headless Chromium (Debian's chromium + chromium-driver).

One test walks what a person does: ``ops.cluster up`` (which prints the dashboard's URL), open the page
and wait until it shows every node, run ``ops.cluster demo``, read the per-worker shares from the DOM
and compare them with the broker's own ``/status``, ``docker kill`` a worker and time how long the page
takes to mark it lost (must be under 5 s), and save a screenshot (build/dashboard.png, copied to
docs/dashboard.png for the README).

Nothing is downloaded: selenium drives /usr/bin/chromium through /usr/bin/chromedriver (``make install``
puts both in with apt). Without them the test skips, except in CI (``REQUIRE_DOCKER=1`` or ``CI=true``)
where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ops.compose import Project, label_of
from ops.harness import free_port
from tests.support import ROOT, get_json, wait_until

pytestmark = pytest.mark.docker

Report = Callable[[str], None]
WORKERS, PIPE_WORKERS, SUBSCRIBERS, CLIENTS = 3, 2, 2, 2
REQUESTS, TASKS, MESSAGES = 300, 400, 100
LOST_WITHIN_S = 5.0


def browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None
    )
    missing = [name for name, path in (("chromium", chromium), ("chromium-driver", driver)) if not path]
    if missing:
        why = f"{' and '.join(missing)} not installed (as root: apt-get install chromium chromium-driver; make install)"
        if os.environ.get("REQUIRE_DOCKER") == "1" or os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the browser test: {why}", pytrace=False)
        pytest.skip(why)
    return str(chromium), str(driver)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver = browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1250"):
        opts.add_argument(arg)
    # selenium-manager must not look for (or download) a driver: the service names Debian's.
    web = webdriver.Chrome(service=Service(driver), options=opts)
    web.set_page_load_timeout(30)
    try:
        yield web
    finally:
        web.quit()


def ops_cluster(project: Project, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cluster", "-p", project.name, *args],
        cwd=ROOT,
        env={**os.environ, **project.env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cards(web: Any) -> dict[str, dict[str, str]]:
    """label -> the data attributes of its topology card, read in one script (no stale elements)."""
    return web.execute_script(
        "const o = {}; for (const e of document.querySelectorAll('#topology .node')) o[e.dataset.label] ="
        " {state: e.dataset.state, node: e.dataset.node, ok: e.dataset.ok, role: e.dataset.role}; return o;"
    )


def bars(web: Any, kind: str) -> dict[str, int]:
    """key (node name) -> count of the share bars of one kind (broker, clients, sink)."""
    return web.execute_script(
        "const o = {}; for (const e of document.querySelectorAll(`#balance .bar[data-kind='${arguments[0]}']`))"
        " o[e.dataset.key] = Number(e.dataset.count); return o;",
        kind,
    )


def prometheus_query(port: int, query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    doc = get_json(url, timeout=5)
    assert doc.get("status") == "success", doc
    return doc["data"]["result"]


def test_dashboard_in_chromium(cluster: Project, browser: Any, report: Report) -> None:
    port = free_port()
    cluster.env["DASHBOARD_PORT"] = str(port)
    # With the optional Prometheus (make up PROMETHEUS=1); the profile stays on for the fixture's `down`.
    cluster.env |= {"PROMETHEUS_PORT": str(free_port()), "COMPOSE_PROFILES": "prometheus"}
    up = ops_cluster(
        cluster,
        "up",
        "--prometheus",
        *("--workers", str(WORKERS), "--pipe-workers", str(PIPE_WORKERS)),
        *("--subscribers", str(SUBSCRIBERS), "--clients", str(CLIENTS)),
        timeout=300,
    )
    assert up.returncode == 0, f"ops.cluster up failed:\n{up.stdout}\n{up.stderr}"
    url = f"http://127.0.0.1:{port}/"
    assert url in up.stdout, f"`up` does not print the dashboard URL {url}:\n{up.stdout}"
    prometheus = f"http://127.0.0.1:{cluster.env['PROMETHEUS_PORT']}/"
    assert prometheus in up.stdout, f"`up --prometheus` does not print {prometheus}:\n{up.stdout}"

    t0 = time.monotonic()
    browser.get(url)
    expected = {label for label, _ in cluster.targets() if not label.startswith("dashboard-")}

    def shows_everyone() -> bool:
        shown = cards(browser)
        return all(label in shown and shown[label]["state"] != "lost" for label in expected)

    wait_until(shows_everyone, 30, f"the page to show every node: {sorted(expected)}", interval=0.3)
    report(f"page shows all {len(expected)} nodes {time.monotonic() - t0:.1f}s after opening it")
    link = browser.execute_script("const a = document.querySelector('#links a'); return a && a.href")
    assert link == prometheus, f"the page links to {link!r}, not to Prometheus at {prometheus}"

    demo = ops_cluster(
        cluster,
        "demo",
        *("--requests", str(REQUESTS), "--tasks", str(TASKS), "--messages", str(MESSAGES)),
        timeout=300,
    )
    assert demo.returncode == 0, f"ops.cluster demo failed:\n{demo.stdout}\n{demo.stderr}"
    full = [f"{CLIENTS * REQUESTS}/{CLIENTS * REQUESTS}", f"{TASKS}/{TASKS}", f"{MESSAGES}/{MESSAGES}"]
    assert all(bar in demo.stdout for bar in full), f"the demo's progress bars did not reach {full}:\n{demo.stdout}"
    (broker_url,) = [u for label, u in cluster.targets(["broker"])]
    broker = get_json(broker_url)["labelled"]["replies_by_worker"]

    def page_matches_broker() -> dict[str, int]:
        shown = bars(browser, "broker")
        return shown if shown == get_json(broker_url)["labelled"]["replies_by_worker"] else {}

    shown = wait_until(page_matches_broker, 10, f"the broker bars on the page to equal its /status {broker}")
    clients = wait_until(
        lambda: (c := bars(browser, "clients")) and sum(c.values()) == CLIENTS * REQUESTS and c,
        10,
        f"the clients' bars to sum to the demo's {CLIENTS * REQUESTS} requests",
    )
    workers = {get_json(u)["node"]: label for label, u in cluster.targets(["worker"])}
    assert set(clients) == set(workers), f"demo replies came from {sorted(clients)}, workers are {workers}"
    for worker, n in clients.items():
        assert 0.15 <= n / (CLIENTS * REQUESTS) <= 0.55, f"{workers[worker]} took {n} of the demo's requests"
    report(f"page, broker bars (== broker /status): {shown}")
    report(f"page, demo's replies by worker (clients): {clients} = {CLIENTS * REQUESTS}")
    sink = bars(browser, "sink")
    assert sum(sink.values()) == TASKS, f"the sink's bars of the demo batch: {sink}"

    # make scale: a new replica appears on the page once it answers /status (docker DNS lists it at once)
    before = {label for label, _ in cluster.targets(["worker"])}
    cluster.up(["worker"], {"worker": WORKERS + 1}, no_deps=True, recreate="no", quiet=True)
    (new_label, new_url) = wait_until(
        lambda: next(((lb, u) for lb, u in cluster.targets(["worker"]) if lb not in before), None),
        30,
        "the new worker replica to publish its status port",
    )
    wait_until(lambda: get_json(new_url), 60, f"{new_label} to answer /status")
    answered = time.monotonic()
    wait_until(
        lambda: cards(browser).get(new_label, {}).get("state") == "running",
        LOST_WITHIN_S + 5,
        f"the new replica {new_label} on the page",
        interval=0.1,
    )
    took = time.monotonic() - answered
    report(f"scale worker {WORKERS} -> {WORKERS + 1}: {new_label} on the page {took:.1f}s after it answered /status")
    assert took < LOST_WITHIN_S, f"{new_label} took {took:.1f}s to appear (limit {LOST_WITHIN_S}s)"

    victim = next(c for c in cluster.containers(["worker"], running=True))
    label = label_of(victim)
    shown_before = cards(browser)
    assert shown_before.get(label, {}).get("state") == "running", (
        f"{label} is not a running card: {shown_before.get(label)} (labels: {sorted(shown_before)})"
    )
    killed = time.monotonic()  # before the call: under load `docker kill` itself can take a while
    victim.kill()
    wait_until(
        lambda: cards(browser).get(label, {}).get("state") == "lost",
        LOST_WITHIN_S + 5,
        f"{label} marked lost on the page",
        interval=0.1,
    )
    took = time.monotonic() - killed
    report(f"docker kill {victim.name}: marked lost on the page after {took:.1f}s")
    assert took < LOST_WITHIN_S, f"{label} took {took:.1f}s to be marked lost (limit {LOST_WITHIN_S}s)"
    events = browser.execute_script("return document.getElementById('events').innerText")
    assert f"{label} lost" in events, events

    time.sleep(1.5)  # one more redraw with the rates of the killed worker at 0
    shot = ROOT / "build" / "dashboard.png"
    shot.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(shot)), f"no screenshot at {shot}"
    (ROOT / "docs").mkdir(exist_ok=True)
    shutil.copyfile(shot, ROOT / "docs" / "dashboard.png")
    report(f"screenshot {shot.relative_to(ROOT)} (copied to docs/dashboard.png)")


def test_prometheus_scrapes_every_node_and_counts_the_demo(cluster: Project, report: Report) -> None:
    """Runs after the browser test, on its cluster: Prometheus found every node through DNS."""
    port = int(cluster.env.get("PROMETHEUS_PORT") or 0)
    assert port and cluster.containers(["prometheus"], running=True), "the browser test did not start Prometheus"
    nodes = {get_json(u)["node"]: label for label, u in cluster.targets() if not label.startswith("prometheus")}
    clients = {get_json(u)["node"] for _, u in cluster.targets(["client"])}

    def scraped() -> dict[str, float]:
        got = {r["metric"].get("node"): float(r["value"][1]) for r in prometheus_query(port, "mpc_received_total")}
        return got if set(nodes) <= set(got) else {}

    got = wait_until(scraped, 30, f"mpc_received_total in Prometheus for every node {sorted(nodes.values())}")
    report(f"prometheus: mpc_received_total for {len(got)} nodes ({len(nodes)} running)")

    def demo_replies() -> float:
        rows = prometheus_query(port, 'mpc_replied_total{role="client"}')
        total = sum(float(r["value"][1]) for r in rows if r["metric"].get("node") in clients)
        return total if total == CLIENTS * REQUESTS else 0.0

    total = wait_until(demo_replies, 30, f"sum of the demo clients' mpc_replied_total == {CLIENTS * REQUESTS}")
    report(f"prometheus: the demo clients' mpc_replied_total sums to {total:.0f} = {CLIENTS} x {REQUESTS}")
