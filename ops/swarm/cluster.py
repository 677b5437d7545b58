"""The cluster as one swarm stack: deploy, wait healthy, read status, scale, rerun batches, remove.

:class:`SwarmCluster` is what the command line (:mod:`ops.swarm.__main__`) and the integration tests
drive. Where the stack runs is found, never stored: if node containers of this stack exist
(:mod:`ops.swarm.nodes`) their first engine is the manager, else the host's engine is.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import docker.errors

from nodes import roles
from ops import table
from ops.compose import ENV_FILE, IMAGE, ROOT, ensure_env_file
from ops.swarm import stack as stackfile
from ops.swarm.engine import Engine, SwarmError
from ops.swarm.nodes import SwarmNodes
from ops.swarm.probe import STACK_NAMESPACE, Stack, Task
from ops.wait import until

DEFAULT_STACK = os.environ.get("MPC_SWARM_STACK", "mpc-swarm")
#: The single-node swarm listens and advertises on loopback only: nothing outside the machine joins it.
LOOPBACK_ADVERTISE, LOOPBACK_LISTEN = "127.0.0.1", "127.0.0.1:2377"


class SwarmCluster:
    """One stack of the cluster (``name``), on the host's swarm or on its own node containers.

    ``env`` holds tunables (REQUESTS, WORK_MS, REDIS_PASSWORD, ...) layered over compose/.env and the
    process environment: ``docker stack deploy`` interpolates compose.yaml's ``${...}`` from them.
    """

    def __init__(self, name: str = DEFAULT_STACK, env: Mapping[str, str] | None = None, image: str = IMAGE) -> None:
        self.name = name
        self.env = dict(env or {})
        self.image = image
        self.nodes = SwarmNodes(name)
        self.stack_file = ROOT / "build" / "swarm" / f"{name}.yaml"

    # --- where it runs --------------------------------------------------------------------------

    def on_nodes(self) -> bool:
        return self.nodes.exist()

    @property
    def manager(self) -> Engine:
        return self.nodes.manager if self.on_nodes() else Engine("host")

    @property
    def stack(self) -> Stack:
        return Stack(self.name, self.manager)

    # --- up -------------------------------------------------------------------------------------

    def up(self, replicas: Mapping[str, int], nodes: int = 1, timeout: float = 180, say: Any = print) -> None:
        """Swarm (init on this engine, or three node containers), deploy, wait until every task is healthy."""
        if nodes not in (1, 3):
            raise SwarmError(f"--nodes {nodes}: 1 (this engine) or 3 (node containers) only")
        host = Engine("host")
        try:
            host.client.images.get(self.image)
        except Exception:  # noqa: BLE001 - ImageNotFound or an API error: say what to do either way
            raise SwarmError(f"image {self.image} not found: build it with `make image`") from None
        t0 = time.monotonic()
        if nodes == 3:
            if not self.on_nodes():
                self.nodes.create()
                say(f"3 node engines up in {time.monotonic() - t0:.1f}s")
                self.nodes.load_image(self.image)
                say(f"{self.image} loaded into each node in {time.monotonic() - t0:.1f}s")
            self.nodes.form_swarm()
            say(f"swarm of 3 nodes ready in {time.monotonic() - t0:.1f}s")
        else:
            if self.on_nodes():
                raise SwarmError(f"stack {self.name} runs on node containers: `down` it first")
            created = host.adopt_or_init(self.name, LOOPBACK_ADVERTISE, LOOPBACK_LISTEN)
            say("initialised a single-node swarm on this engine" if created else "using this engine's swarm")
        self.deploy(replicas, nodes)
        self.wait_healthy(timeout)

    def deploy_env(self) -> dict[str, str]:
        return {**ensure_env_file(ENV_FILE), **os.environ, "NODE_IMAGE": self.image, **self.env}

    def deploy(self, replicas: Mapping[str, int], nodes: int) -> None:
        env = self.deploy_env()
        missing = stackfile.missing_required(env)
        if missing:
            raise SwarmError("; ".join(missing))
        stackfile.write(self.stack_file, replicas, nodes)
        self.manager.cli("stack", "deploy", "--resolve-image", "never", "-c", str(self.stack_file), self.name, env=env)

    # --- state ----------------------------------------------------------------------------------

    def tasks(self, services: Iterable[str] = ()) -> list[Task]:
        wanted = set(services)
        return [t for t in self.stack.tasks() if not wanted or t.service in wanted]

    def targets(self, services: Iterable[str] = ()) -> list[tuple[str, str]]:
        """``[(label, url)]`` of the running tasks, in the registry's order (as compose's targets)."""
        order = {name: i for i, name in enumerate((*roles.NAMES, "redis"))}
        tasks = sorted(self.tasks(services), key=lambda t: (order.get(t.service, 99), t.slot))
        return [(t.label, t.url) for t in tasks if t.service != "redis"]

    def snapshot(self, targets: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
        return self.stack.snapshot(self.image, targets)

    def counts(self) -> dict[str, int]:
        """Running tasks per service."""
        out: dict[str, int] = {}
        for t in self.tasks():
            out[t.service] = out.get(t.service, 0) + 1
        return out

    def rows(self) -> tuple[list[table.Row], dict[str, str]]:
        """Status table rows of every running task (redis has no /status) and each row's node."""
        tasks = [t for t in self.tasks() if t.service != "redis"]
        order = {name: i for i, name in enumerate(roles.NAMES)}
        tasks.sort(key=lambda t: (order.get(t.service, 99), t.slot))
        docs = self.stack.fetch(self.image, [t.url for t in tasks])
        return [(t.label, docs.get(t.url)) for t in tasks], {t.label: t.host for t in tasks}

    def task_errors(self, services: Iterable[str]) -> list[str]:
        """The latest error swarm reports for each service whose tasks do not run (e.g. no such image)."""
        out = []
        api = self.manager.client.api
        wanted = set(services)
        for name, svc in self.stack.services().items():
            if wanted and name not in wanted:
                continue
            for task in api.tasks(filters={"service": svc.id}):
                status = task.get("Status") or {}
                if status.get("Err") and status.get("State") in ("failed", "rejected"):
                    out.append(f"  {name}: {status['State']}: {status['Err']}")
                    break
        return out

    def wait_healthy(self, timeout: float, expect: Mapping[str, int] | None = None) -> list[Task]:
        """Until every service runs its replica count (or ``expect``) of tasks and each answers /healthz ok."""
        seen: dict[str, Any] = {"short": {}, "sick": []}

        def healthy() -> list[Task]:
            want = {**self.stack.replicas(), **(expect or {})}
            tasks = self.tasks()
            have: dict[str, int] = {}
            for t in tasks:
                have[t.service] = have.get(t.service, 0) + 1
            short = {svc: f"{have.get(svc, 0)}/{n}" for svc, n in want.items() if have.get(svc, 0) != n}
            probed = [t for t in tasks if t.service != "redis"]
            docs = self.stack.fetch(self.image, [t.url for t in probed]) if not short else {}
            sick = [t.label for t in probed if not table.healthy(docs.get(t.url))] if not short else []
            seen.update(short=short, sick=sick)
            return tasks if want and not short and not sick else []

        def what() -> str:
            lines = [f"stack {self.name} to be healthy:"]
            lines += [f"  service {svc}: {n} tasks running" for svc, n in seen["short"].items()]
            if seen["sick"]:
                lines.append(f"  not healthy yet: {', '.join(seen['sick'])}")
            lines += self.task_errors(seen["short"])
            return "\n".join(lines)

        return until(healthy, timeout, what, interval=1.0, ignore=(SwarmError,), error=SwarmError)

    # --- changes --------------------------------------------------------------------------------

    def set_replicas(self, replicas: Mapping[str, int]) -> None:
        """``docker service scale``: swarm adds or removes tasks, running ones keep serving."""
        self.manager.cli("service", "scale", "--detach", *(f"{self.name}_{svc}={n}" for svc, n in replicas.items()))

    def scale(self, replicas: Mapping[str, int], timeout: float = 120) -> None:
        """Change replica counts live and wait until the new tasks are healthy."""
        self.set_replicas(replicas)
        self.wait_healthy(timeout, expect=replicas)

    def stop(self, services: Iterable[str], timeout: float = 60) -> None:
        """Scale ``services`` to 0 and wait until their tasks are gone (a batch sender stops mid-batch)."""
        services = list(services)
        self.set_replicas(dict.fromkeys(services, 0))
        until(
            lambda: not self.tasks(services), timeout, f"{', '.join(services)} to stop", interval=0.5, error=SwarmError
        )

    def rerun(self, env: Mapping[str, str], replicas: Mapping[str, int], timeout: float) -> None:
        """Start (stopped) batch senders afresh with new settings: ``replicas`` of them, the rest as they are.

        The stack is deployed again with ``env`` among the variables compose.yaml interpolates - not
        ``service update --env-add``, which would set e.g. RATE on every batch sender, where compose maps
        RATE, PIPE_RATE and PUB_RATE to each one's own RATE. Services whose spec does not change keep running.
        """
        self.env.update(env)
        self.deploy(self.stack.replicas(), 3 if self.on_nodes() else 1)
        # Then new tasks, forced: a one-shot service (restart condition none) scaled back up from 0 with an
        # unchanged spec gets no new task at all - swarm counts the slots' finished ones.
        for svc, n in replicas.items():
            self.manager.cli("service", "update", "--detach", "--force", "--replicas", str(n), f"{self.name}_{svc}")
        self.wait_healthy(timeout, expect=replicas)

    # --- down -----------------------------------------------------------------------------------

    def down(self) -> str:
        """Remove the stack and whatever of it this command made: node containers, or the swarm it initialised."""
        n = self.nodes.remove()  # by label: also the network or volumes of an `up --nodes 3` that failed early
        if n:
            return f"removed {n} node containers (and with them the swarm and every task), their volumes and network"
        host = Engine("host")
        if not host.in_swarm():
            return "no swarm on this engine: nothing to remove"
        stack = Stack(self.name, host)
        stack.remove_probe()
        client = host.client
        label = {"label": f"{STACK_NAMESPACE}={self.name}"}
        if stack.services():
            host.cli("stack", "rm", self.name)
        until(lambda: not client.api.containers(all=True, filters=label), 60, f"the tasks of {self.name} to go")
        for leftover in (*client.networks.list(filters=label), *client.volumes.list(filters=label)):
            with contextlib.suppress(docker.errors.NotFound):  # stack rm removes networks asynchronously
                leftover.remove()
        return f"stack {self.name} removed; {host.release(self.name)}"
