"""Frames the load generators send: valid project envelopes padded to the payload size under test.

Built before the timed part of a run, so a sender's cost is the send itself. Requests carry a
fixed-width id (``b`` + 9 digits) at a fixed offset, so a reply that echoes the request can be
matched by slicing, without decoding, on the hot path of the load generator.
"""

from __future__ import annotations

from typing import Any

from nodes.core import wire
from nodes.pubsub.sequence import Outbox

#: Offset of the 9 digits of a request id in the packed envelope: fixarray(6), version 1, fixstr(10), "b".
ID_DIGITS = slice(4, 13)
REQUEST_KIND, REPLY_KIND = b"\xa7request", b"\xa5reply"


def padded(kind: str, id_: str, body: dict[str, Any], size: int, origin: str = "bench") -> bytes:
    """An envelope of exactly ``size`` bytes where possible (a ``pad`` field absorbs the difference)."""
    frame = wire.make(kind, id_, body, origin)
    if len(frame) >= size:
        return frame
    pad = size - len(frame) - 8  # "pad" key (4 bytes) + bin header (2-5 bytes): fix up below
    for _ in range(4):
        frame = wire.make(kind, id_, {**body, "pad": b"\0" * max(0, pad)}, origin)
        if len(frame) == size or pad <= 0:
            break
        pad += size - len(frame)
    return frame


def request(seq: int, size: int) -> bytes:
    return padded("request", f"b{seq:09d}", {"n": seq}, size)


def request_seq(frame: bytes) -> int:
    return int(frame[ID_DIGITS])


def events(count: int, topics: list[str], size: int, run: str) -> list[tuple[bytes, bytes]]:
    """``count`` events round robin over ``topics`` in the publishers' format (``nodes.sequence``)."""
    outbox = Outbox(run, topics)
    out = []
    for i in range(count):
        topic, body = outbox.next()
        out.append((topic.encode(), padded("event", f"{run}:{i}", body, size)))
    return out
