"""Plain REP server (the chapter's): answers each request with ``Stop saying: <request>``.

    python examples/repserver.py [ENDPOINT] [COUNT] [TIMEOUT_S]   # default tcp://127.0.0.1:5556 0 30

Connects to the broker's backend (proxy mode) as a worker. Exits 0 after COUNT requests (0: never),
1 if no request comes for TIMEOUT_S.
"""

import sys

import zmq

endpoint = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:5556"
count = int(sys.argv[2]) if len(sys.argv) > 2 else 0
timeout_ms = int(float(sys.argv[3]) * 1000) if len(sys.argv) > 3 else 30000

with zmq.Context() as ctx, ctx.socket(zmq.REP) as sock:
    sock.setsockopt(zmq.LINGER, 1000)  # let the last reply go out
    sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
    sock.connect(endpoint)
    served = 0
    while count == 0 or served < count:
        try:
            request = sock.recv()
        except zmq.Again:
            sys.exit(f"no request within {timeout_ms} ms on {endpoint} after {served} served")
        sock.send(b"Stop saying: " + request)
        served += 1
