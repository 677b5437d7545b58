"""nodes.wire: the envelope round-trips, and every malformed frame fails as WireError (and only that)."""

from __future__ import annotations

import time

import msgpack
import pytest

from nodes.core import wire


def packed(*fields: object) -> bytes:
    return msgpack.packb(list(fields), use_bin_type=True)


def test_round_trip_keeps_every_field() -> None:
    env = wire.Envelope(
        id="client-1.ab12cd:7", kind="request", body={"n": 7, "payload": b"xyz"}, sent_at=12.5, origin="c"
    )
    assert wire.decode(wire.encode(env)) == env


@pytest.mark.parametrize("kind", sorted(wire.KINDS))
def test_make_stamps_time_and_accepts_every_kind(kind: str) -> None:
    before = time.time()
    env = wire.decode(wire.make(kind, "id-1", [1, "two", None], origin="node-a"))
    assert (env.id, env.kind, env.body, env.origin) == ("id-1", kind, [1, "two", None], "node-a")
    assert before <= env.sent_at <= time.time()


def test_body_defaults_to_none_and_integer_sent_at_becomes_float() -> None:
    env = wire.decode(packed(wire.VERSION, "x", "event", None, 3, ""))
    assert env.body is None
    assert env.sent_at == 3.0 and isinstance(env.sent_at, float)


def test_oversized_frame_is_rejected_before_unpacking() -> None:
    frame = wire.make("request", "id", "x" * 100)
    assert wire.decode(frame, max_size=len(frame)).body == "x" * 100
    with pytest.raises(wire.WireError, match=rf"{len(frame)} bytes exceeds the {len(frame) - 1}-byte limit"):
        wire.decode(frame, max_size=len(frame) - 1)


def test_default_limit_is_one_mebibyte() -> None:
    with pytest.raises(wire.WireError, match="exceeds"):
        wire.decode(b"\x00" * (wire.DEFAULT_MAX_SIZE + 1))


@pytest.mark.parametrize("frame", [b"", b"\xc1", b"\x92\x01", b"not msgpack at all \xff\xfe"])
def test_garbage_is_not_msgpack(frame: bytes) -> None:
    with pytest.raises(wire.WireError, match="not msgpack"):
        wire.decode(frame)


def test_non_bytes_frame_is_rejected() -> None:
    with pytest.raises(wire.WireError, match="not bytes"):
        wire.decode("a string")  # type: ignore[arg-type]


def test_memoryview_and_bytearray_are_accepted() -> None:
    frame = wire.make("reply", "id")
    assert wire.decode(bytearray(frame)).id == "id"
    assert wire.decode(memoryview(frame)).id == "id"


@pytest.mark.parametrize(
    "obj",
    [
        [wire.VERSION, "id", "request", None, 0.0],  # 5 elements
        [wire.VERSION, "id", "request", None, 0.0, "", "extra"],  # 7 elements
        {"id": "x"},  # a map, not an array
        42,
        "text",
    ],
)
def test_wrong_arity_or_shape(obj: object) -> None:
    with pytest.raises(wire.WireError, match="not a 6-element envelope array"):
        wire.decode(msgpack.packb(obj, use_bin_type=True))


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_wrong_version(version: object) -> None:
    with pytest.raises(wire.WireError, match="unsupported envelope version"):
        wire.decode(packed(version, "id", "request", None, 0.0, ""))


@pytest.mark.parametrize("bad_id", ["", 7, None, b"bytes-id"])
def test_bad_id(bad_id: object) -> None:
    with pytest.raises(wire.WireError, match="id must be a non-empty string"):
        wire.decode(packed(wire.VERSION, bad_id, "request", None, 0.0, ""))


@pytest.mark.parametrize("kind", ["nonsense", "", None, b"request", "REQUEST"])
def test_unknown_kind(kind: object) -> None:
    with pytest.raises(wire.WireError, match="unknown envelope kind"):
        wire.decode(packed(wire.VERSION, "id", kind, None, 0.0, ""))


@pytest.mark.parametrize("sent_at", ["now", None, True, [1.0]])
def test_bad_sent_at(sent_at: object) -> None:
    with pytest.raises(wire.WireError, match="sent_at must be a number"):
        wire.decode(packed(wire.VERSION, "id", "request", None, sent_at, ""))


@pytest.mark.parametrize("origin", [None, 5, b"node"])
def test_bad_origin(origin: object) -> None:
    with pytest.raises(wire.WireError, match="origin must be a string"):
        wire.decode(packed(wire.VERSION, "id", "request", None, 0.0, origin))


def test_unpackable_body_fails_as_wire_error_on_encode() -> None:
    with pytest.raises(wire.WireError, match="cannot encode"):
        wire.encode(wire.Envelope(id="x", kind="event", body=object()))


def test_wire_error_is_the_only_type_raised_for_truncated_frames() -> None:
    frame = wire.make("result", "id-9", {"k": list(range(50))})
    for cut in range(len(frame)):
        with pytest.raises(wire.WireError):
            wire.decode(frame[:cut])


def test_id_maker_is_unique_within_and_across_makers() -> None:
    a, b = wire.IdMaker("node"), wire.IdMaker("node")
    ids_a = [a() for _ in range(1000)]
    ids_b = [b() for _ in range(1000)]
    assert len(set(ids_a)) == 1000
    assert not set(ids_a) & set(ids_b)  # the salt differs, so a restarted node never repeats an id
    assert ids_a[0] == f"{a.prefix}:1" and ids_a[-1] == f"{a.prefix}:1000"
    assert a.prefix.startswith("node.")
