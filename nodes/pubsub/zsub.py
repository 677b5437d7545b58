"""zsub: ZeroMQ SUB, connects to ZPUB_ENDPOINT (tcp://, ipc:// or inproc://); checks its topics arrive in order.

Subscribes each of TOPICS (empty = ``b""``, every topic), then one private hello topic - the handshake
zpub waits for before publishing (see ``nodes.zpub``). Every message must be ``[topic, envelope]``
whose body names the same topic; anything else is a logged reject. SUB matches by prefix, so a topic
that merely starts with a subscribed one is counted ``unexpected``. Sequence tracking is shared with the
Redis subscriber (``nodes.sequence``).
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from nodes.core.lifecycle import POLL_MS, Node
from nodes.core.log import event
from nodes.pubsub.protocol import HELLO, Inbox

log = logging.getLogger(__name__)
SOURCE = "zpub"


class Zsub(Node):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbox = Inbox(self, self.settings.topics)
        self.hello = HELLO + self.ids.prefix.encode()  # name + random salt: unique even for same-named zsubs

    def serve(self) -> int:
        s = self.settings
        sub = self.socket(zmq.SUB, connect=s.endpoint, linger=0)  # only subscriptions to flush: none worth waiting for
        for topic in s.topics or ("",):
            sub.subscribe(topic.encode())
        sub.subscribe(self.hello)
        event(log, "subscribed", topics=list(s.topics) or ["*"], hello=self.ids.prefix)
        while self.running():
            if sub.poll(POLL_MS):
                self._handle(sub.recv_multipart())
        return 0

    def _handle(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            self.reject(f"{len(frames)} frames, expected [topic, payload]", SOURCE)
            return
        try:
            topic = frames[0].decode("utf-8")
        except UnicodeDecodeError:
            self.reject("topic frame is not UTF-8", SOURCE)
            return
        self.inbox.accept(topic, frames[1], SOURCE)

    def extra_status(self) -> dict[str, Any]:
        return self.inbox.status(self.settings.topics or ["*"])

    def summary(self) -> str:
        return self.inbox.summary()
