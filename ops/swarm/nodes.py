"""Three swarm nodes on one machine: each a container running its own dockerd (``make up-swarm NODES=3``).

Why containers and not VMs: the point is that every request and task crosses from one docker engine to
another over a real overlay network, and three engines in containers show that on any one machine.
How a node container runs (the issue's checked facts): no ``--privileged`` (this host cannot grant
CAP_SYS_RESOURCE, so it does not even start) but every other capability, no seccomp/apparmor
confinement, all devices allowed by the cgroup rule, and /sys + cgroups made writable by the image's
entry script (compose/swarm-node/dockerd-entry.sh). The inner /var/lib/docker is a named volume:
overlay2 cannot stack on the container's own overlay2 root.

Each engine's socket is bind-mounted to a host directory, so the host talks to it as an
:class:`~ops.swarm.engine.Engine`. Everything carries the label ``mpc.swarm.stack=<stack>`` and is
removed by that label: containers, their volumes, the bridge network they share, the socket directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker.errors

from ops.swarm.engine import Engine, SwarmError
from ops.swarm.stack import CORE, POOL_LABEL, SPREAD
from ops.wait import until

SWARM_NODE_IMAGE = os.environ.get("SWARM_NODE_IMAGE", "mpc-swarm-node:latest")
STACK_LABEL = "mpc.swarm.stack"
INDEX_LABEL = "mpc.swarm.node"
#: Where the inner engine listens besides its own /var/run/docker.sock (bind-mounted from the host).
INNER_SOCKET_DIR = "/run/mpc-node"
#: ``docker run`` options that let dockerd run in a container without --privileged (see the module docstring).
#: The CLI, not the SDK: ``systempaths=unconfined`` is a CLI option (it clears masked and read-only paths).
RUN_OPTIONS = (
    "--init",
    "--cap-add=ALL",
    "--cap-drop=SYS_RESOURCE",
    "--security-opt=seccomp=unconfined",
    "--security-opt=apparmor=unconfined",
    "--security-opt=systempaths=unconfined",
    "--device-cgroup-rule=a *:* rwm",
    *(("--device=/dev/fuse",) if os.path.exists("/dev/fuse") else ()),
)


def socket_dir(stack: str) -> Path:
    """The host directory holding each node's engine socket (short: a unix socket path has ~107 bytes)."""
    return Path(tempfile.gettempdir()) / f"mpc-swarm-{stack}"


def node_name(stack: str, index: int) -> str:
    return f"{stack}-node{index}"


