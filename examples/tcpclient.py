"""Plain TCP client with framing: COUNT messages of random sizes up to 64 KiB, each echoed whole.

    python examples/tcpclient.py [HOST:PORT] [COUNT]   # default 127.0.0.1:5562 10

TCP carries bytes, not messages: one recv() may return part of a message or parts of two. So each
message goes out as a 4-byte big-endian length and the body, and the reader loops until it has the
length, then exactly that many bytes (the chapter's single ``recv(1024)`` would cut these messages).
"""

import random
import socket
import struct
import sys


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            sys.exit(f"the server closed the connection {len(buf)} bytes into {n}")
        buf += chunk
    return buf


host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:5562").rpartition(":")
count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
with socket.create_connection((host, int(port)), timeout=10) as sock:
    for n in range(1, count + 1):
        body = f"message #{n} ".encode().ljust(random.randint(16, 65536), b".")
        sock.sendall(struct.pack("!I", len(body)) + body)
        echo = recv_exactly(sock, struct.unpack("!I", recv_exactly(sock, 4))[0])
        print(f"message #{n}: {len(body)} bytes, echoed {'whole' if echo == body else 'WRONG'}", flush=True)
        if echo != body:
            sys.exit(1)
