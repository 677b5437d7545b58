"""One docker engine - the host's, or a swarm node container's - and the swarm state ops.swarm owns on it.

Why a class: the single-node stack runs on the host engine, the three-node one on the engines inside
the node containers; every command (``docker stack deploy``, the SDK calls) is the same but for
``DOCKER_HOST``. Each node container shares its engine's socket with the host through a bind-mounted
directory (:mod:`ops.swarm.nodes`), so the host's docker CLI and SDK talk to it directly.

Swarm ownership lives in the engine, not in a file: a swarm ops.swarm initialises carries the labels
``mpc.swarm.owner=<stack>`` (and whether docker_gwbridge existed before), so ``down`` leaves exactly
the swarm its own ``up`` created - and never one that was there before, or that another stack made.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import docker
import docker.errors

from ops.compose import pinged_client
from ops.wait import TimedOut, until

#: Labels on a swarm ops.swarm initialised: the stack that did it, and whether docker_gwbridge was there before.
OWNER_LABEL = "mpc.swarm.owner"
GWBRIDGE_LABEL = "mpc.swarm.gwbridge-existed"
GWBRIDGE = "docker_gwbridge"
INGRESS = "ingress"


class SwarmError(RuntimeError):
    """A docker or swarm step failed; the message says which and why (one line for the person)."""


class Engine:
    """A docker engine reached through ``socket`` (a unix socket path), or the host's (``None``)."""

    def __init__(self, name: str, socket: str | None = None) -> None:
        self.name = name
        self.socket = socket

    @property
    def env(self) -> dict[str, str]:
        """The environment for the docker CLI: DOCKER_HOST set to this engine's socket."""
        env = dict(os.environ)
        if self.socket:
            env["DOCKER_HOST"] = f"unix://{self.socket}"
        return env

    @cached_property
    def client(self) -> docker.DockerClient:
        try:
            return pinged_client(f"unix://{self.socket}" if self.socket else None, timeout=120)
        except docker.errors.DockerException as exc:
            raise SwarmError(f"docker engine {self.name} is not usable: {exc}") from None

    def cli(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 300, stdin: Any = None) -> str:
        """Run ``docker ARGS`` against this engine; its stdout, or a SwarmError quoting stderr."""
        cmd = ["docker", *args]
        try:
            proc = subprocess.run(
                cmd, env={**self.env, **(env or {})}, stdin=stdin, capture_output=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise SwarmError(f"`{shlex.join(cmd)}` on {self.name} did not finish within {timeout:g}s") from None
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise SwarmError(f"`{shlex.join(cmd)}` on {self.name} exited with {proc.returncode}: {err}")
        return proc.stdout.decode(errors="replace")

    # --- swarm membership --------------------------------------------------------------------

    def swarm_info(self) -> dict[str, Any]:
        return self.client.info().get("Swarm") or {}

    def in_swarm(self) -> bool:
        return self.swarm_info().get("LocalNodeState") == "active"

    def swarm_labels(self) -> dict[str, str]:
        try:
            return dict(self.client.swarm.attrs.get("Spec", {}).get("Labels") or {})
        except docker.errors.APIError:
            return {}

    def adopt_or_init(self, owner: str, advertise: str, listen: str) -> bool:
        """Make sure this engine is the manager of a swarm; True if this call initialised it.

        An engine already in a swarm is used as it is if it is a manager; a swarm that spans other
        machines is refused (the single-node stack has its image on this engine only).
        """
        info = self.swarm_info()
        state = info.get("LocalNodeState")
        if state == "active":
            if not info.get("ControlAvailable"):
                raise SwarmError(f"engine {self.name} is a swarm worker, not a manager: run this on a manager")
            if (info.get("Nodes") or 1) > 1 and not self.socket:
                raise SwarmError(
                    f"engine {self.name} is already in a swarm of {info.get('Nodes')} nodes; the single-node stack "
                    "needs a single-node swarm (or none: ops.swarm then makes one and removes it at down)"
                )
            return False
        if state not in ("inactive", None, ""):
            raise SwarmError(f"engine {self.name}: swarm state {state!r}, neither in a swarm nor out of one")
        had_gwbridge = bool(self.client.networks.list(names=[GWBRIDGE]))
        labels = {OWNER_LABEL: owner, GWBRIDGE_LABEL: "1" if had_gwbridge else "0"}
        try:
            self.client.swarm.init(advertise_addr=advertise, listen_addr=listen, labels=labels)
        except docker.errors.APIError as exc:
            raise SwarmError(f"swarm init on {self.name} failed: {exc.explanation or exc}") from None
        return True

    def release(self, owner: str) -> str:
        """Leave the swarm if ``owner`` initialised it and no service is left; what was done, in words."""
        if not self.in_swarm():
            return "not in a swarm"
        labels = self.swarm_labels()
        if labels.get(OWNER_LABEL) != owner:
            return "swarm kept (ops.swarm did not create it for this stack)"
        others = self.client.services.list()
        if others:
            return f"swarm kept: {len(others)} services of other stacks still run on it"
        # The ingress network first (no service publishes a port): leaving with it in place may leave its
        # sandbox's endpoint counted on docker_gwbridge for good ("has active endpoints", moby#37018). It is
        # refused while the removed stack's tasks are still going away, so it is tried again for a while.
        with contextlib.suppress(TimedOut):
            until(lambda: self._remove_network(INGRESS), 30, f"{INGRESS} to have no endpoints", interval=0.5)
        self.client.swarm.leave(force=True)
        if labels.get(GWBRIDGE_LABEL) == "0":
            try:  # the ingress sandbox leaves it a moment after the swarm is gone
                until(lambda: self._remove_network(GWBRIDGE), 30, f"{GWBRIDGE} to have no endpoints", interval=0.5)
            except TimedOut:
                return f"left the swarm; {GWBRIDGE} still has endpoints after 30 s, kept"
        return "left the swarm it had created"

    def _remove_network(self, name: str) -> bool:
        """Remove network ``name``; True once it is gone, False while something is still attached."""
        for net in self.client.networks.list(names=[name]):
            try:
                net.remove()
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError:
                return False
        return True
