"""The cases: what runs against what, how it is timed, which ratio goals apply.

A case's ``setup`` starts every variant's long-lived parties once (nodes, baselines, load sockets),
checks each path end to end, and yields the variants; the runner then calls ``variant.measure(payload)``
interleaved, A B C A B C ..., for every payload and repeat. Each measure sends a bounded count,
waits a bounded time, verifies that every message arrived exactly once and returns its figures.

Process layout (default; ``--threads`` puts every party in one process, for ``--quick``):
every node and baseline runs in its own process; the load generators (DEALER/REQ clients, the
Redis and XPUB sources) run in the bench process, which is otherwise idle. Receivers' rates are
timed inside their own process by :mod:`bench.host`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from bench import frames
from bench.lab import VARIANTS as LAB
from bench.load import DealerLoad, RedisSource, ReqLatency, ZmqSource
from bench.procs import BenchError, Launcher, redis_server, tcp
from nodes.core import wire

#: Requests a DEALER client keeps in flight.
WINDOW = 128
#: Payload sizes of the cases that can set one, bytes of the frame on the wire.
PAYLOADS = (64, 4096)
TOPIC_LETTERS = "ABCD"


@dataclass
class Variant:
    key: str
    label: str
    measure: Callable[[int], dict[str, float]]
    #: For a --lab variant: the key of the node variant it changes (it is held to that variant's goals).
    lab_of: str | None = None


@dataclass(frozen=True)
class Goal:
    """``subject`` / ``baseline`` on ``metric`` must be ``op`` ``factor`` (``factor`` None: shown, no goal)."""

    subject: str
    baseline: str
    metric: str
    op: str = ">="
    factor: float | None = None

    def met(self, ratio: float) -> bool | None:
        if self.factor is None:
            return None
        return ratio >= self.factor if self.op == ">=" else ratio <= self.factor

    @property
    def text(self) -> str:
        return "" if self.factor is None else f"{self.op} {self.factor:g}"


@dataclass
class Env:
    """What a case needs: sizes, the launcher of its parties, timeouts."""

    size: int
    launcher: Launcher
    quick: bool
    labs: list[str] = field(default_factory=list)
    runs: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    #: Rounds this run makes of each case (for bounds on helpers' lifetimes).
    repeat: int = 1

    def labs_for(self, *roles: str) -> list[str]:
        """The --lab names that change at least one of ``roles``."""
        return [name for name in self.labs if any(name in LAB.get(role, {}) for role in roles)]

    def lab(self, role: str, name: str | None) -> str | None:
        return name if name and name in LAB.get(role, {}) else None

    def n(self, factor: float, floor: int = 20) -> int:
        return max(floor, int(self.size * factor))

    def timeout(self, count: int, per_s: float = 2000.0) -> float:
        """A generous bound on one run: the slowest plausible rate plus process start-up."""
        return 30.0 + count / per_s

    def run_id(self) -> str:
        return f"r{os.getpid()}-{next(self.runs)}"


@dataclass
class Case:
    id: str
    title: str
    what: str  # how it is measured, for the report
    metrics: list[str]
    setup: Callable[[Env], AbstractContextManager[list[Variant]]]
    payloads: tuple[int | None, ...] = PAYLOADS
    goals: list[Goal] = field(default_factory=list)
    #: Rounds of this case when --repeat is not given (None: the bench's default).
    rounds: int | None = None


# --- helpers ------------------------------------------------------------------------------------


def delivery_rate(result: dict[str, Any], count: int, who: str) -> float:
    """Messages per second from a host's monitor result; a short count fails the run."""
    if result["count"] != count:
        raise BenchError(f"{who}: received {result['count']} of {count} (timed out: {result['timed_out']})")
    moved = result["count"] - result["c_first"]
    span = result["t_last"] - result["t_first"]
    if moved <= 0 or span <= 0:
        return float(count) / max(span, 1e-3)  # a run too short to time: --quick sizes
    return moved / span


def cpu_per_msg(result: dict[str, Any]) -> float | None:
    """CPU µs the receiver's process spent per message, over the same span as its rate."""
    moved = result["count"] - (result["c_first"] or 0)
    if result.get("cpu_s") is None or moved <= 0:
        return None
    return result["cpu_s"] / moved * 1e6


def mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def with_cpu(figures: dict[str, Any], cpu_us: float | None) -> dict[str, float]:
    """Add ``cpu_us`` (CPU µs a message) when the party has a process of its own (not in --threads)."""
    if cpu_us is not None:
        figures["cpu_us"] = cpu_us
    return figures


def check_clean(snapshot: dict[str, Any], who: str, *zero: str) -> None:
    counters = snapshot["counters"]
    bad = {k: counters.get(k) for k in ("rejected", *zero) if counters.get(k)}
    if bad:
        raise BenchError(f"{who}: {bad}")


