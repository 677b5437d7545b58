"""A Redis subscriber whose health-check PING gets no PONG drops the connection (redis-py dials again and
resubscribes), instead of staying green on a dead connection and getting nothing."""

from __future__ import annotations

from nodes import roles
from nodes.pubsub.redisconn import SOCKET_TIMEOUT
from nodes.pubsub.subscriber import Subscriber


class FakeConnection:
    def __init__(self) -> None:
        self.disconnects = 0

    def disconnect(self) -> None:
        self.disconnects += 1


class FakePubSub:
    def __init__(self) -> None:
        self.health_check_response_counter = 0
        self.connection = FakeConnection()


def subscriber() -> Subscriber:
    settings = roles.load("subscriber", overrides={"redis_password": "x", "status_port": "0"})
    return Subscriber(settings)


def test_an_answered_ping_keeps_the_connection() -> None:
    sub, ps = subscriber(), FakePubSub()
    ps.health_check_response_counter = 1
    assert not sub.check_silent(ps, 100.0)
    ps.health_check_response_counter = 0  # the PONG came
    assert not sub.check_silent(ps, 100.0 + SOCKET_TIMEOUT + 1)
    ps.health_check_response_counter = 1  # the next PING, much later, gets its own full wait
    assert not sub.check_silent(ps, 200.0)
    assert not sub.check_silent(ps, 200.0 + SOCKET_TIMEOUT - 0.1)
    assert ps.connection.disconnects == 0 and sub.stats.counters["silent_reconnects"] == 0


def test_a_ping_unanswered_for_the_socket_timeout_drops_the_connection() -> None:
    sub, ps = subscriber(), FakePubSub()
    ps.health_check_response_counter = 1
    assert not sub.check_silent(ps, 100.0)
    ps.health_check_response_counter = 7  # redis-py PINGs on every read while none is answered
    assert sub.check_silent(ps, 100.0 + SOCKET_TIMEOUT)
    assert ps.connection.disconnects == 1 and ps.health_check_response_counter == 0
    assert sub.stats.counters["silent_reconnects"] == 1
