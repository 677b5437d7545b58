"""The ``peers`` case: Celery, Dramatiq and RQ against the project's pipeline and broker, in the same run.

Every peer runs against the bench's own redis-server (a database of its own per configuration), with K
worker processes (1 and 2), the same no-op task (:mod:`bench.peer_tasks`) and the same N. The bench
process submits with each peer's ordinary client API and waits for the results: the task ``RPUSH``-es its
number to a key private to the run, and the run verifies that all N numbers came back exactly once. A peer
that loses or duplicates a task is reported (``lost``/``duplicates``), not timed.

* tasks/s end to end: from just before the first submit until all N results are in Redis (polled every
  ``POLL_S``);
* latency: submit one task, ``BLPOP`` its result, one at a time (K=1 configurations).

The workers are subprocesses in a process group of their own under ``timeout`` (a bounded lifetime even
if the bench dies), stopped by process group (SIGTERM, then SIGKILL) when the case ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.procs import BenchError
from ops.harness import ROOT, RedisServer, child_env
from ops.wait import tail

#: Seconds between polls of a run's result count.
POLL_S = 0.002
#: Threads a Dramatiq worker process runs (its default; the same as the issue's hand measurement).
DRAMATIQ_THREADS = 8
#: Celery's prefetch multiplier (bench.peer_celery sets the same).
CELERY_PREFETCH = 64
#: Enqueue RQ jobs this many at a time (``Queue.enqueue_many``, one pipeline each).
RQ_CHUNK = 100
BIN = Path(sys.executable).parent


class Workers:
    """A peer's worker command in a process group of its own, its lifetime bounded by ``timeout``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path, lifetime: float) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        cmd = ["timeout", "-k", "5", f"{int(lifetime)}s", *argv]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            cwd=ROOT,
            env=child_env(env),
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def begin_stop(self) -> None:
        """SIGTERM the group we started (``timeout``, the worker and its children: start_new_session made it)."""
        self._signal(signal.SIGTERM)

    def stop(self, grace: float = 5.0) -> None:
        """Wait up to ``grace`` s for the whole group to be gone, then SIGKILL what is left of it."""
        self.begin_stop()
        deadline = time.monotonic() + grace
        while self._signal(0) and time.monotonic() < deadline:
            self.proc.poll()  # reap the leader, so its pid stops counting
            time.sleep(0.05)
        if self._signal(signal.SIGKILL):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        self._log.close()

    def _signal(self, sig: int) -> bool:
        """Send ``sig`` to the group; False when no process of it is left."""
        self.proc.poll()
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return False
        return True


class Peer:
    """One task queue with K worker processes on database ``db`` of the bench's redis-server."""

    kind = ""
    label = ""

    def __init__(self, redis: RedisServer, db: int, k: int, logdir: Path, lifetime: float) -> None:
        import redis as redis_py

        self.k, self.db = k, db
        self.url = f"redis://:{redis.password}@127.0.0.1:{redis.port}/{db}"
        self.name = f"{self.kind}{k}"
        self.client = redis_py.Redis.from_url(self.url, socket_timeout=60)
        self.client.flushdb()
        self.workers = [
            Workers(f"peer-{self.name}-{i}", argv, {"PEER_REDIS_URL": self.url}, logdir, lifetime)
            for i, argv in enumerate(self.commands())
        ]
        self.runs = 0

    # what a peer defines
    def commands(self) -> list[list[str]]:
        raise NotImplementedError

    def submit(self, name: str, args: tuple) -> None:
        raise NotImplementedError

    def submit_many(self, ids: range, key: str) -> None:
        for i in ids:
            self.submit("noop", (i, key))

    def begin_close(self) -> None:
        for w in self.workers:
            w.begin_stop()

    def close(self) -> None:
        self.begin_close()
        for w in self.workers:
            w.stop()
        self.client.close()

    # the runs
    def key(self, what: str) -> str:
        self.runs += 1
        return f"bench:{what}:{self.name}:{self.runs}"

    def check_alive(self) -> None:
        for w in self.workers:
            if not w.alive():
                raise BenchError(f"{w.name}: exited ({w.proc.returncode})\n{tail(w.log_path)}")

    def wait_ready(self, timeout: float) -> None:
        """Until K distinct worker processes have run a probe (each probe keeps its worker busy a moment)."""
        key = self.key("probe")
        deadline = time.monotonic() + timeout
        pids: set[bytes] = set()
        sent = answered = 0
        # every probe sent must have answered too: none may still be queued when the timed runs begin
        while len(pids) < self.k or answered < sent:
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.name}: {len(pids)} of {self.k} worker processes, {answered} of {sent} probes answered"
                    f" within {timeout:.0f}s\n{tail(self.workers[0].log_path)}"
                )
            if len(pids) < self.k and answered == sent:
                for _ in range(2 * self.k):
                    self.submit("probe", (key, 0.05))
                sent += 2 * self.k
            got = self.client.blpop([key], timeout=2)
            if got:
                pids.add(got[1])
                answered += 1
        self.client.delete(key)

    def warm(self, timeout: float) -> bool:
        """One task through, not timed: a burst then meets a worker that is polling, not one backed off.

        (An idle Dramatiq consumer sleeps longer and longer between empty fetches, up to its worker timeout
        of 1 s; Celery's and RQ's block on Redis and wake at once. The latency runs keep that cost in.)
        """
        key = self.key("warm")
        self.submit("noop", (0, key))
        got = self.client.blpop([key], timeout=timeout)
        self.client.delete(key)
        return got is not None and int(got[1]) == 0

    def throughput(self, n: int, timeout: float) -> dict[str, float]:
        """Submit N no-op tasks, wait until all N results are in; rate from just before the first submit."""
        key, client = self.key("tp"), self.client
        if not self.warm(30.0):
            print(f"peers: {self.name} lost its warm-up task (run not timed)", file=sys.stderr)
            return {"lost": 1.0, "count": n}
        t0 = time.perf_counter()
        self.submit_many(range(n), key)
        t_sent = time.perf_counter()
        deadline = time.monotonic() + timeout
        distinct = 0
        while True:
            have = client.llen(key)
            if have >= n:
                t1 = time.perf_counter()
                values = client.lrange(key, 0, -1)
                distinct = len(set(values))
                if distinct >= n:
                    break
            if time.monotonic() > deadline:
                t1 = None
                break
            time.sleep(POLL_S)
        values = client.lrange(key, 0, -1)
        client.delete(key)
        numbers = {int(v) for v in values}
        lost = n - len(numbers & set(range(n)))
        dups = len(values) - len(numbers)
        if lost or dups or t1 is None:
            print(f"peers: {self.name} lost {lost} and duplicated {dups} of {n} tasks (not timed)", file=sys.stderr)
            return {"lost": float(lost), "duplicates": float(dups), "count": n}
        return {"msgs_per_s": n / (t1 - t0), "submit_per_s": n / (t_sent - t0), "count": n}

    def latency(self, n: int, warmup: int, timeout: float) -> dict[str, float]:
        """One task at a time: submit, BLPOP its result; p50/p99 of submit -> result."""
        key, client = self.key("lat"), self.client
        now = time.perf_counter_ns
        lat: list[int] = []
        for i in range(n + warmup):
            t0 = now()
            self.submit("noop", (i, key))
            got = client.blpop([key], timeout=timeout)
            t1 = now()
            if got is None or int(got[1]) != i:
                print(f"peers: {self.name} lost task {i} of a latency run ({got})", file=sys.stderr)
                return {"lost": 1.0}
            if i >= warmup:
                lat.append(t1 - t0)
        return latency_figures(lat)