def oneshot_ok(party: Any, timeout: float, who: str) -> None:
    out = party.wait_exited(timeout)
    if out.get("rc") != 0:
        raise BenchError(f"{who} exited with {out.get('rc')}: {out.get('error')}")


def one_shot_run(
    la: Launcher,
    receiver: Any,
    count: int,
    timeout: float,
    start: Callable[[], Any],
    who: str,
    counter: str = "received",
) -> dict:
    """Arm ``receiver``, start a one-shot sender, wait until every message arrived and the sender exited 0."""
    receiver.arm(count, timeout, counter)
    sender = start()
    try:
        result = receiver.result(timeout)
        oneshot_ok(sender, 30, who)
    finally:
        la.stop(sender)
    return result


def topics_for(key: str) -> list[str]:
    """Four topics private to one variant (so variants never receive each other's messages)."""
    return [f"cat{letter}.{key.replace('+', '-')}" for letter in TOPIC_LETTERS]


# --- 1. broker forwarding throughput --------------------------------------------------------------


def broker_variants(env: Env, *baselines: tuple[str, str], label: str) -> list[tuple[str, str, str | None]]:
    """(key, label, lab) of the broker node, the baselines, and one broker per --lab that changes it."""
    out: list[tuple[str, str, str | None]] = [("broker", label, None), *((k, lbl, None) for k, lbl in baselines)]
    return out + [(f"broker+{lab}", f"{label}, lab {lab}", lab) for lab in env.labs_for("broker")]


def start_middle(la: Launcher, key: str, lab: str | None, front: str, back: str, tag: str) -> Any:
    """What sits between clients and workers: the broker node (or its lab variant) or a baseline loop."""
    if key.startswith("broker"):
        benv = {"FRONTEND_BIND": front, "BACKEND_BIND": back}
        return la.node("broker", f"broker-{tag}-{front[-5:]}", benv, lab=lab)
    return la.host(f"{key}-{tag}", {"baseline": key, "args": {"frontend": front, "backend": back}})


@contextmanager
def broker_throughput(env: Env) -> Iterator[list[Variant]]:
    """DEALER client (window of WINDOW requests) -> middle -> Python echo worker, one message = a round trip."""
    la = env.launcher
    variants, loads = [], []
    middles = broker_variants(env, ("minloop", "minimal poll loop"), ("proxy", "zmq.proxy"), label="broker node")
    for key, label, lab in middles:
        front, back = tcp(), tcp()
        middle = start_middle(la, key, lab, front, back, "tp")
        la.host(f"echo-{key}", {"baseline": "swapecho", "args": {"connect": back}})
        load = DealerLoad(la.ctx, front)
        loads.append(load)
        load.run(min(200, env.size), 64, WINDOW, 30)  # the whole path is up before anything is timed

        def measure(payload: int, load: DealerLoad = load, middle: Any = middle) -> dict[str, float]:
            n = env.n(1.0 if payload <= 1024 else 0.5)
            cpu0 = middle.cpu()
            figures = load.run(n, payload, WINDOW, env.timeout(n))
            cpu1 = middle.cpu()
            return with_cpu(figures, None if cpu0 is None else (cpu1 - cpu0) / n * 1e6)

        variants.append(Variant(key, label, measure, "broker" if lab else None))
    try:
        yield variants
    finally:
        for load in loads:
            load.close()


# --- 2. request latency -------------------------------------------------------------------------


@contextmanager
def request_latency(env: Env) -> Iterator[list[Variant]]:
    """REQ client -> middle -> worker node (REP), one request at a time; the same worker node behind each."""
    la = env.launcher
    clients = []
    variants = []
    middles = broker_variants(env, ("proxy", "via zmq.proxy"), ("direct", "direct REQ->REP"), label="via broker node")
    for key, label, lab in middles:
        if key == "direct":
            worker_end = tcp()
            client = ReqLatency(la.ctx, bind=worker_end)
        else:
            front, worker_end = tcp(), tcp()
            start_middle(la, key, lab, front, worker_end, "lat")
            client = ReqLatency(la.ctx, connect=front)
        la.node("worker", f"worker-lat-{key}", {"BROKER_BACKEND": worker_end})
        clients.append(client)
        client.run(20, 64, 30, warmup=0)

        def measure(payload: int, client: ReqLatency = client) -> dict[str, float]:
            n = env.n(0.25)
            return client.run(n, payload, 30, warmup=0 if env.quick else 100)

        variants.append(Variant(key, label, measure, "broker" if lab else None))
    try:
        yield variants
    finally:
        for c in clients:
            c.close()


# --- 3. pipeline --------------------------------------------------------------------------------


def _task_frame_size(pad: int = 0) -> int:
    """Size of a ventilator task on the wire (with PAYLOAD_BYTES=pad), so the bare chain moves frames of that size."""
    body = {"batch": "ventilator-bench-20250101T000000.000", "n": 12345, "work_ms": 0.0}
    if pad:
        body["pad"] = bytes(pad)
    return len(wire.make("task", "ventilator-bench.a1b2c3:12345", body, "ventilator-bench"))


