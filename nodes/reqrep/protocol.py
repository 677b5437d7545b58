"""The request-reply protocol: what client, broker and worker exchange (docs/wire.md, "Request-reply").

Plain peers first: every frame the broker forwards is opaque to it; the envelope is an addition.

client -> broker -> worker   kind "request"    {"n": N, "payload": bytes}
worker -> broker -> client   kind "reply"      {"request_id": id, "worker": name, "n": N}
                                                (or {"error": reason, "worker": name})
lru mode, worker <-> broker  kind "ready" / "heartbeat" (no body): Paranoid Pirate's control frames

Plain (the chapter's programs, any language):

plain REQ client -> worker    any single frame that is not an envelope, e.g. ``message #N``
worker -> plain REQ client    ``Stop saying: `` + the request bytes (:func:`plain_reply`)
plain REP server -> client    a frame that ends with the request's exact bytes (an echo, or
                              ``Stop saying: <request>``): the project's client accepts it
lru mode, plain REQ worker    ``READY`` (or ``\\x01``) once, then ``[client, b"", request]`` in and
                              ``[client, b"", reply]`` out (zguide lbbroker); no heartbeats
"""

from __future__ import annotations

from typing import Any

import msgpack

REQUEST, REPLY, READY, HEARTBEAT = "request", "reply", "ready", "heartbeat"

#: What a plain REQ worker sends first in lru mode (zguide lbbroker: "READY"; lbbroker2/3: "\x01").
PLAIN_READY = frozenset({b"READY", b"\x01"})
#: The prefix of a worker's reply to a plain request (the chapter's ``Stop saying: message #N``).
PLAIN_REPLY_PREFIX = b"Stop saying: "
#: The label of replies whose worker is not known by name (a plain reply through a proxy-mode broker).
UNATTRIBUTED = "unattributed"
#: The first two bytes of every packed envelope (msgpack fixarray of 6, version 1): a cheap "might be ours".
ENVELOPE_HEAD = b"\x96\x01"


def request(n: int, payload: bytes) -> dict[str, Any]:
    return {"n": n, "payload": payload}


def reply(request_id: str, worker: str, n: Any) -> dict[str, Any]:
    return {"request_id": request_id, "worker": worker, "n": n}


def error_reply(reason: str, worker: str) -> dict[str, Any]:
    return {"error": reason, "worker": worker}


def plain_reply(request: bytes) -> bytes:
    """The chapter's reply to a plain request: ``Stop saying: message #N``."""
    return PLAIN_REPLY_PREFIX + request


def plain_error(reason: str) -> bytes:
    """The reply to a malformed plain request (a REQ client waiting on it gets words, not silence)."""
    return b"error: " + reason.encode()


def echoes(reply: bytes, request: bytes) -> bool:
    """Whether a plain ``reply`` echoes ``request``: it ends with the request's exact bytes."""
    return reply.endswith(request)


def origin_of(frame: bytes) -> str:
    """The origin of an envelope frame, for counting only (never to validate); else :data:`UNATTRIBUTED`.

    A frame that does not start like an envelope is not decoded at all, so plain traffic costs a
    two-byte comparison.
    """
    if frame[:2] != ENVELOPE_HEAD:
        return UNATTRIBUTED
    try:
        origin = msgpack.unpackb(frame)[5]
    except Exception:  # noqa: BLE001 - msgpack raises several unrelated types for garbage
        return UNATTRIBUTED
    return origin if isinstance(origin, str) and origin else UNATTRIBUTED


def identity_label(identity: bytes) -> str:
    """How a worker known only by its ROUTER identity is named in counts: the identity if printable, else hex."""
    if identity and identity.isascii():
        text = identity.decode("ascii")
        if text.isprintable():
            return text
    return identity.hex()
