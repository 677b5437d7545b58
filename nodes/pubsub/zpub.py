"""zpub: ZeroMQ XPUB, binds ZPUB_BIND (tcp://, ipc:// or inproc://); zsubs connect to it.

Publishes MESSAGES multipart ``[topic, envelope]`` events round robin over TOPICS, the same bodies as the
Redis publisher (:mod:`nodes.pubsub.protocol`). A PUB socket drops everything sent before a subscription arrives
(the slow joiner), so zpub first waits - bounded by WAIT_TIMEOUT - for MIN_SUBSCRIBERS *hellos*:

XPUB with XPUB_VERBOSE hands every subscription notice to the application. Each zsub subscribes its
real topics first and then one private topic ``HELLO + its id``, which no event ever matches. Notices
on one connection arrive in order, so a zsub's hello is read after its topics are in place. On a
reconnect libzmq re-sends a SUB's subscriptions in byte order, so HELLO starts with 0xFF: it sorts after
every topic (topics are ASCII) and still comes last. An unsubscribe of a hello (zsub gone) is counted out.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from nodes.core.lifecycle import Node
from nodes.core.log import event
from nodes.pubsub.protocol import HELLO, publish_batch, published_summary

log = logging.getLogger(__name__)

#: libzmq's default high-water mark, messages per subscriber.
DEFAULT_HWM = 1000


def send_hwm(messages: int) -> int:
    """SNDHWM that lets a whole batch wait in each subscriber's queue.

    PUB never blocks: once a subscriber's queue holds SNDHWM messages, further ones to that subscriber
    are silently dropped. A batch of MESSAGES can therefore only be lost if MESSAGES > SNDHWM (+ the
    zsub's RCVHWM), e.g. when a subscriber stalls. Sizing SNDHWM to the batch bounds the memory at
    MESSAGES x message size per subscriber and guarantees nothing of the batch is dropped.
    """
    return max(DEFAULT_HWM, messages)


class Zpub(Node):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hellos: set[bytes] = set()
        self.stats.counters["failed"] = 0

    def serve(self) -> int:
        s = self.settings
        self.xpub = self.socket(zmq.XPUB, bind=s.bind, xpub_verbose=1, sndhwm=send_hwm(s.messages))
        return publish_batch(self, f"{s.min_subscribers} zsub hellos", self._ready, self._send)

    def extra_status(self) -> dict[str, Any]:
        return {"subscribers": sorted(h[len(HELLO) :].decode("utf-8", "replace") for h in list(self.hellos))}

    def peer_count(self) -> int:
        return len(self.hellos)

    def summary(self) -> str:
        return published_summary(self)

    def _ready(self) -> bool:
        self._read_notices()
        return len(self.hellos) >= self.settings.min_subscribers

    def _send(self, topic: str, frame: bytes) -> bool:
        self._read_notices()
        self.xpub.send_multipart([topic.encode(), frame])
        return True

    def _read_notices(self) -> None:
        """Drain subscription notices: ``\\x01topic`` subscribe, ``\\x00topic`` unsubscribe."""
        while self.xpub.poll(0):
            notice = self.xpub.recv()
            if not notice or notice[0] not in (0, 1):
                self.reject("not a subscription notice", "xpub")
                continue
            topic = notice[1:]
            if not topic.startswith(HELLO):
                event(log, "subscription", logging.DEBUG, topic=topic.decode("utf-8", "replace"), on=notice[0])
            elif notice[0] == 1 and topic not in self.hellos:
                self.hellos.add(topic)
                event(log, "hello", subscriber=topic[len(HELLO) :].decode("utf-8", "replace"), total=len(self.hellos))
            elif notice[0] == 0 and topic in self.hellos:
                self.hellos.discard(topic)
                event(log, "goodbye", subscriber=topic[len(HELLO) :].decode("utf-8", "replace"), total=len(self.hellos))