#: Bytes a ``pad`` field adds to a body besides its payload: the key (fixstr "pad") and a bin16 header.
PAD_OVERHEAD = 7


def pad_for(payload: int | None, own: int) -> int:
    """PAYLOAD_BYTES that make a sender's frame of ``own`` bytes about ``payload`` bytes (None: its own size)."""
    return 0 if payload is None else max(0, payload - own - PAD_OVERHEAD)


def _event_frame_size() -> int:
    """Size of a publisher's event (no padding) on the wire."""
    body = {"run": "publisher-bench.a1b2c3", "topic": "catA", "seq": 1234, "n": 12345, "hat": "hatA"}
    return len(wire.make("event", "publisher-bench.a1b2c3:12345", body, "publisher-bench"))


class NodePipeline:
    """ventilator (a process per run) -> ``workers`` pipeworker nodes -> sink node (timed by its host)."""

    def __init__(
        self, env: Env, key: str, workers: int, task_ms: float, lab: str | None = None, tasks: dict | None = None
    ) -> None:
        la = self.la = env.launcher
        self.env, self.key, self.workers, self.task_ms, self.lab = env, key, workers, task_ms, lab
        #: Settings of the task transport, given to the ventilator and the pipeworkers (BACKEND=rabbitmq ...).
        self.tasks = tasks or {}
        self.vent, sink_end = tcp(), tcp()
        self.sink_end = sink_end
        spec: dict[str, Any] = {"node": "sink", "env": {"SINK_BIND": sink_end}}
        if env.lab("sink", lab):
            spec["lab"] = lab
        self.sink = la.host(f"sink-{key}", spec)
        pw_env = {"VENT_ENDPOINT": self.vent, "SINK_ENDPOINT": sink_end, **self.tasks}
        for i in range(workers):
            la.node("pipeworker", f"pw-{key}-{i}", pw_env, lab=env.lab("pipeworker", lab))

    def measure(self, count: int, pad: int = 0) -> dict[str, float]:
        result = self.run(count, pad)
        rate = delivery_rate(result, count, f"sink-{self.key}")
        return with_cpu({"msgs_per_s": rate, "count": count}, cpu_per_msg(result))

    def run(self, count: int, pad: int = 0) -> dict[str, Any]:
        """One batch of ``count`` tasks (``pad``: PAYLOAD_BYTES), checked at the sink's ledger; the host's result."""
        batch = f"bench-{self.key}-{self.env.run_id()}"
        timeout = self.env.timeout(count, 200.0 if self.task_ms else 2000.0)
        env = {
            "VENT_BIND": self.vent,
            "SINK_ENDPOINT": self.sink_end,
            "TASKS": str(count),
            "TASK_MS": str(self.task_ms),
            "BATCH_ID": batch,
            "MIN_PIPEWORKERS": str(self.workers),
            "WAIT_TIMEOUT": "30",
            "PAYLOAD_BYTES": str(pad),
            **self.tasks,
        }
        lab = self.env.lab("ventilator", self.lab)

        def start() -> Any:
            return self.la.node("ventilator", f"vent-{self.key}", env, oneshot=True, lab=lab)

        result = one_shot_run(self.la, self.sink, count, timeout, start, f"ventilator {batch}", counter="results")
        if result["count"] != count:
            raise BenchError(
                f"sink-{self.key}: received {result['count']} of {count} (timed out: {result['timed_out']})"
            )
        ledger = result["extra"]["batches"].get(batch, {})
        if ledger.get("distinct") != count or ledger.get("duplicates") or ledger.get("missing"):
            raise BenchError(f"sink-{self.key}: batch {batch} ledger is not clean: {ledger}")
        check_clean(result, f"sink-{self.key}")
        return result


class BareChain:
    """PUSH source (a process per run) -> relay -> PULL sink: the least a PUSH/PULL pipeline can do."""

    def __init__(self, env: Env, key: str) -> None:
        la = self.la = env.launcher
        self.env, self.key = env, key
        self.src, sink_end = tcp(), tcp()
        self.sink = la.host(f"pullsink-{key}", {"baseline": "pullsink", "args": {"bind": sink_end}})
        la.host(f"relay-{key}", {"baseline": "relay", "args": {"source": self.src, "sink": sink_end}})
        self.first = 0

    def measure(self, count: int, size: int) -> dict[str, float]:
        timeout = self.env.timeout(count)
        args = {"bind": self.src, "peers": 1, "count": count, "size": size, "first": self.first}
        spec = {"baseline": "pushsource", "args": args, "oneshot": True}
        result = one_shot_run(
            self.la, self.sink, count, timeout, lambda: self.la.host(f"push-{self.key}", spec), "push"
        )
        self.first += count
        rate = delivery_rate(result, count, f"pullsink-{self.key}")
        if result["extra"]["distinct"] != self.first:
            raise BenchError(f"pullsink-{self.key}: {result['extra']['distinct']} distinct of {self.first} sent")
        return with_cpu({"msgs_per_s": rate, "count": count}, cpu_per_msg(result))


