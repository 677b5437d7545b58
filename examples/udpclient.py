"""Plain UDP client (the chapter's): sends ``message #N`` COUNT times to the udpserver and prints each echo.

    python examples/udpclient.py [HOST:PORT] [COUNT] [TIMEOUT_S]   # default 127.0.0.1:5561 10 2

UDP promises nothing: a datagram without its echo within TIMEOUT_S is counted lost, never re-sent.
Prints ``sent N answered A lost L`` last; exits 1 if any was lost.
"""

import socket
import sys

host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:5561").rpartition(":")
count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
answered = 0
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.settimeout(timeout)
    for n in range(1, count + 1):
        sock.sendto(f"message #{n}".encode(), (host, int(port)))
        try:
            echo = sock.recv(65536).decode(errors="replace")
        except OSError:  # a timeout, or the port is closed (ICMP): the datagram or its echo is gone
            echo = f"message #{n}: no echo within {timeout:g}s (lost)"
        answered += echo == f"message #{n}"
        print(echo, flush=True)
print(f"sent {count} answered {answered} lost {count - answered}")
sys.exit(0 if answered == count else 1)
