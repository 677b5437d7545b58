"""zpub: ZeroMQ XPUB, binds ZPUB_BIND (tcp://, ipc:// or inproc://); zsubs and any plain SUB connect to it.

Publishes MESSAGES multipart messages round robin over TOPICS (MESSAGES=0: at RATE until stopped):
``[topic, envelope]`` events, the same bodies as the Redis publisher (:mod:`nodes.pubsub.protocol`), or with
FORMAT=plain exactly the chapter's ``[b"catA", b"hatA"]``. A PUB socket drops everything sent before a
subscription arrives (the slow joiner), so zpub first waits - bounded by WAIT_TIMEOUT - until
MIN_SUBSCRIBERS subscribers are listening.

Who is listening: XPUB with XPUB_VERBOSE (and XPUB_VERBOSER, for every unsubscribe too, including the ones
libzmq generates when a SUB disconnects) hands the application every subscription notice, from any SUB.
Notices carry no peer identity, so zpub counts two kinds of subscriber:

* **zsubs** (the project's own) - exactly, by their *hello*: each zsub subscribes its real topics first and
  then one private topic ``HELLO + its topics + "/" + its id`` that no message ever matches. Notices on one
  connection arrive in order, so a zsub's hello is read after its topics are in place. On a reconnect
  libzmq re-sends a SUB's subscriptions in byte order, so HELLO starts with 0xFF: it sorts after every
  topic (topics are ASCII) and still comes last. The unsubscribe of a hello (zsub gone) counts it out.
* **plain SUBs** - every subscriber whose SUBSCRIBE arrived. zpub keeps the live subscriptions per topic
  (subscribe notices minus unsubscribes) and knows from the hellos how many of them are the zsubs'; the
  rest are plain subscriptions. A plain SUB may hold several, so they are capped by the connections no
  zsub accounts for (the socket monitor's handshaken peers, :class:`nodes.core.peers.PeerCounter`):
  ``plain = min(connected - zsubs, plain subscriptions)``. So a connected SUB that has subscribed nothing
  is not counted (it receives nothing), unless a plain SUB holding several topics makes up for it: the
  count is exact while plain SUBs subscribe one topic each (the chapter's do) or every connected SUB has
  subscribed, and can run one ahead per extra plain topic otherwise - e.g. for the microseconds between a
  SUB's handshake and the arrival of its subscriptions. ``inproc://`` peers raise no monitor
  events, so there only zsubs count.

``peers`` in ``/status`` is ``zsubs + plain``; MIN_SUBSCRIBERS waits for it.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from nodes.core.lifecycle import Node
from nodes.core.log import event
from nodes.pubsub.protocol import HELLO, parse_hello, publish_batch, published_summary

log = logging.getLogger(__name__)

#: libzmq's default high-water mark, messages per subscriber.
DEFAULT_HWM = 1000


def send_hwm(messages: int) -> int:
    """SNDHWM that lets a whole batch wait in each subscriber's queue.

    PUB never blocks: once a subscriber's queue holds SNDHWM messages, further ones to that subscriber
    are silently dropped. A batch of MESSAGES can therefore only be lost if MESSAGES > SNDHWM (+ the
    zsub's RCVHWM), e.g. when a subscriber stalls. Sizing SNDHWM to the batch bounds the memory at
    MESSAGES x message size per subscriber and guarantees nothing of the batch is dropped. (Continuous
    mode, MESSAGES=0, keeps the default: a stalled subscriber loses the overflow, as with any PUB.)
    """
    return max(DEFAULT_HWM, messages)


class Zpub(Node):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: hello topic -> (zsub id, subscriptions it holds besides the hello)
        self.hellos: dict[bytes, tuple[str, int]] = {}
        #: live subscriptions per topic (hellos excluded): subscribe notices minus unsubscribes
        self.subscriptions: dict[bytes, int] = {}
        self.plain_subscribers = 0
        self.subscribers = 0  # zsubs + plain: written by the loop, read by /status
        self._connected = 0
        self.stats.counters["failed"] = 0

    def serve(self) -> int:
        s = self.settings
        self.xpub = self.socket(zmq.XPUB, xpub_verbose=1, xpub_verboser=1, sndhwm=send_hwm(s.messages))
        self.peers = self.count_peers(self.xpub)  # before bind: no early connection goes uncounted
        try:
            self.bind(self.xpub, s.bind)
            return publish_batch(self, f"{s.min_subscribers} subscribers", self._ready, self._send)
        finally:
            self.peers.close()

    def extra_status(self) -> dict[str, Any]:
        return {
            "subscribers": sorted(zsub_id for zsub_id, _ in list(self.hellos.values())),
            "plain_subscribers": self.plain_subscribers,
            "subscriptions": {t.decode("utf-8", "replace") or "*": n for t, n in list(self.subscriptions.items())},
        }

    def peer_count(self) -> int:
        return self.subscribers

    def summary(self) -> str:
        return published_summary(self)

    def _ready(self) -> bool:
        self._read_notices()
        return self.subscribers >= self.settings.min_subscribers

    def _send(self, topic: str, payload: bytes) -> bool:
        self._read_notices()
        self.xpub.send_multipart([topic.encode(), payload])
        return True

    def _read_notices(self) -> None:
        """Drain subscription notices (``\\x01topic`` subscribe, ``\\x00topic`` unsubscribe), then recount."""
        changed = False
        while self.xpub.poll(0):
            changed = True
            notice = self.xpub.recv()
            if not notice or notice[0] not in (0, 1):
                self.reject("not a subscription notice", "xpub")
                continue
            on, topic = notice[0] == 1, notice[1:]
            if topic.startswith(HELLO):
                self._hello(on, topic)
                continue
            n = self.subscriptions.get(topic, 0) + (1 if on else -1)
            if n > 0:
                self.subscriptions[topic] = n
            else:
                self.subscriptions.pop(topic, None)
            event(log, "subscription", logging.DEBUG, topic=topic.decode("utf-8", "replace"), on=on, now=max(n, 0))
        connected = self.peers.poll()
        if not changed and connected == self._connected:
            return
        self._connected = connected
        held_by_zsubs = sum(n for _, n in self.hellos.values())
        plain_subscriptions = max(0, sum(self.subscriptions.values()) - held_by_zsubs)
        unexplained_peers = max(0, connected - len(self.hellos))
        plain = min(unexplained_peers, plain_subscriptions)
        if plain != self.plain_subscribers:
            event(log, "plain_subscribers", count=plain, subscriptions=plain_subscriptions)
        self.plain_subscribers = plain
        self.subscribers = len(self.hellos) + plain

    def _hello(self, on: bool, topic: bytes) -> None:
        if on and topic not in self.hellos:
            self.hellos[topic] = parse_hello(topic)
            zsub_id = self.hellos[topic][0]
            event(log, "hello", subscriber=zsub_id, total=len(self.hellos))
        elif not on and topic in self.hellos:
            zsub_id, _ = self.hellos.pop(topic)
            event(log, "goodbye", subscriber=zsub_id, total=len(self.hellos))