@contextmanager
def pipeline_noop(env: Env) -> Iterator[list[Variant]]:
    nodes, chain = NodePipeline(env, "noop", 1, 0.0), BareChain(env, "chain")
    own = _task_frame_size()

    def n_of(payload: int | None) -> int:
        return env.n(1.0 if payload is None else 0.5)

    def pad(payload: int | None) -> int:
        return pad_for(payload, own)

    variants = [
        Variant("nodes", "ventilator→pipeworker→sink", lambda p: nodes.measure(n_of(p), pad(p))),
        Variant("chain", "bare PUSH→relay→PULL", lambda p: chain.measure(n_of(p), _task_frame_size(pad(p)))),
    ]
    for lab in env.labs_for("ventilator", "pipeworker", "sink"):
        pipe = NodePipeline(env, f"noop-{lab}", 1, 0.0, lab)
        variants.append(
            Variant(f"nodes+{lab}", f"nodes, lab {lab}", lambda p, q=pipe: q.measure(n_of(p), pad(p)), "nodes")
        )
    yield variants


@contextmanager
def pipeline_cpu(env: Env) -> Iterator[list[Variant]]:
    one, two = NodePipeline(env, "cpu1", 1, 1.0), NodePipeline(env, "cpu2", 2, 1.0)
    n = env.n(0.05)
    yield [
        Variant("pw1", "1 pipeworker, TASK_MS=1", lambda _p: one.measure(n)),
        Variant("pw2", "2 pipeworkers, TASK_MS=1", lambda _p: two.measure(n)),
    ]


# --- 4. Redis fan-out ---------------------------------------------------------------------------


class Fan:
    """``k`` subscribers on four private topics, fed by one source in the bench process.

    The subscribers are paused (SIGSTOP) while the whole batch is handed to the transport and resumed
    together, so the transport holds the batch in front of them and each figure is the subscriber's
    own drain rate: not the source's rate, nor a share of the CPU the source took meanwhile.
    """

    def __init__(self, env: Env, key: str, k: int) -> None:
        self.env, self.key, self.k = env, key, k
        self.topics = topics_for(key)
        self.subs: list[Any] = []

    def publish(self, batch: list[tuple[bytes, bytes]]) -> None:
        raise NotImplementedError

    def measure(self, payload: int) -> dict[str, float]:
        n = self.env.n(1.0 if payload <= 1024 else 0.25)
        batch = frames.events(n, self.topics, payload, self.env.run_id())
        timeout = self.env.timeout(n, 500.0)
        for sub in self.subs:
            sub.arm(n, timeout)
            sub.pause()
        try:
            self.publish(batch)
        finally:
            for sub in self.subs:
                sub.resume()
        rates, cpus = [], []
        for sub in self.subs:
            result = sub.result(timeout)
            rates.append(delivery_rate(result, n, sub.name))
            cpus.append(cpu_per_msg(result))
            check_clean(result, sub.name, "gaps", "duplicates", "out_of_order", "unexpected")
        figures = {"msgs_per_s": sum(rates) / len(rates), "count": n}
        if self.k > 1:
            figures["slowest_per_s"] = min(rates)
        return with_cpu(figures, mean(cpus))


class RedisFan(Fan):
    """Subscriber nodes or bare listen loops; the source pipelines PUBLISH (this server has no buffer limit)."""

    def __init__(self, env: Env, client: Any, key: str, k: int, spec: Callable[[list[str], int], dict]) -> None:
        super().__init__(env, key, k)
        self.subs = [env.launcher.host(f"{key}-{i}", spec(self.topics, i)) for i in range(k)]
        self.source = RedisSource(client)
        self.source.wait_subscribers(self.topics, k, 30)

    def publish(self, batch: list[tuple[bytes, bytes]]) -> None:
        _t0, receivers = self.source.publish(batch)
        if receivers != len(batch) * self.k:
            raise BenchError(f"{self.key}: Redis delivered to {receivers} receivers, expected {len(batch) * self.k}")


