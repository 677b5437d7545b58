"""Plain Redis subscriber: SUBSCRIBE catA..catD (or the channels given), print COUNT messages; exit 1 on timeout."""

import argparse
import os
import sys
import time

import redis

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("channels", nargs="*", default=["catA", "catB", "catC", "catD"])
p.add_argument("--url", default="redis://127.0.0.1:6379/0")
p.add_argument("--password", default=os.environ.get("REDIS_PASSWORD"))
p.add_argument("--count", type=int, default=4, help="messages to print before exiting")
p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for them")
args = p.parse_args()

sub = redis.Redis.from_url(args.url, password=args.password, socket_connect_timeout=5).pubsub()
sub.subscribe(*args.channels)
deadline, got = time.monotonic() + args.timeout, 0
while got < args.count and time.monotonic() < deadline:
    m = sub.get_message(ignore_subscribe_messages=True, timeout=0.1)
    if m:
        got += 1
        print(m["channel"].decode(), m["data"].decode(errors="replace"), flush=True)
sys.exit(0 if got >= args.count else f"timeout: {got}/{args.count} messages in {args.timeout}s")
