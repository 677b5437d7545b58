"""Plain load-balancing worker (zguide lbbroker's): a REQ socket that says READY, then answers.

    python examples/lbworker.py [ENDPOINT] [COUNT] [TIMEOUT_S]   # default tcp://127.0.0.1:5556 0 30

Connects to the backend of a broker in lru mode. Each request arrives as [client, b"", request] and
goes back as [client, b"", b"Stop saying: " + request]. Exits 0 after COUNT requests (0: never),
1 if no request comes for TIMEOUT_S.
"""

import sys

import zmq

endpoint = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:5556"
count = int(sys.argv[2]) if len(sys.argv) > 2 else 0
timeout_ms = int(float(sys.argv[3]) * 1000) if len(sys.argv) > 3 else 30000

with zmq.Context() as ctx, ctx.socket(zmq.REQ) as sock:
    sock.setsockopt(zmq.LINGER, 1000)  # let the last reply go out
    sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
    sock.connect(endpoint)
    sock.send(b"READY")
    served = 0
    while count == 0 or served < count:
        try:
            client, empty, request = sock.recv_multipart()
        except zmq.Again:
            sys.exit(f"no request within {timeout_ms} ms on {endpoint} after {served} served")
        sock.send_multipart([client, empty, b"Stop saying: " + request])
        served += 1
