"""Plain ZeroMQ subscriber: a SUB printing [topic, payload] for COUNT messages; exit 1 on timeout."""

import argparse
import sys
import time

import zmq

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("topics", nargs="*", default=[""], help="topic prefixes (default: every topic)")
p.add_argument("--connect", default="tcp://127.0.0.1:5559")
p.add_argument("--count", type=int, default=4, help="messages to print before exiting")
p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for them")
args = p.parse_args()

sub = zmq.Context.instance().socket(zmq.SUB)
sub.connect(args.connect)
for topic in args.topics:
    sub.subscribe(topic.encode())
deadline = time.monotonic() + args.timeout
for got in range(args.count):
    if not sub.poll(max(0.0, deadline - time.monotonic()) * 1000):
        sys.exit(f"timeout: {got}/{args.count} messages in {args.timeout}s")
    topic, *payload = sub.recv_multipart()
    print(topic.decode(errors="replace"), *(f.decode(errors="replace") for f in payload), flush=True)
