"""Reading the swarm's nodes without publishing a port: task discovery plus a probe container.

Why not published ports: on a swarm a published port is either an ingress port (swarm's IPVS load
balancer, which this kernel lacks) or, in host mode, bound on *every* interface - the project
publishes on 127.0.0.1 only. So ``status``, ``scale``, ``demo`` and the tests read each task's
/status from inside the stack: a small probe container (the node image, idle) attached to every
overlay network of the stack on the manager engine, which reaches every task IP on every node.
The host asks it with one ``docker exec`` per poll (:mod:`ops.status_fetch`, the same reader the host's table uses).

Which tasks exist, on which node, at which address, comes from the swarm API (services -> tasks ->
network attachments), so the table gains a ``host`` column; rows are labelled ``service-slot``
(``worker-3``), like compose's ``service-number``.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors

from ops import status_fetch
from ops.swarm.engine import Engine, SwarmError

STACK_NAMESPACE = "com.docker.stack.namespace"
STATUS_PORT = 8000
#: Task states in which a task's container may be running (swarm's "shutdown" is desired, not done).
LIVE_STATES = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running")
SCRIPT = Path(status_fetch.__file__).read_text()


@dataclass(frozen=True)
class Task:
    """One running task of the stack: ``worker-3`` on node ``mpc-swarm-node2`` at 10.0.1.7."""

    id: str
    service: str
    slot: int
    host: str
    address: str
    state: str

    @property
    def label(self) -> str:
        return f"{self.service}-{self.slot}"

    @property
    def url(self) -> str:
        return f"http://{self.address}:{STATUS_PORT}/status"


class Stack:
    """One deployed stack on a manager engine: its services, tasks and probe."""

    def __init__(self, name: str, manager: Engine) -> None:
        self.name = name
        self.manager = manager
        self.probe_name = f"{name}-probe"

    def short(self, service_name: str) -> str:
        return service_name.removeprefix(f"{self.name}_")

    def services(self) -> dict[str, Any]:
        """``{service: docker Service}`` of this stack."""
        found = self.manager.client.services.list(filters={"label": f"{STACK_NAMESPACE}={self.name}"})
        return {self.short(s.name): s for s in found}

    def replicas(self) -> dict[str, int]:
        return {
            name: int(s.attrs["Spec"]["Mode"].get("Replicated", {}).get("Replicas", 0))
            for name, s in self.services().items()
        }

    def tasks(self) -> list[Task]:
        """The running tasks (desired and actual state running), by service then slot."""
        api = self.manager.client.api
        hosts = {n["ID"]: n["Description"]["Hostname"] for n in api.nodes()}
        out = []
        for service, svc in self.services().items():
            for task in api.tasks(filters={"service": svc.id, "desired-state": "running"}):
                addresses = [
                    a.split("/")[0] for att in task.get("NetworksAttachments") or [] for a in att.get("Addresses") or []
                ]
                state = task["Status"]["State"]
                if state == "running" and addresses:
                    host = hosts.get(task.get("NodeID"), "?")
                    out.append(Task(task["ID"], service, int(task.get("Slot") or 0), host, addresses[0], state))
        return sorted(out, key=lambda t: (t.service, t.slot))

    def live(self, services: set[str]) -> list[str]:
        """Tasks of ``services`` whose container may still run (scaled to 0 is not stopped yet): ``svc.slot``."""
        api = self.manager.client.api
        out = []
        for service, svc in self.services().items():
            if service in services:
                for task in api.tasks(filters={"service": svc.id}):
                    if task["Status"]["State"] in LIVE_STATES:
                        out.append(f"{service}.{task.get('Slot')}")
        return out

    # --- the probe ------------------------------------------------------------------------------

    def networks(self) -> list[str]:
        return sorted(
            n.name for n in self.manager.client.networks.list(filters={"label": f"{STACK_NAMESPACE}={self.name}"})
        )

    def probe(self, image: str) -> Any:
        """The probe container on the manager, attached to every overlay of the stack (created once)."""
        client = self.manager.client
        try:
            container = client.containers.get(self.probe_name)
            if container.status == "running":
                return container
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        networks = self.networks()
        if not networks:
            raise SwarmError(
                f"stack {self.name} has no networks on {self.manager.name}: is it deployed? (make up-swarm)"
            )
        container = client.containers.run(
            image,
            ["infinity"],
            entrypoint=["sleep"],
            name=self.probe_name,
            detach=True,
            network=networks[0],
            labels={STACK_NAMESPACE + ".probe": self.name},
        )
        for net in networks[1:]:
            client.networks.get(net).connect(container)
        return container

    def remove_probe(self) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.manager.client.containers.get(self.probe_name).remove(force=True)

    def fetch(self, image: str, urls: list[str]) -> dict[str, dict[str, Any] | None]:
        """``{url: /status document (with _healthz) or None}``, read from inside the stack by the probe."""
        if not urls:
            return {}
        result = self.probe(image).exec_run(["python", "-c", SCRIPT, json.dumps(urls)])
        if result.exit_code != 0:
            raise SwarmError(f"the probe failed ({result.exit_code}): {result.output.decode(errors='replace')[-500:]}")
        return json.loads(result.output)

    def snapshot(self, image: str, targets: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
        """``{label: /status document}`` of every reachable ``(label, url)`` target (as ops.compose.snapshot)."""
        docs = self.fetch(image, [url for _, url in targets])
        return {label: doc for label, url in targets if (doc := docs.get(url)) is not None}
