"""What the echo pairs put on the wire (docs/wire.md, "Plain sockets").

UDP, udpclient -> udpserver -> udpclient, one datagram each way::

    sequence number (8 bytes, unsigned, big-endian) + payload        echoed byte for byte

Sequence 0 is the client's probe ("is anyone there?"); requests are numbered from 1. The server
echoes any non-empty datagram, so the chapter's plain UDP client gets its text back.

TCP, tcpclient <-> tcpserver, on one connection, any number of messages each way::

    length (4 bytes, unsigned, big-endian) + that many bytes          echoed whole, in order

Why the prefix: TCP delivers a byte stream, not messages. One ``recv`` may return half a message
(a *split* read) or the end of one and the start of the next (a *joined* read); a reader that takes
each ``recv(1024)`` as a message, as the chapter's examples do, breaks as soon as messages are big or
come fast. :class:`Deframer` counts both kinds of read, so the nodes show how often it happens.

"""

from __future__ import annotations

import struct

from nodes.core.config import DATAGRAM_HEADER

_SEQ = struct.Struct("!Q")
LENGTH = struct.Struct("!I")
#: The udpclient's probe: sequence 0, no payload.
PROBE = 0


def datagram(seq: int, payload: bytes = b"") -> bytes:
    return _SEQ.pack(seq) + payload


def sequence_of(data: bytes) -> int:
    """The sequence number of a datagram; ValueError if it is too short to carry one."""
    if len(data) < DATAGRAM_HEADER:
        raise ValueError(f"datagram of {len(data)} bytes is shorter than its {DATAGRAM_HEADER}-byte sequence number")
    return _SEQ.unpack_from(data)[0]


def frame(body: bytes) -> bytes:
    """One length-prefixed message."""
    return LENGTH.pack(len(body)) + body


class FramingError(ValueError):
    """The stream cannot be read as messages any more: the connection must be closed."""


class Deframer:
    """Turns the chunks ``recv`` returns into whole messages, and counts split and joined reads.

    ``limit`` bounds the length a prefix may announce: without it, four bytes from a peer would make
    the reader wait for (and buffer) up to 4 GiB.
    """

    def __init__(self, limit: int, counters: dict[str, int]) -> None:
        self.limit = limit
        self.buf = bytearray()
        #: The node's counters: ``split_reads`` (reads that ended inside a message: a fixed-buffer reader
        #: would have taken a cut message) and ``joined_reads`` (reads that completed two or more
        #: messages: a fixed-buffer reader would have taken them for one).
        self.counters = counters
        counters.setdefault("split_reads", 0)
        counters.setdefault("joined_reads", 0)

    def feed(self, data: bytes) -> list[bytes]:
        """Every message ``data`` completes, in order; raises :class:`FramingError` on an oversized prefix."""
        buf = self.buf
        buf += data
        out: list[bytes] = []
        pos, have = 0, len(buf)
        while have - pos >= LENGTH.size:
            (n,) = LENGTH.unpack_from(buf, pos)
            if n > self.limit:
                raise FramingError(f"length prefix {n} is above MAX_MSG_SIZE={self.limit}")
            end = pos + LENGTH.size + n
            if end > have:
                break
            out.append(bytes(buf[pos + LENGTH.size : end]))
            pos = end
        del buf[:pos]
        self.counters["joined_reads"] += len(out) > 1
        self.counters["split_reads"] += bool(buf)
        return out

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message (a peer that closes now cut it short)."""
        return len(self.buf)
