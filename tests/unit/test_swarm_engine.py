"""Which swarm ops.swarm uses and which it leaves (ops.swarm.engine), on a fake engine: the rules that
keep a person's swarm - or one another stack created - untouched, checked without docker.
"""

from __future__ import annotations

from typing import Any

import pytest

from ops.swarm.engine import GWBRIDGE, GWBRIDGE_LABEL, OWNER_LABEL, Engine, SwarmError


class FakeNetwork:
    def __init__(self, engine: FakeClient, name: str) -> None:
        self.engine, self.name = engine, name

    def remove(self) -> None:
        self.engine.nets.remove(self.name)


class FakeClient:
    """The few calls Engine makes: info, swarm init/leave/attrs, services, networks by name."""

    def __init__(self, state: str = "inactive", nodes: int = 1, manager: bool = True, labels: dict | None = None):
        self.state, self.nodes, self.manager = state, nodes, manager
        self.labels = dict(labels or {})
        self.nets = [GWBRIDGE] if state == "active" else []
        self.service_list: list[str] = []
        self.swarm = self
        self.services = self
        self.networks = self

    def info(self) -> dict[str, Any]:
        return {"Swarm": {"LocalNodeState": self.state, "ControlAvailable": self.manager, "Nodes": self.nodes}}

    @property
    def attrs(self) -> dict[str, Any]:
        return {"Spec": {"Labels": self.labels}}

    def init(self, advertise_addr: str, listen_addr: str, labels: dict[str, str]) -> None:
        assert (advertise_addr, listen_addr) == ("127.0.0.1", "127.0.0.1:2377")
        self.state, self.labels = "active", labels
        if GWBRIDGE not in self.nets:
            self.nets.append(GWBRIDGE)  # the first task creates it

    def leave(self, force: bool) -> None:
        self.state, self.labels = "inactive", {}

    def list(self, names: list[str] | None = None) -> list[Any]:
        if names is None:
            return self.service_list
        return [FakeNetwork(self, n) for n in self.nets if n in names]


def engine_with(client: FakeClient) -> Engine:
    engine = Engine("fake")
    engine.__dict__["client"] = client  # the cached_property's slot
    return engine


def up(engine: Engine, owner: str = "mpc-swarm") -> bool:
    return engine.adopt_or_init(owner, "127.0.0.1", "127.0.0.1:2377")


def test_a_swarm_it_creates_is_labelled_and_left_with_its_gwbridge() -> None:
    client = FakeClient()
    engine = engine_with(client)
    assert up(engine) is True
    assert client.labels == {OWNER_LABEL: "mpc-swarm", GWBRIDGE_LABEL: "0"}
    assert engine.release("mpc-swarm") == "left the swarm it had created"
    assert client.state == "inactive" and client.nets == []


def test_a_swarm_that_was_there_is_used_and_never_left() -> None:
    client = FakeClient(state="active")
    engine = engine_with(client)
    assert up(engine) is False
    assert "did not create" in engine.release("mpc-swarm")
    assert client.state == "active" and client.nets == [GWBRIDGE]


def test_another_stack_s_swarm_is_not_left_and_neither_is_one_still_in_use() -> None:
    client = FakeClient()
    engine = engine_with(client)
    up(engine, owner="other")
    assert "did not create" in engine.release("mpc-swarm")
    client.service_list = ["other_broker"]
    assert "still run" in engine.release("other")
    assert client.state == "active"


def test_a_docker_gwbridge_that_existed_before_stays() -> None:
    client = FakeClient()
    client.nets = [GWBRIDGE]
    engine = engine_with(client)
    up(engine)
    assert client.labels[GWBRIDGE_LABEL] == "1"
    engine.release("mpc-swarm")
    assert client.state == "inactive" and client.nets == [GWBRIDGE]


@pytest.mark.parametrize(
    ("client", "words"),
    [
        (FakeClient(state="active", nodes=3), "swarm of 3 nodes"),
        (FakeClient(state="active", manager=False), "not a manager"),
        (FakeClient(state="locked"), "'locked'"),
    ],
    ids=["multi-node", "worker", "locked"],
)
def test_swarms_it_cannot_use_are_refused_in_words(client: FakeClient, words: str) -> None:
    with pytest.raises(SwarmError, match=words):
        up(engine_with(client))
    assert client.state in ("active", "locked")
