"""Plain REQ client (the chapter's): sends ``message #N`` COUNT times and prints each reply.

    python examples/reqclient.py [ENDPOINT] [COUNT] [TIMEOUT_S]   # default tcp://127.0.0.1:5555 10 5

Connects to the broker's frontend. Exits 1 if a reply does not come within TIMEOUT_S.
"""

import sys

import zmq

endpoint = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:5555"
count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
timeout_ms = int(float(sys.argv[3]) * 1000) if len(sys.argv) > 3 else 5000

with zmq.Context() as ctx, ctx.socket(zmq.REQ) as sock:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
    sock.connect(endpoint)
    for n in range(1, count + 1):
        sock.send_string(f"message #{n}")
        try:
            print(sock.recv_string(), flush=True)
        except zmq.Again:
            sys.exit(f"no reply to message #{n} within {timeout_ms} ms from {endpoint}")