def latency_figures(lat_ns: list[int]) -> dict[str, float]:
    lat = sorted(lat_ns)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] / 1000.0

    return {"p50_us": pct(0.50), "p99_us": pct(0.99)}


class CeleryPeer(Peer):
    kind, label = "celery", "Celery"

    def commands(self) -> list[list[str]]:
        return [
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.peer_celery",
                "worker",
                "--pool=prefork",
                f"--concurrency={self.k}",
                f"--prefetch-multiplier={CELERY_PREFETCH}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=WARNING",
                f"--hostname={self.name}@bench",
            ]
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from bench.peer_celery import make_app

        self.app = make_app(self.url)

    def submit(self, name: str, args: tuple) -> None:
        self.app.send_task(name, args=args, ignore_result=True)

    def close(self) -> None:
        super().close()
        self.app.close()


class DramatiqPeer(Peer):
    kind, label = "dramatiq", "Dramatiq"

    def commands(self) -> list[list[str]]:
        return [
            [sys.executable, "-m", "dramatiq", "bench.peer_dramatiq", "-p", str(self.k), "-t", str(DRAMATIQ_THREADS)]
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from dramatiq.brokers.redis import RedisBroker

        self.broker = RedisBroker(url=self.url, middleware=[])

    def submit(self, name: str, args: tuple) -> None:
        import dramatiq

        self.broker.enqueue(dramatiq.Message(queue_name="default", actor_name=name, args=args, kwargs={}, options={}))

    def close(self) -> None:
        super().close()
        self.broker.close()


class RQPeer(Peer):
    kind, label = "rq", "RQ"

    def commands(self) -> list[list[str]]:
        return [
            [
                str(BIN / "rq"),
                "worker",
                "-w",
                "rq.SimpleWorker",
                "-u",
                self.url,
                "--logging_level",
                "WARNING",
                "--disable-job-desc-logging",
                "default",
            ]
            for _ in range(self.k)
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from rq import Queue

        self.queue = Queue("default", connection=self.client)

    def submit(self, name: str, args: tuple) -> None:
        self.queue.enqueue(f"bench.peer_tasks.{name}", *args, result_ttl=0)

    def submit_many(self, ids: range, key: str) -> None:
        """``Queue.enqueue_many``: the bulk API RQ's docs give, a pipeline per RQ_CHUNK jobs."""
        prep = self.queue.prepare_data
        for start in range(ids.start, ids.stop, RQ_CHUNK):
            chunk = range(start, min(start + RQ_CHUNK, ids.stop))
            self.queue.enqueue_many([prep("bench.peer_tasks.noop", args=(i, key), result_ttl=0) for i in chunk])


PEERS = (CeleryPeer, DramatiqPeer, RQPeer)
