"""Plain Redis publisher: PUBLISH hatA..hatD on channels catA..catD, COUNT rounds. Password: $REDIS_PASSWORD."""

import argparse
import os
import time

import redis

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--url", default="redis://127.0.0.1:6379/0")
p.add_argument("--password", default=os.environ.get("REDIS_PASSWORD"))
p.add_argument("--count", type=int, default=10, help="rounds of catA..catD to publish")
p.add_argument("--interval", type=float, default=0.1, help="seconds between rounds")
args = p.parse_args()

r = redis.Redis.from_url(args.url, password=args.password, socket_timeout=5, socket_connect_timeout=5)
for _ in range(args.count):
    for x in "ABCD":
        print(f"cat{x} hat{x} -> {r.publish(f'cat{x}', f'hat{x}')} subscribers")
    time.sleep(args.interval)