@contextmanager
def redis_fanout(env: Env) -> Iterator[list[Variant]]:
    redis = redis_server(env.launcher.logdir)
    client = redis.client(timeout=10)
    try:
        url, pw = redis.url, redis.password

        def node(topics: list[str], i: int) -> dict:
            return {"node": "subscriber", "env": {"REDIS_URL": url, "REDIS_PASSWORD": pw, "TOPICS": ",".join(topics)}}

        def bare(parser: str) -> Callable[[list[str], int], dict]:
            def spec(topics: list[str], i: int) -> dict:
                ctl = f"ctl.{topics[0]}.{i}"
                args = {"url": url, "password": pw, "topics": topics, "control": ctl, "parser": parser}
                return {"baseline": "redis_listen", "args": args}

            return spec

        def lab_node(lab: str) -> Callable[[list[str], int], dict]:
            return lambda topics, i: {**node(topics, i), "lab": lab}

        fans: list[tuple[str, str, int, Callable[[list[str], int], dict], str | None]] = [
            ("sub1", "1 subscriber node", 1, node, None),
            ("listen1", "1 bare listen() loop", 1, bare("hiredis"), None),
            ("sub4", "4 subscriber nodes", 4, node, None),
            ("listen4", "4 bare listen() loops", 4, bare("hiredis"), None),
            ("listen1py", "1 bare listen(), Python parser", 1, bare("python"), None),
        ]
        for lab in env.labs_for("subscriber"):
            fans.append((f"sub1+{lab}", f"1 subscriber, lab {lab}", 1, lab_node(lab), "sub1"))
            fans.append((f"sub4+{lab}", f"4 subscribers, lab {lab}", 4, lab_node(lab), "sub4"))
        variants = []
        for key, label, k, spec, lab_of in fans:
            fan = RedisFan(env, client, key, k, spec)
            variants.append(Variant(key, label, fan.measure, lab_of))
        yield variants
    finally:
        env.launcher.stop_all()  # subscribers before their server
        client.close()
        redis.stop()


@contextmanager
def redis_publisher(env: Env) -> Iterator[list[Variant]]:
    """publisher node vs a bare PUBLISH loop (one round trip each), into one bare listen() loop."""
    redis = redis_server(env.launcher.logdir)
    client = redis.client(timeout=10)
    la = env.launcher
    try:
        url, pw = redis.url, redis.password
        variants = []
        for key, label in (("publisher", "publisher node"), ("publish", "bare PUBLISH loop")):
            topics = topics_for(key)
            args = {"url": url, "password": pw, "topics": topics, "control": f"ctl.{key}", "parser": "hiredis"}
            listener = la.host(f"listen-{key}", {"baseline": "redis_listen", "args": args})
            RedisSource(client).wait_subscribers(topics, 1, 30)

            def measure(payload: int | None, key: str = key, topics: list[str] = topics, listener: Any = listener):
                n = env.n(0.5 if payload is None else 0.25)
                pad = pad_for(payload, _event_frame_size())

                def start() -> Any:
                    if key == "publisher":
                        penv = {"REDIS_URL": url, "REDIS_PASSWORD": pw, "MESSAGES": str(n), "TOPICS": ",".join(topics)}
                        penv |= {"MIN_SUBSCRIBERS": "1", "PAYLOAD_BYTES": str(pad)}
                        return la.node("publisher", "publisher-bench", penv, oneshot=True)
                    pargs = {"url": url, "password": pw, "topics": topics, "count": n, "size": payload or 0}
                    return la.host("publish-bench", {"baseline": "redis_publish", "args": pargs, "oneshot": True})

                result = one_shot_run(la, listener, n, env.timeout(n, 500.0), start, key)
                return {"msgs_per_s": delivery_rate(result, n, f"listen-{key}"), "count": n}

            variants.append(Variant(key, label, measure))
        yield variants
    finally:
        la.stop_all()
        client.close()
        redis.stop()


# --- 5. ZeroMQ PUB/SUB fan-out ------------------------------------------------------------------


class ZmqFan(Fan):
    """zsub nodes or bare SUB loops of one XPUB source (SNDHWM 0: the batch queues, nothing is dropped)."""

    def __init__(self, env: Env, key: str, k: int, node: bool) -> None:
        super().__init__(env, key, k)
        end = tcp()
        self.source = ZmqSource(env.launcher.ctx, end)
        if node:
            spec = {"node": "zsub", "env": {"ZPUB_ENDPOINT": end, "TOPICS": ",".join(self.topics)}}
        else:
            spec = {"baseline": "zsub", "args": {"connect": end, "topics": self.topics}}
        self.subs = [env.launcher.host(f"{key}-{i}", spec) for i in range(k)]
        self.source.wait_hellos(k, 30)

    def publish(self, batch: list[tuple[bytes, bytes]]) -> None:
        self.source.publish(batch)


@contextmanager
def zmq_fanout(env: Env) -> Iterator[list[Variant]]:
    fans = [
        ("zsub1", "1 zsub node", 1, True),
        ("sub1", "1 bare SUB loop", 1, False),
        ("zsub4", "4 zsub nodes", 4, True),
        ("sub4", "4 bare SUB loops", 4, False),
    ]
    made = [ZmqFan(env, key, k, node) for key, _label, k, node in fans]
    try:
        yield [Variant(key, label, fan.measure) for (key, label, _k, _n), fan in zip(fans, made, strict=True)]
    finally:
        for fan in made:
            fan.source.close()


