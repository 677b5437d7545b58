"""The plain-socket echo pairs (issue 14): udpserver/udpclient and tcpserver/tcpclient as real processes.

Every test names exact counts: 1000 UDP requests with ``sent == answered + lost`` (and, through a test
relay that drops, holds back and doubles datagrams on purpose, exactly the losses, reorderings and
duplicates it made); 1000 TCP messages of random sizes up to 64 KiB, each echoed whole; bad framing
counted and closed while the server goes on. Run with ``-s`` to see the numbers.
"""

from __future__ import annotations

import random
import socket
import struct
import subprocess
import sys
import threading

import pytest

from nodes.sockets import protocol
from tests.support import ROOT, NodeProc, free_port, wait_until

N = 1000


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def show(what: str, counters: dict[str, int], *names: str) -> None:
    print(f"\n{what}: " + "  ".join(f"{n} {counters.get(n)}" for n in names))


def run_batch(nodes, role: str, env: dict[str, str], timeout: float = 120) -> tuple[dict, int]:
    """A one-shot client's final /status (HOLD=1) with its exit code. REQUEST_TIMEOUT is long unless given: on
    loopback an echo that takes seconds means a loaded machine, not a lost message."""
    client: NodeProc = nodes(role, {"HOLD": "1", "REQUEST_TIMEOUT": "30", **env}, healthy=False)
    doc = client.wait_state("done", timeout)
    return doc, doc["exit_code"]


# --- UDP -----------------------------------------------------------------------------------------------


@pytest.fixture
def udpserver(nodes) -> tuple[NodeProc, str]:
    address = f"127.0.0.1:{free_udp_port()}"
    return nodes("udpserver", {"UDP_BIND": address}), address


def test_udp_1000_requests_on_loopback_sent_equals_answered_plus_lost(nodes, udpserver) -> None:
    server, address = udpserver
    # Loopback does not drop 40-byte datagrams 16 at a time, so any loss here would be a bug of ours, not
    # UDP's; the relay test below makes real losses on purpose.
    doc, rc = run_batch(nodes, "udpclient", {"UDP_SERVER": address, "REQUESTS": str(N)})
    c = doc["counters"]
    show("udp client", c, "sent", "answered", "lost", "reordered", "duplicates", "late", "rejected")
    assert c["sent"] == N and c["sent"] == c["answered"] + c["lost"]
    assert (c["answered"], c["lost"], c["rejected"], rc, doc["done"]) == (N, 0, 0, 0, True)
    s = server.status()["counters"]
    show("udp server", s, "received", "sent", "rejected")
    assert s["received"] == s["sent"] >= N + 1  # every datagram echoed: the batch and at least one probe
    assert doc["summary"].startswith(f"answered {N}/{N} lost 0")