class SwarmNodes:
    """The node containers of one stack: create, load the node image, form the swarm, remove."""

    def __init__(self, stack: str, count: int = 3) -> None:
        self.stack = stack
        self.count = count
        self.host = Engine("host")
        self.network = f"{stack}-nodes"

    def engine(self, index: int) -> Engine:
        return Engine(node_name(self.stack, index), str(socket_dir(self.stack) / f"node{index}" / "docker.sock"))

    @property
    def manager(self) -> Engine:
        return self.engine(1)

    def exist(self) -> bool:
        """Whether this stack runs on node containers (then status/scale/demo/down go to node 1's engine)."""
        return bool(self.host.client.containers.list(all=True, filters={"label": f"{STACK_LABEL}={self.stack}"}))

    def running(self) -> dict[int, bool]:
        """Node index -> whether its container is running."""
        found = self.host.client.containers.list(all=True, filters={"label": f"{STACK_LABEL}={self.stack}"})
        return {int(c.labels[INDEX_LABEL]): c.status == "running" for c in found}

    def container(self, index: int):  # noqa: ANN201 - docker's Container
        return self.host.client.containers.get(node_name(self.stack, index))

    # --- up -------------------------------------------------------------------------------------

    def create(self, image: str = SWARM_NODE_IMAGE) -> None:
        """Start the node containers and wait until each inner engine answers."""
        client = self.host.client
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            raise SwarmError(
                f"image {image} not found: build it with `bash scripts/build-swarm-node-image.sh`"
            ) from None
        labels = {STACK_LABEL: self.stack}
        if not client.networks.list(names=[self.network]):
            client.networks.create(self.network, driver="bridge", labels=labels)
        for i in range(1, self.count + 1):
            sock_dir = socket_dir(self.stack) / f"node{i}"
            sock_dir.mkdir(parents=True, exist_ok=True)
            volume = client.volumes.create(f"{node_name(self.stack, i)}-docker", labels=labels)
            self.host.cli(
                "run",
                "--detach",
                f"--name={node_name(self.stack, i)}",
                f"--hostname={node_name(self.stack, i)}",
                f"--label={STACK_LABEL}={self.stack}",
                f"--label={INDEX_LABEL}={i}",
                f"--network={self.network}",
                f"--volume={volume.name}:/var/lib/docker",
                f"--volume={sock_dir}:{INNER_SOCKET_DIR}",
                *RUN_OPTIONS,
                image,
                f"--host=unix://{INNER_SOCKET_DIR}/docker.sock",
            )
        for i in range(1, self.count + 1):
            engine = self.engine(i)  # its socket appears once dockerd listens: until then client raises
            until(
                lambda e=engine: e.client.ping(),
                60,
                f"the engine in {engine.name} to answer",
                interval=0.2,
                ignore=(SwarmError,),
            )

    def load_image(self, image: str) -> None:
        """``docker save`` the node image once on the host, ``docker load`` it into every node in parallel.

        No registry: swarm runs what each engine already has (stack deploy --resolve-image never).
        """
        with tempfile.TemporaryDirectory(prefix="mpc-swarm-image-") as tmp:
            tar = Path(tmp) / "image.tar"
            self.host.cli("save", "-o", str(tar), image, timeout=300)

            def load(i: int) -> str:
                return self.engine(i).cli("load", "-q", "-i", str(tar), timeout=300)

            with ThreadPoolExecutor(self.count) as pool:
                list(pool.map(load, range(1, self.count + 1)))

    def address(self, index: int) -> str:
        c = self.container(index)
        return c.attrs["NetworkSettings"]["Networks"][self.network]["IPAddress"]

    def form_swarm(self) -> None:
        """Node 1 initialises the swarm (labelled as this stack's), the others join as workers; pools labelled."""
        first = self.address(1)
        self.manager.adopt_or_init(self.stack, advertise=first, listen="0.0.0.0:2377")
        token = self.manager.client.swarm.attrs["JoinTokens"]["Worker"]
        for i in range(2, self.count + 1):
            addr = self.address(i)
            self.engine(i).client.swarm.join(
                remote_addrs=[f"{first}:2377"], join_token=token, listen_addr="0.0.0.0:2377", advertise_addr=addr
            )

        def ready() -> list:
            nodes = self.manager.client.nodes.list()
            up = [n for n in nodes if n.attrs["Status"]["State"] == "ready"]
            return nodes if len(up) == self.count else []

        for node in until(ready, 60, f"{self.count} swarm nodes ready", interval=0.3):
            spec = node.attrs["Spec"]
            host = node.attrs["Description"]["Hostname"]
            spec["Labels"] = {
                **(spec.get("Labels") or {}),
                POOL_LABEL: CORE if host == node_name(self.stack, 1) else SPREAD,
            }
            node.update(spec)

    # --- down / faults --------------------------------------------------------------------------

    def stop(self, index: int, timeout: int = 10) -> None:
        """Stop one node container (its dockerd stops its tasks first): a whole host going away."""
        self.container(index).stop(timeout=timeout)

    def remove(self) -> int:
        """Remove the node containers, their volumes, the network and the socket directory; how many nodes."""
        client = self.host.client
        label = {"label": f"{STACK_LABEL}={self.stack}"}
        found = client.containers.list(all=True, filters=label)
        with ThreadPoolExecutor(max(1, len(found))) as pool:
            list(pool.map(lambda c: c.remove(force=True, v=True), found))
        for volume in client.volumes.list(filters=label):
            volume.remove(force=True)
        for net in client.networks.list(filters=label):
            net.remove()
        shutil.rmtree(socket_dir(self.stack), ignore_errors=True)
        return len(found)
