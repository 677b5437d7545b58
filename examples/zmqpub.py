"""Plain ZeroMQ publisher: a PUB that binds and sends [catX, hatX] round robin over catA..catD, COUNT messages."""

import argparse
import time

import zmq

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--bind", default="tcp://*:5563")
p.add_argument("--count", type=int, default=100, help="messages to send")
p.add_argument("--interval", type=float, default=0.01, help="seconds between messages")
args = p.parse_args()

pub = zmq.Context.instance().socket(zmq.PUB)
pub.bind(args.bind)
time.sleep(0.5)  # PUB drops what it sends before a subscriber has joined (the slow joiner)
for n in range(args.count):
    x = "ABCD"[n % 4]
    pub.send_multipart([f"cat{x}".encode(), f"hat{x}".encode()])
    time.sleep(args.interval)
pub.close(linger=1000)