class Relay:
    """A UDP echo that misbehaves on purpose, per sequence number: drops n%10==0, holds n%10==3 back
    until n%10==4 was echoed (reordered), echoes n%10==7 twice (duplicated), echoes the rest once."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        held: dict[int, tuple[bytes, tuple]] = {}
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            n = protocol.sequence_of(data)
            if n and n % 10 == 0:
                continue
            if n % 10 == 3:
                held[n] = (data, peer)
                continue
            self.sock.sendto(data, peer)
            if n % 10 == 7:
                self.sock.sendto(data, peer)
            if n % 10 == 4 and n - 1 in held:
                self.sock.sendto(*held.pop(n - 1))

    def __enter__(self) -> Relay:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_udp_client_counts_exactly_the_losses_reorderings_and_duplicates_it_was_dealt(nodes) -> None:
    with Relay() as relay:
        # A window wide enough that the dropped datagrams never fill it (a held-back one must not wait for a
        # slot while its timeout runs), and a rate well within what the relay reads (no kernel drops).
        env = {"UDP_SERVER": relay.address, "REQUESTS": str(N), "REQUEST_TIMEOUT": "5", "WINDOW": "1024"}
        env["RATE"] = "2000"
        doc, rc = run_batch(nodes, "udpclient", env)
    c = doc["counters"]
    show("udp client via the relay", c, "sent", "answered", "lost", "reordered", "duplicates", "late", "rejected")
    tenth = N // 10
    assert c["sent"] == N == c["answered"] + c["lost"]
    assert (c["answered"], c["lost"], c["reordered"], c["duplicates"]) == (N - tenth, tenth, tenth, tenth)
    assert (c["late"], c["rejected"], rc, doc["done"]) == (0, 0, 1, True)  # exit 1: not every request answered


def test_udp_server_rejects_an_empty_datagram_and_goes_on(udpserver) -> None:
    server, address = udpserver
    host, port = address.split(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"", (host, int(port)))
        sock.sendto(b"message #1", (host, int(port)))
        assert sock.recv(100) == b"message #1"
    wait_until(lambda: server.status()["counters"]["rejected"] == 1, 5, "udpserver rejected == 1")
    c = server.status()["counters"]
    assert (c["received"], c["sent"], c["rejected"]) == (2, 1, 1)


def test_udp_client_without_a_server_gives_up_after_wait_timeout(nodes) -> None:
    doc, rc = run_batch(nodes, "udpclient", {"UDP_SERVER": f"127.0.0.1:{free_udp_port()}", "WAIT_TIMEOUT": "1"})
    assert (rc, doc["done"], doc["counters"]["sent"]) == (1, False, 0)


# --- TCP -----------------------------------------------------------------------------------------------


@pytest.fixture
def tcpserver(nodes) -> tuple[NodeProc, tuple[str, int]]:
    port = free_port()
    return nodes("tcpserver", {"TCP_BIND": f"127.0.0.1:{port}", "MAX_MSG_SIZE": "65536"}), ("127.0.0.1", port)


def test_tcp_1000_messages_of_random_sizes_up_to_64k_each_echoed_whole(nodes, tcpserver) -> None:
    server, (host, port) = tcpserver
    env = {"TCP_SERVER": f"{host}:{port}", "REQUESTS": str(N), "MAX_PAYLOAD": "65536", "SEED": "14"}
    doc, rc = run_batch(nodes, "tcpclient", env)
    c = doc["counters"]
    show("tcp client", c, "sent", "answered", "lost", "largest", "bytes_sent", "split_reads", "joined_reads")
    assert (c["sent"], c["answered"], c["lost"], c["rejected"], rc) == (N, N, 0, 0, 0)
    assert c["bytes_received"] == c["bytes_sent"] > N * 4  # every byte came back (the prefixes too)
    assert 60_000 < c["largest"] <= 65536
    # Why framing: reads that ended inside a message, or held several, are what a recv(1024) reader gets wrong.
    assert c["split_reads"] + c["joined_reads"] > 0
    s = server.status()
    show("tcp server", s["counters"], "accepted", "received", "sent", "rejected", "split_reads", "joined_reads")
    assert (s["counters"]["received"], s["counters"]["sent"], s["counters"]["rejected"]) == (N, N, 0)


def echo_of(sock: socket.socket) -> bytes:
    header = sock.recv(4, socket.MSG_WAITALL)
    return sock.recv(struct.unpack("!I", header)[0], socket.MSG_WAITALL) if len(header) == 4 else b""


def test_tcp_server_reassembles_split_and_joined_messages(tcpserver) -> None:
    server, address = tcpserver
    with socket.create_connection(address, timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in protocol.frame(b"one message, sent a byte at a time"):  # split: 38 tiny sends
            sock.sendall(bytes([byte]))
        assert echo_of(sock) == b"one message, sent a byte at a time"
        sock.sendall(protocol.frame(b"two") + protocol.frame(b"") + protocol.frame(b"joined"))  # one send, 3 messages
        assert [echo_of(sock) for _ in range(3)] == [b"two", b"", b"joined"]
    wait_until(lambda: server.status()["counters"]["received"] == 4, 5, "tcpserver received == 4")
    assert server.status()["counters"]["rejected"] == 0


@pytest.mark.parametrize(
    ("data", "counter"),
    [
        (struct.pack("!I", 65537) + b"x" * 10, "oversized"),  # a prefix above the server's MAX_MSG_SIZE
        (struct.pack("!I", 100) + b"x" * 10, "short"),  # the peer closes 10 bytes into a 100-byte message
        (b"\x00\x00", "short"),  # ... or inside the length prefix
    ],
)
def test_tcp_bad_framing_is_a_counted_reject_and_a_close_and_the_server_goes_on(
    nodes, tcpserver, data: bytes, counter: str
) -> None:
    server, (host, port) = tcpserver
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(data)
        if counter == "oversized":
            assert sock.recv(100) == b""  # the server closed the connection: nothing echoed
        else:
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(100) == b""
    wait_until(lambda: server.status()["counters"][counter] == 1, 5, f"tcpserver {counter} == 1")
    doc, rc = run_batch(nodes, "tcpclient", {"TCP_SERVER": f"{host}:{port}", "REQUESTS": "20", "MAX_PAYLOAD": "1000"})
    assert (doc["counters"]["answered"], rc) == (20, 0)
    c = server.status()["counters"]
    assert (c["rejected"], c[counter], c["received"], c["accepted"], c["closed"]) == (1, 1, 20, 2, 2)


def test_tcp_client_counts_messages_the_server_refuses_as_lost(nodes, tcpserver) -> None:
    """MAX_PAYLOAD above the server's MAX_MSG_SIZE: each message that big closes the connection (WINDOW=1: it is
    the only one in flight), counted lost; the client reconnects and goes on. Which ones are too big follows
    from SEED, so the test replays the client's draws and names the exact count."""
    server, (host, port) = tcpserver
    env = {"TCP_SERVER": f"{host}:{port}", "REQUESTS": "200", "MAX_PAYLOAD": "131072", "SEED": "3", "WINDOW": "1"}
    rng = random.Random(3)
    sizes = [len(rng.randbytes(rng.randint(0, 131072))) for _ in range(200)]
    too_big = sum(size > 65536 for size in sizes)
    doc, rc = run_batch(nodes, "tcpclient", env)
    c = doc["counters"]
    show("tcp client, some messages too big", c, "sent", "answered", "lost", "reconnects")
    s = server.status()["counters"]
    assert c["sent"] == 200 == c["answered"] + c["lost"] and rc == 1
    assert (c["lost"], c["answered"], s["oversized"], s["rejected"], s["received"]) == (
        too_big,
        200 - too_big,
        too_big,
        too_big,
        200 - too_big,
    )
    assert c["reconnects"] == too_big - (sizes[-1] > 65536)  # no reconnect after the last message


# --- the plain examples --------------------------------------------------------------------------------


def run_example(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_plain_examples_talk_to_the_nodes(udpserver, tcpserver) -> None:
    udp = run_example("udpclient.py", udpserver[1], "10")
    assert udp.returncode == 0, udp.stderr
    assert udp.stdout.splitlines() == [f"message #{n}" for n in range(1, 11)] + ["sent 10 answered 10 lost 0"]
    host, port = tcpserver[1]
    tcp = run_example("tcpclient.py", f"{host}:{port}", "10")
    assert tcp.returncode == 0, tcp.stderr
    lines = tcp.stdout.splitlines()
    assert len(lines) == 10 and all(line.endswith("echoed whole") for line in lines)
    assert tcpserver[0].status()["counters"]["received"] == 10
