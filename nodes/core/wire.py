"""The msgpack envelope every node speaks.

One small module so that every role agrees on the frame format and so that a bad frame
always fails the same way: :func:`decode` raises :class:`WireError` and nothing else.
Nodes catch that one type, count the frame under ``rejected`` and keep serving.

An envelope is packed as a 6-element array ``[version, id, kind, body, sent_at, origin]``;
an array rather than a map keeps it small and quick to pack on the hot path.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, NamedTuple

import msgpack

VERSION = 1
_packb, _unpackb = msgpack.packb, msgpack.unpackb  # module globals: one lookup less a message
DEFAULT_MAX_SIZE = 1024 * 1024

#: Every kind a node may send. Anything else is rejected on decode.
KINDS = frozenset(
    {
        "request",  # client -> worker (through the broker)
        "reply",  # worker -> client
        "batch",  # ventilator -> sink: batch id and size, sent before the tasks
        "task",  # ventilator -> pipeworker
        "result",  # pipeworker -> sink: one task's result
        "results",  # pipeworker -> sink: the results of one batch from one wake-up
        "event",  # publisher/zpub -> subscribers
        "ready",  # lru worker -> broker
        "heartbeat",  # lru broker <-> worker
    }
)


class WireError(ValueError):
    """A frame that is not a valid envelope: malformed, oversized or of an unknown kind."""


class Envelope(NamedTuple):
    """One decoded frame. A NamedTuple, not a frozen dataclass: every message of every node builds one, and a
    frozen dataclass's ``__init__`` (one ``object.__setattr__`` a field) cost more than the unpacking (make bench)."""

    id: str
    kind: str
    body: Any = None
    sent_at: float = 0.0
    origin: str = ""


def encode(env: Envelope) -> bytes:
    """Pack an envelope; raises :class:`WireError` if the body cannot be packed."""
    try:
        return msgpack.packb([VERSION, env.id, env.kind, env.body, env.sent_at, env.origin], use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError(f"cannot encode envelope {env.id!r}: {exc}") from exc


def make(kind: str, id: str, body: Any = None, origin: str = "") -> bytes:
    """Build and pack an envelope stamped with the current wall-clock time."""
    try:
        return _packb([VERSION, id, kind, body, time.time(), origin], use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError(f"cannot encode envelope {id!r}: {exc}") from exc


def decode(data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> Envelope:
    """Unpack and validate one frame; raises :class:`WireError` on anything unexpected."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError(f"frame is {type(data).__name__}, not bytes")
    if len(data) > max_size:
        raise WireError(f"frame of {len(data)} bytes exceeds the {max_size}-byte limit")
    try:
        obj = _unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types for garbage input
        raise WireError(f"not msgpack: {exc.__class__.__name__}") from exc
    if type(obj) is not list or len(obj) != 6:
        raise WireError("not a 6-element envelope array")
    version, id_, kind, body, sent_at, origin = obj
    # The common case in one test (exact types: a bool is not a number here); anything else is sorted out
    # below, field by field, for the error message.
    if (
        version == VERSION
        and type(id_) is str
        and id_
        and type(kind) is str
        and kind in KINDS
        and (type(sent_at) is float or type(sent_at) is int)
        and type(origin) is str
    ):
        return Envelope(id_, kind, body, float(sent_at), origin)
    if version != VERSION:
        raise WireError(f"unsupported envelope version {version!r}")
    if not isinstance(id_, str) or not id_:
        raise WireError("envelope id must be a non-empty string")
    if not isinstance(kind, str) or kind not in KINDS:  # a list or map kind is unhashable: no TypeError
        raise WireError(f"unknown envelope kind {kind!r}")
    if not isinstance(sent_at, (int, float)) or isinstance(sent_at, bool):
        raise WireError("envelope sent_at must be a number")
    if not isinstance(origin, str):
        raise WireError("envelope origin must be a string")
    return Envelope(id_, kind, body, float(sent_at), origin)  # a str or int subclass msgpack never makes


class IdMaker:
    """Message ids of the form ``<prefix>:<n>``, unique per process run.

    The prefix carries the node name and a random salt so that a restarted node never
    reuses an id that a ledger may still hold.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = f"{prefix}.{os.urandom(3).hex()}"
        self._n = itertools.count(1)

    def __call__(self) -> str:
        return f"{self.prefix}:{next(self._n)}"
