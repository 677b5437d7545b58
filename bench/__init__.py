"""``python -m bench``: throughput and latency of every pattern, as ratios against baselines run beside it.

Each case runs the project's nodes and one or more minimal baselines (``zmq.proxy``, a hand-written
poll loop, a bare PUSH/PULL chain, a bare redis-py ``listen()`` loop, a bare PUB/SUB pair) on
127.0.0.1, interleaved A B C A B C ... so that drift on a noisy 2-core machine hits every variant
alike, and reports medians, spreads and paired ratios against the goals of the issue. Every
measurement verifies that every message it sent arrived; one that loses messages fails the run.

Modules: :mod:`bench.procs` (child processes, redis-server), :mod:`bench.host` (the child side: a node
or baseline in a thread plus a delivery monitor), :mod:`bench.baselines`, :mod:`bench.load` (load
generators that run in the bench process), :mod:`bench.cases`, :mod:`bench.runner`, :mod:`bench.report`.
"""