@contextmanager
def zmq_publisher(env: Env) -> Iterator[list[Variant]]:
    """zpub node vs a bare XPUB loop (prebuilt events), each into one bare SUB loop; a process per run."""
    la = env.launcher
    variants = []
    for key, label in (("zpub", "zpub node"), ("publoop", "bare PUB loop")):
        end, topics = tcp(), topics_for(key)
        sub = la.host(f"sub-{key}", {"baseline": "zsub", "args": {"connect": end, "topics": topics}})

        def measure(payload: int | None, key: str = key, end: str = end, topics: list[str] = topics, sub: Any = sub):
            n = env.n(1.0 if payload is None else 0.5)
            pad = pad_for(payload, _event_frame_size())

            def start() -> Any:
                if key == "zpub":
                    zenv = {"ZPUB_BIND": end, "MESSAGES": str(n), "TOPICS": ",".join(topics), "MIN_SUBSCRIBERS": "1"}
                    zenv["PAYLOAD_BYTES"] = str(pad)
                    return la.node("zpub", "zpub-bench", zenv, oneshot=True)
                pargs = {"bind": end, "count": n, "topics": topics, "size": payload or 0, "peers": 1}
                return la.host("publoop-bench", {"baseline": "publoop", "args": pargs, "oneshot": True})

            result = one_shot_run(la, sub, n, env.timeout(n), start, key)
            return {"msgs_per_s": delivery_rate(result, n, f"sub-{key}"), "count": n}

        variants.append(Variant(key, label, measure))
    yield variants


# --- 6. against the task queues a user would pick instead -----------------------------------------


class ProjectSide:
    """The project's answer to a task queue: the pipeline for throughput, request-reply for latency."""

    def __init__(self, env: Env, k: int) -> None:
        self.env, self.k = env, k
        self.pipe = NodePipeline(env, f"peers{k}", k, 0.0)
        self.req: ReqLatency | None = None
        if k == 1:
            la = env.launcher
            front, back = tcp(), tcp()
            start_middle(la, "broker", None, front, back, "peers")
            la.node("worker", "worker-peers", {"BROKER_BACKEND": back})
            self.req = ReqLatency(la.ctx, connect=front)
            self.req.run(20, 64, 30, warmup=0)

    def measure(self, n: int, n_lat: int) -> dict[str, float]:
        from bench.host import INTERVAL

        result = self.pipe.run(n)
        # From the first submit: the span starts at the monitor's sample *before* the first result
        # arrived (at most INTERVAL earlier, about when the ventilator sent its first task).
        span = result["t_last"] - result["t_first"] + INTERVAL
        figures = {"msgs_per_s": n / span, "sink_window_per_s": delivery_rate(result, n, self.pipe.key), "count": n}
        if self.req is not None:
            lat = self.req.run(n_lat, 64, 30, warmup=0 if self.env.quick else 10)
            figures.update(p50_us=lat["p50_us"], p99_us=lat["p99_us"])
        return figures

    def close(self) -> None:
        if self.req is not None:
            self.req.close()


@contextmanager
def peers(env: Env) -> Iterator[list[Variant]]:
    """Celery, Dramatiq, RQ (K = 1 and 2 worker processes) and the project's pipeline/broker, interleaved."""
    from bench.peers import PEERS

    la = env.launcher
    n, n_lat = env.n(1 / 50), env.n(1 / 200)  # default size: 400 tasks, 100 one-at-a-time tasks a round
    redis = redis_server(la.logdir)
    made: list[Any] = []
    sides: list[ProjectSide] = []
    try:
        # every peer configuration starts at once (they boot in parallel), then each must answer
        lifetime = 120 + env.repeat * 10 * env.timeout(n, 100.0)
        db = 0
        for k in (1, 2):
            for cls in PEERS:
                db += 1
                made.append(cls(redis, db, k, la.logdir, lifetime))
        sides = [ProjectSide(env, 1), ProjectSide(env, 2)]
        for peer in made:
            peer.wait_ready(60)
        variants = []
        for k, side in zip((1, 2), sides, strict=True):
            label = "pipeline, 1 pipeworker / broker" if k == 1 else "pipeline, 2 pipeworkers"
            variants.append(Variant(f"project{k}", label, lambda _p, s=side: s.measure(n, n_lat)))
            for peer in made:
                if peer.k != k:
                    continue

                def measure(_payload: int | None, peer: Any = peer) -> dict[str, float]:
                    peer.check_alive()
                    figures = peer.throughput(n, env.timeout(n, 50.0))
                    if peer.k == 1 and "lost" not in figures:
                        figures.update(peer.latency(n_lat, 0 if env.quick else 10, 30.0))
                    return figures

                what = f"{peer.k} worker process" + ("es" if peer.k > 1 else "")
                variants.append(Variant(peer.name, f"{peer.label}, {what}", measure))
        yield variants
    finally:
        for side in sides:
            side.close()
        la.stop_all()
        for peer in made:  # every group at once, then each is waited for (SIGKILL after a grace period)
            peer.begin_close()
        for peer in made:
            peer.close()
        redis.stop()


