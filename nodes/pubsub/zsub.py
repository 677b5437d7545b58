"""zsub: ZeroMQ SUB, connects to ZPUB_ENDPOINT (tcp://, ipc:// or inproc://); counts what arrives per topic.

Subscribes each of TOPICS (empty = ``b""``, every topic), then one private hello topic naming them - the
handshake zpub waits for before publishing (see ``nodes.pubsub.zpub``). Any ZeroMQ PUB can feed it:

* ``[topic, payload]`` whose payload is not an envelope (e.g. ``[b"catA", b"hatA"]``) is **plain**: counted
  under ``plain`` / ``plain_by_topic``. So is any other multipart message whose second frame is not an
  envelope (counted under its first frame), and a one-frame message (counted under the subscription that
  matched it, ``*`` for all) - zguide's weather server sends those.
* ``[topic, envelope]`` is checked like the Redis subscriber does (``nodes.pubsub.protocol.Inbox``): its body
  must name the same topic, and its per-topic sequence is tracked. SUB matches by prefix, so an envelope on
  a topic that merely starts with a subscribed one is counted ``unexpected``.
* An envelope in any other shape (one frame, or more than two) is a reject, ``not [topic, envelope]: ...``.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from nodes.core.lifecycle import POLL_MS, Node
from nodes.core.log import event
from nodes.pubsub.protocol import Inbox, hello, is_envelope

log = logging.getLogger(__name__)
SOURCE = "zpub"


class Zsub(Node):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbox = Inbox(self, self.settings.topics)
        # the subscriptions, longest first: a one-frame message is counted under the one that matched it
        self.prefixes = sorted(((t.encode(), t) for t in self.settings.topics), key=lambda p: -len(p[0]))
        # name + random salt: unique even for same-named zsubs
        self.hello = hello(self.settings.topics, self.ids.prefix)

    def serve(self) -> int:
        s = self.settings
        # linger 0: only subscriptions to flush, none worth waiting for. dial: a message over MAX_MSG_SIZE makes
        # libzmq drop the connection for good; the link re-dials it and the SUB re-sends its subscriptions.
        sub = self.dial(zmq.SUB, s.endpoint, linger=0)
        for topic in s.topics or ("",):
            sub.subscribe(topic.encode())
        sub.subscribe(self.hello)
        event(log, "subscribed", topics=list(s.topics) or ["*"], hello=self.ids.prefix)
        while self.running():
            if sub.poll(POLL_MS):
                self._handle(sub.recv_multipart())
        return 0

    def _handle(self, frames: list[bytes]) -> None:
        if len(frames) == 1:
            if is_envelope(frames[0]):
                self.inbox.reject("not [topic, envelope]: 1 frame", SOURCE)
            else:
                self.inbox.plain(self._matched(frames[0]))
            return
        topic = frames[0].decode("utf-8", "backslashreplace")
        if not is_envelope(frames[1]):
            self.inbox.plain(topic)
        elif len(frames) != 2:
            self.inbox.reject(f"not [topic, envelope]: {len(frames)} frames", SOURCE)
        else:
            self.inbox.accept(topic, frames[1], SOURCE)

    def _matched(self, frame: bytes) -> str:
        return next((t for p, t in self.prefixes if frame.startswith(p)), "*")

    def extra_status(self) -> dict[str, Any]:
        return self.inbox.status(self.settings.topics or ["*"])

    def summary(self) -> str:
        return self.inbox.summary()
