"""The swarm stack file, generated from compose/compose.yaml: one source of truth for the services.

Why generated and not a second file: a hand-kept copy drifts (a new setting lands in one file only).
What the generation changes, and why:

* every service gets ``deploy.endpoint_mode: dnsrr``: this kernel has no IPVS, so swarm's virtual-IP
  load balancing does not route ("No route to host"); with dnsrr a service name resolves to its task
  IPs, exactly as compose's DNS does, and ZeroMQ's long-lived connections need nothing more;
* no ``ports``: a published port on a swarm is an ingress port (IPVS again) or, in host mode, bound on
  every interface - never 127.0.0.1 only. ops.swarm reads /status through a probe container instead;
* healthchecks keep their test and interval but get more patience (:data:`HEALTH_PATIENCE`);
* ``restart`` becomes ``deploy.restart_policy`` (on-failure, or none for the one-shot batch senders),
  ``depends_on`` goes (the nodes wait for their peers themselves: ZeroMQ reconnects, batch senders
  wait for MIN_* subscribers or workers), and so do the optional services of a compose profile
  (``prometheus``, ``rabbitmq``);
* networks become attachable overlays (the probe attaches to them);
* with three nodes, placement constraints: the stable services on the ``core`` node, the scaled ones
  and the batch senders on the ``spread`` nodes, so every request and task crosses engines.

``${VAR:-default}`` is left in place: ``docker stack deploy`` interpolates it from its environment, as
compose does - all but ``${VAR:?message}``, which docker 20.10's stack deploy mangles (it substitutes
the tail of the message): the generation writes ``${VAR}`` instead, and :func:`missing_required`
checks such a variable is set before deploying, with compose's message.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from nodes import roles
from ops.compose import COMPOSE_FILE

#: The stack file format (healthcheck start_period needs 3.4+).
VERSION = "3.8"
#: Compose-only keys dropped from every service (see the module docstring).
DROPPED = ("ports", "restart", "depends_on", "profiles")
#: Healthcheck patience on a swarm: the same test, but swarm *replaces* a task that turns unhealthy where
#: compose only marks it, and on a loaded 2-core machine a 3 s exec of the check times out now and then.
HEALTH_PATIENCE = {"timeout": "10s", "retries": 5}
#: The node label placement constraints use, and its two values.
POOL_LABEL = "mpc-pool"
CORE, SPREAD = "core", "spread"
#: Pinned to the core node (NODES=3): the bound, stable endpoints and the dashboard that reads them all.
CORE_SERVICES = ("broker", "sink", "ventilator", "redis", "zpub", "dashboard")


#: ``${VAR:?message}`` / ``${VAR?message}``: a variable compose requires, with its error message.
REQUIRED = re.compile(r"\$\{(\w+):?\?([^}]*)\}")


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """compose.yaml with its YAML anchors merged (``<<: *node``)."""
    return yaml.safe_load(path.read_text())


def restart_condition(service: str, spec: Mapping[str, Any]) -> str:
    """Swarm's word for compose's ``restart``: a one-shot batch sender is never restarted, the rest always.

    Not compose's on-failure: swarm stops an unhealthy task with SIGTERM, a node then exits 0, and
    on-failure would leave the service short of its replicas for good. A replicated service keeps its count.
    """
    if spec.get("restart") == "no" or (service in roles.ROLES and roles.ROLES[service].one_shot):
        return "none"
    return "any"


def without_required(value: Any) -> Any:
    """``value`` with every ``${VAR:?message}`` written as ``${VAR}`` (strings inside lists and mappings too)."""
    if isinstance(value, str):
        return REQUIRED.sub(r"${\1}", value)
    if isinstance(value, list):
        return [without_required(v) for v in value]
    if isinstance(value, dict):
        return {k: without_required(v) for k, v in value.items()}
    return value


def missing_required(env: Mapping[str, str], path: Path = COMPOSE_FILE) -> list[str]:
    """The messages of the required variables (``${VAR:?message}``) that ``env`` leaves unset or empty."""
    return [f"{var}: {msg}" for var, msg in dict(REQUIRED.findall(path.read_text())).items() if not env.get(var)]


def generate(compose: Mapping[str, Any], replicas: Mapping[str, int] | None = None, nodes: int = 1) -> dict[str, Any]:
    """The stack document for ``docker stack deploy``; ``replicas`` per service (default 1 each)."""
    replicas = dict(replicas or {})
    services: dict[str, Any] = {}
    for name, spec in compose["services"].items():
        if spec.get("profiles"):  # optional services (prometheus, rabbitmq): compose-only for now
            continue
        out = {k: without_required(v) for k, v in spec.items() if k not in DROPPED}
        if "healthcheck" in out:
            out["healthcheck"] = {**out["healthcheck"], **HEALTH_PATIENCE}
        deploy: dict[str, Any] = {
            "endpoint_mode": "dnsrr",
            "replicas": replicas.get(name, 1),
            "restart_policy": {"condition": restart_condition(name, spec)},
        }
        if nodes > 1:
            pool = CORE if name in CORE_SERVICES else SPREAD
            deploy["placement"] = {"constraints": [f"node.labels.{POOL_LABEL} == {pool}"]}
        out["deploy"] = deploy
        services[name] = out
    networks = {
        name: {**(spec or {}), "driver": "overlay", "attachable": True} for name, spec in compose["networks"].items()
    }
    return {
        "version": VERSION,
        "services": services,
        "networks": networks,
        "volumes": copy.deepcopy(compose["volumes"]),
    }


def write(path: Path, replicas: Mapping[str, int] | None = None, nodes: int = 1) -> Path:
    """Generate from compose.yaml and write the stack file (build/swarm/, git-ignored)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Generated by ops/swarm/stack.py from compose/compose.yaml - do not edit; edit compose.yaml.\n"
    path.write_text(header + yaml.safe_dump(generate(load_compose(), replicas, nodes), sort_keys=False, width=200))
    return path