# --- 7. RabbitMQ beside Redis and PUSH/PULL (issue 14) -------------------------------------------------


@contextmanager
def rabbitmq_server(env: Env) -> Iterator[Any]:
    """A private rabbitmq-server (ops.rabbit: free ports, own epmd, stopped by pid) for one case."""
    from ops.rabbit import RabbitServer, rabbit_missing

    missing = rabbit_missing()
    if missing:
        raise BenchError(missing)
    workdir = env.launcher.logdir / f"rabbitmq-{env.run_id()}"
    workdir.mkdir(parents=True)
    server = RabbitServer(workdir).start()
    try:
        yield server
    finally:
        env.launcher.stop_all()  # its clients before the server
        server.stop()


@contextmanager
def rabbitmq_pipeline(env: Env) -> Iterator[list[Variant]]:
    """The same pipeline nodes with their tasks over PUSH/PULL or a durable RabbitMQ queue (acks, confirms)."""
    with rabbitmq_server(env) as rabbit:
        amqp = {"BACKEND": "rabbitmq", "AMQP_URL": rabbit.url, "TASK_QUEUE": f"bench.{env.run_id()}"}
        zmq_pipe, amqp_pipe = NodePipeline(env, "rzmq", 1, 0.0), NodePipeline(env, "ramqp", 1, 0.0, tasks=amqp)
        own = _task_frame_size()

        def measure(pipe: NodePipeline) -> Callable[[int | None], dict[str, float]]:
            return lambda p: pipe.measure(env.n(0.1 if p is None else 0.05), pad_for(p, own))

        yield [
            Variant("pushpull", "tasks over PUSH/PULL", measure(zmq_pipe)),
            Variant("rabbitmq", "tasks over a durable RabbitMQ queue", measure(amqp_pipe)),
        ]


@contextmanager
def rabbitmq_pubsub(env: Env) -> Iterator[list[Variant]]:
    """publisher node -> 1 subscriber node, through Redis PUBLISH/SUBSCRIBE or a RabbitMQ topic exchange."""
    redis = redis_server(env.launcher.logdir)
    la = env.launcher
    try:
        with rabbitmq_server(env) as rabbit:
            backends = {
                "redis": ("through Redis", {"REDIS_URL": redis.url, "REDIS_PASSWORD": redis.password}),
                "rabbitmq": ("through RabbitMQ", {"BACKEND": "rabbitmq", "AMQP_URL": rabbit.url}),
            }
            variants = []
            for key, (label, conn) in backends.items():
                topics = topics_for(f"r{key}")
                sub = la.host(f"sub-{key}", {"node": "subscriber", "env": {**conn, "TOPICS": ",".join(topics)}})

                def measure(payload: int | None, key: str = key, conn: dict = conn, topics: list = topics, sub=sub):
                    n = env.n(0.1 if payload is None else 0.05)
                    penv = {**conn, "MESSAGES": str(n), "TOPICS": ",".join(topics), "MIN_SUBSCRIBERS": "1"}
                    penv["PAYLOAD_BYTES"] = str(pad_for(payload, _event_frame_size()))

                    def start() -> Any:
                        return la.node("publisher", f"publisher-{key}", penv, oneshot=True)

                    result = one_shot_run(la, sub, n, env.timeout(n, 200.0), start, f"publisher ({key})")
                    check_clean(result, f"sub-{key}", "gaps", "duplicates", "out_of_order", "unexpected")
                    return {"msgs_per_s": delivery_rate(result, n, f"sub-{key}"), "count": n}

                variants.append(Variant(key, label, measure))
            yield variants
    finally:
        redis.stop()


# --- the list ---------------------------------------------------------------------------------------

T, P50, P99, CPU = "msgs_per_s", "p50_us", "p99_us", "cpu_us"

