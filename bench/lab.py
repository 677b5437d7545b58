"""Copies of node loops with one change each, to measure a change before proposing it (``--lab NAME``).

Nothing here is used by the nodes. ``python -m bench --lab NAME[,NAME]`` adds, to every case whose
roles have a variant NAME, one more variant in which those roles run the changed class (in a process
of its own, like the node), measured interleaved with the node and the baselines and held to the same
ratio goals; ``python -m bench.profile --compare`` does the same for the broker alone. Each variant
subclasses the real node and overrides as little as possible, so the diff to propose is the override.
Variants that patch a module constant do so in their own process only (never use them with --threads).
"""

from __future__ import annotations

from typing import Any

from nodes.pipeline.pipeworker import Pipeworker
from nodes.pipeline.ventilator import Ventilator
from nodes.pubsub.subscriber import Subscriber
from nodes.reqrep.broker import Broker

# msgpack of the envelope's first elements: fixarray(6), version 1; then the id (a str) and the kind.
_HEAD = b"\x96\x01"
_REQUEST, _REPLY = b"\xa7request", b"\xa5reply"


def _kind_at(frame: bytes) -> bytes | None:
    """The packed kind of an envelope frame, found by skipping the packed id (None if not an envelope)."""
    if frame[:2] != _HEAD or len(frame) < 4:
        return None
    b = frame[2]
    if 0xA0 <= b <= 0xBF:
        start = 3 + (b & 0x1F)
    elif b == 0xD9:
        start = 4 + frame[3]
    elif b == 0xDA:
        start = 5 + int.from_bytes(frame[3:5], "big")
    else:
        return None
    return frame[start : start + 8]


class PeekKind(Broker):
    """Validate a frame by its packed header and kind instead of a full msgpack decode + Envelope.

    The frame count, delimiter, array header, version, id type and kind are still checked; a frame
    that fails the quick check goes through the node's full validation, which names the reason and
    counts the reject. What is no longer looked at on the hot path: the body, ``sent_at``, ``origin``
    - so ``replies_by_worker`` is not counted by the broker (the client and each worker count it).
    """

    def _valid_request(self, frames: list[bytes]) -> bool:
        if len(frames) == 3 and not frames[1] and _kind_at(frames[2]) == _REQUEST:
            return True
        return super()._valid_request(frames)

    def _valid_reply(self, frames: list[bytes]) -> bool:
        if len(frames) == 3 and not frames[1] and _kind_at(frames[2]) == _REPLY:
            return True
        return super()._valid_reply(frames)


# --- subscriber: tenacity only when a call failed ------------------------------------------------


class NoLabelSubscriber(Subscriber):
    """The subscriber without its per-message ``received_by_topic`` label (the per-topic summary has it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stats = self.stats
        plain = stats.incr_label

        def incr_label(group: str, key: str, n: int = 1) -> None:
            if group != "received_by_topic":
                plain(group, key, n)

        stats.incr_label = incr_label  # type: ignore[method-assign]


# --- pipeline: try the send first, poll the peer monitor less, deeper task queue -----------------


def _deeper_queue() -> None:
    """TASK_QUEUE 10 -> 100 messages and its kernel buffer 4 KiB -> 64 KiB (this process only)."""
    from nodes.pipeline import protocol

    protocol.TASK_QUEUE = 100
    protocol.TASK_QUEUE_BYTES = 65536


class QueueVentilator(Ventilator):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _deeper_queue()
        super().__init__(*args, **kwargs)


class QueuePipeworker(Pipeworker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _deeper_queue()
        super().__init__(*args, **kwargs)


#: role -> lab name -> class. A name shared by several roles changes all of them in one variant.
VARIANTS: dict[str, dict[str, type]] = {
    "broker": {"peek": PeekKind},
    "subscriber": {"nolabel": NoLabelSubscriber},
    "ventilator": {"queue": QueueVentilator},
    "pipeworker": {"queue": QueuePipeworker},
}