CASES = [
    Case(
        "broker-throughput",
        "1. Broker forwarding throughput (round trips/s)",
        "DEALER client with 128 requests in flight -> middle -> Python echo worker; each in its own process",
        [T, CPU],
        broker_throughput,
        goals=[
            Goal("broker", "minloop", T, ">=", 1.0),
            Goal("broker", "proxy", T, ">=", 0.8),
            Goal("broker", "minloop", CPU),
        ],
    ),
    Case(
        "request-latency",
        "2. Request round-trip latency (µs)",
        "REQ client -> middle -> worker node (REP), one request at a time; each in its own process",
        [P50, P99],
        request_latency,
        goals=[Goal("broker", "proxy", P50, "<=", 1.3), Goal("broker", "direct", P99, "<=", 3.0)],
    ),
    Case(
        "pipeline-noop",
        "3a. Pipeline, no-op tasks (tasks/s at the sink)",
        "ventilator (a process per batch) -> 1 pipeworker -> sink, vs the same chain of bare PUSH/PULL loops;"
        " frames: the ventilator's own (~100 B), and padded to 4 KiB with PAYLOAD_BYTES",
        [T, CPU],
        pipeline_noop,
        payloads=(None, 4096),
        goals=[Goal("nodes", "chain", T, ">=", 0.5), Goal("nodes", "chain", CPU, "<=", 2.0)],
    ),
    Case(
        "pipeline-cpu",
        "3b. Pipeline, CPU-bound tasks of 1 ms (tasks/s at the sink)",
        "ventilator -> 1 or 2 pipeworker processes (busy work) -> sink",
        [T],
        pipeline_cpu,
        payloads=(None,),
        goals=[Goal("pw2", "pw1", T, ">=", 1.6)],
    ),
    Case(
        "redis-fanout",
        "4a. Redis fan-out, delivery rate per subscriber (msgs/s)",
        "pipelined PUBLISH source (bench) -> own redis-server -> 1 or 4 subscribers, each in its own process",
        [T, "slowest_per_s", CPU],
        redis_fanout,
        goals=[
            Goal("sub1", "listen1", T, ">=", 0.8),
            Goal("sub4", "listen4", T, ">=", 0.8),
            Goal("sub1", "listen1", CPU),
            Goal("listen1py", "listen1", T),
        ],
    ),
    Case(
        "redis-publisher",
        "4b. Redis publisher (msgs/s delivered to one bare listener)",
        "publisher node or bare PUBLISH loop (a process per run, one round trip per message) -> 1 bare listen()",
        [T],
        redis_publisher,
        payloads=(None, 4096),
        goals=[Goal("publisher", "publish", T)],
    ),
    Case(
        "zmq-fanout",
        "5a. ZeroMQ PUB/SUB fan-out, delivery rate per subscriber (msgs/s)",
        "XPUB source (bench, SNDHWM unlimited) -> 1 or 4 subscribers, each in its own process",
        [T, "slowest_per_s", CPU],
        zmq_fanout,
        goals=[Goal("zsub1", "sub1", T), Goal("zsub4", "sub4", T), Goal("zsub1", "sub1", CPU)],
    ),
    Case(
        "zmq-publisher",
        "5b. ZeroMQ publisher (msgs/s delivered to one bare SUB)",
        "zpub node or bare XPUB loop (a process per run) -> 1 bare SUB loop",
        [T],
        zmq_publisher,
        payloads=(None, 4096),
        goals=[Goal("zpub", "publoop", T)],
    ),
    Case(
        "peers",
        "6. Against task queues: Celery, Dramatiq, RQ (tasks/s from the first submit; µs submit -> result)",
        "the same no-op task, N tasks, K = 1 or 2 worker processes, one private redis-server; every result"
        " verified once. Project: ventilator -> K pipeworkers -> sink (throughput), REQ -> broker -> worker"
        " node (latency)",
        [T, P50, P99, "lost", "duplicates"],
        peers,
        payloads=(None,),
        rounds=3,
        goals=[
            Goal("project1", "celery1", T, ">=", 50),
            Goal("project1", "dramatiq1", T, ">=", 25),
            Goal("project1", "rq1", T, ">=", 100),
            Goal("project2", "celery2", T, ">=", 50),
            Goal("project2", "dramatiq2", T, ">=", 25),
            Goal("project2", "rq2", T, ">=", 100),
            Goal("project1", "celery1", P50, "<=", 0.1),
            Goal("project1", "dramatiq1", P50, "<=", 0.1),
            Goal("project1", "rq1", P50, "<=", 0.1),
        ],
    ),
    Case(
        "rabbitmq-pipeline",
        "7a. Pipeline tasks over RabbitMQ vs PUSH/PULL (tasks/s at the sink)",
        "ventilator (a process per batch) -> 1 pipeworker -> sink; tasks over PUSH/PULL, or a durable"
        " RabbitMQ queue (persistent tasks, publisher confirms, acks after the result, PREFETCH 10);"
        " own private rabbitmq-server",
        [T],
        rabbitmq_pipeline,
        payloads=(None, 4096),
        rounds=3,
        goals=[Goal("rabbitmq", "pushpull", T)],
    ),
    Case(
        "rabbitmq-pubsub",
        "7b. Pub/sub through RabbitMQ vs Redis (msgs/s at one subscriber)",
        "publisher node (a process per run, a confirm or round trip per message) -> Redis PUBLISH or a"
        " RabbitMQ topic exchange -> 1 subscriber node; own private servers",
        [T],
        rabbitmq_pubsub,
        payloads=(None, 4096),
        rounds=3,
        goals=[Goal("rabbitmq", "redis", T)],
    ),
]
