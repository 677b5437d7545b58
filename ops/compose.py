"""One compose project of the cluster: the compose CLI for its lifecycle, the docker SDK for its state.

Why both: compose v1 (``docker-compose`` 1.29) has no ``up --wait`` and its JSON output differs from
v2's, so this module asks compose only to create, scale and remove containers, and reads everything
else - containers, health, published ports, logs - from the engine through the docker SDK, filtered
by the labels compose puts on every container (``com.docker.compose.project`` / ``.service``).
That works the same for ``docker compose`` (v2) and ``docker-compose`` (v1).

Every call is scoped to one project name, so ``down`` and the integration tests only ever touch
containers, networks and volumes they created.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from nodes import roles
from nodes.core.status import get_json
from ops.wait import last_lines, until

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose" / "compose.yaml"
#: Git-ignored; holds the generated Redis password (compose also reads it from the project directory).
ENV_FILE = ROOT / "compose" / ".env"
DEFAULT_PROJECT = os.environ.get("MPC_PROJECT", "mpc")
IMAGE = os.environ.get("NODE_IMAGE", "mpc-node:latest")
STATUS_PORT = "8000/tcp"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
ONEOFF_LABEL = "com.docker.compose.oneoff"
#: Services in the registry's order (each pattern's roles together; the status table follows it), then redis.
SERVICES = (*roles.NAMES, "redis")


class ComposeError(RuntimeError):
    """Compose or docker failed, or the cluster did not become healthy; the message says what and where."""


@cache
def compose_tool() -> tuple[str, ...]:
    """The compose command: ``$COMPOSE`` if set, else ``docker compose`` (v2) if it works, else ``docker-compose``."""
    if os.environ.get("COMPOSE"):
        return tuple(shlex.split(os.environ["COMPOSE"]))
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ("docker", "compose")
    if shutil.which("docker-compose"):
        return ("docker-compose",)
    raise ComposeError("neither `docker compose` nor `docker-compose` is installed (or set COMPOSE)")


def pinged_client(base_url: str | None = None, timeout: float = 60) -> docker.DockerClient:
    """A client of the engine at ``base_url`` (None: DOCKER_HOST or the default socket) that answered a ping;
    raises docker's DockerException when it cannot be reached (each caller says which engine, in its terms)."""
    client = docker.DockerClient(base_url=base_url, timeout=timeout) if base_url else docker.from_env(timeout=timeout)
    client.ping()
    return client


@cache
def docker_client() -> docker.DockerClient:
    """The engine, or a ComposeError saying why it cannot be used."""
    try:
        return pinged_client()
    except docker.errors.DockerException as exc:
        raise ComposeError(f"the docker engine is not usable: {exc}") from None


def image_exists(image: str = IMAGE) -> bool:
    try:
        docker_client().images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def read_env_file(path: Path = ENV_FILE) -> dict[str, str]:
    """``KEY=VALUE`` lines of a compose env file (comments and blank lines skipped)."""
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            out[key.strip()] = value.strip()
    return out


def ensure_env_file(path: Path = ENV_FILE) -> dict[str, str]:
    """Create the env file with a random Redis password if it is missing; returns its values.

    The password never appears in the repository: the file is git-ignored, created 0600, and
    excluded from the image build context.
    """
    values = read_env_file(path)
    if not values.get("REDIS_PASSWORD"):
        values["REDIS_PASSWORD"] = secrets.token_urlsafe(24)  # [A-Za-z0-9_-]: safe in compose interpolation
        lines = ["# Written by ops/compose.py (git-ignored). Compose reads it for ${...} interpolation."]
        lines += [f"{k}={v}" for k, v in values.items()]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
    return values


def label_of(container: Container) -> str:
    """``worker-2`` for a service replica, ``subscriber-run-1a2b3c`` for a one-off (``compose run``)."""
    labels = container.labels
    service = labels.get(SERVICE_LABEL, container.name)
    if labels.get(ONEOFF_LABEL) == "True":
        return f"{service}-run-{container.id[:6]}"
    return f"{service}-{labels.get(NUMBER_LABEL, '?')}"


def _sort_key(container: Container) -> tuple[int, int, str]:
    service = container.labels.get(SERVICE_LABEL, "")
    order = SERVICES.index(service) if service in SERVICES else len(SERVICES)
    number = container.labels.get(NUMBER_LABEL, "")
    return order, int(number) if number.isdigit() else 10**6, container.name


def status_url(container: Container) -> str | None:
    """``http://127.0.0.1:PORT/status`` of the container's published status port, if it has one."""
    for binding in (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(STATUS_PORT) or []:
        if binding.get("HostIp") in ("127.0.0.1", "0.0.0.0", "") and binding.get("HostPort"):
            return f"http://127.0.0.1:{binding['HostPort']}/status"
    return None


def health_of(container: Container) -> str:
    """``healthy``, ``unhealthy``, ``starting``, or the container state when it has no health (e.g. ``exited``)."""
    state = container.attrs.get("State", {})
    if state.get("Status") != "running":
        return str(state.get("Status", "unknown"))
    return str((state.get("Health") or {}).get("Status", "running"))


def logs_tail(container: Container, lines: int = 15) -> str:
    """The container's last log lines, indented for an error message (the engine keeps the logs, not a file)."""
    try:
        text = container.logs(tail=lines).decode("utf-8", "replace")
    except docker.errors.APIError as exc:
        text = f"(no logs: {exc})"
    return last_lines(text, lines, "    ")


class Project:
    """One compose project: its name, the compose file and the variables compose interpolates.

    ``env`` holds tunables (REQUESTS, RATE, MIN_PIPEWORKERS, ...) layered over the env file and
    the process environment; :meth:`compose` passes them to every compose call, so a replica
    added later by ``scale`` gets the same settings as the first ones.
    """

    def __init__(
        self,
        name: str = DEFAULT_PROJECT,
        env: Mapping[str, str] | None = None,
        compose_file: Path = COMPOSE_FILE,
        env_file: Path = ENV_FILE,
    ) -> None:
        self.name = name
        self.env = dict(env or {})
        self.compose_file = compose_file
        self.env_file = env_file
        #: Files laid over ``compose_file`` (``-f`` each, in order), e.g. compose/security.yaml (SECURITY=curve).
        self.overrides: list[Path] = []

    # --- the compose CLI ---------------------------------------------------------------------

    def compose(
        self, *args: str, env: Mapping[str, str] | None = None, capture: bool = False, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run ``compose -p NAME -f FILE --env-file ENV ARGS``; raises ComposeError on a non-zero exit."""
        dotenv = ensure_env_file(self.env_file)
        files = [arg for path in (self.compose_file, *self.overrides) for arg in ("-f", str(path))]
        cmd = [*compose_tool(), "-p", self.name, *files, "--env-file", str(self.env_file), *args]
        full_env = {**dotenv, **os.environ, **self.env, **(env or {})}
        try:
            proc = subprocess.run(
                cmd, env=full_env, cwd=ROOT, text=True, capture_output=capture, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise ComposeError(f"`{shlex.join(cmd)}` did not finish within {timeout:.0f}s") from None
        if proc.returncode != 0:
            detail = f":\n{proc.stderr.strip()}" if capture and proc.stderr else ""
            raise ComposeError(f"`{shlex.join(cmd)}` exited with {proc.returncode}{detail}")
        return proc

    def up(
        self,
        services: Sequence[str] = (),
        scale: Mapping[str, int] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        no_deps: bool = False,
        recreate: str = "auto",
        quiet: bool = False,
    ) -> None:
        """``up -d`` of ``services`` (all if empty) with ``--scale`` counts.

        ``recreate``: ``auto`` (compose decides), ``force`` (rerun one-shot batches), ``no`` (live
        scaling: never restart a running replica, only add or remove some).
        """
        args = ["up", "-d"]
        if no_deps:
            args.append("--no-deps")
        if recreate == "force":
            args.append("--force-recreate")
        elif recreate == "no":
            args.append("--no-recreate")
        for service, n in (scale or {}).items():
            args += ["--scale", f"{service}={n}"]
        self.compose(*args, *services, env=env, capture=quiet)

    def run_detached(self, service: str, env: Mapping[str, str]) -> Container:
        """An extra container of ``service`` with its own settings (``compose run -d``), status port published.

        How a test gets subscribers with different topic sets from one service definition; ``down``
        removes these one-off containers with the rest.
        """
        args = ["run", "-d", "--no-deps", "-p", "127.0.0.1::8000"]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        out = self.compose(*args, service, capture=True).stdout.strip().splitlines()
        if not out:
            raise ComposeError(f"`compose run -d {service}` printed no container name")
        return docker_client().containers.get(out[-1].strip())

    def down(self) -> None:
        """Remove this project's containers (one-offs included), networks and volumes; nothing else."""
        self.compose("down", "-v", "--remove-orphans", "--timeout", "5", capture=True)

    # --- state from the engine ---------------------------------------------------------------

    def containers(self, services: Iterable[str] = (), running: bool = False) -> list[Container]:
        """This project's containers (of ``services`` if given), in diagram order."""
        wanted = set(services)
        found = docker_client().containers.list(all=not running, filters={"label": f"{PROJECT_LABEL}={self.name}"})
        found = [c for c in found if not wanted or c.labels.get(SERVICE_LABEL) in wanted]
        return sorted(found, key=_sort_key)

    def targets(self, services: Iterable[str] = ()) -> list[tuple[str, str]]:
        """``[(label, status URL)]`` of the running containers that publish a status port (for nodes.table)."""
        out = []
        for c in self.containers(services, running=True):
            url = status_url(c)
            if url:
                out.append((label_of(c), url))
        return out

    def wait_healthy(
        self, timeout: float = 120.0, services: Iterable[str] = (), expect: Mapping[str, int] | None = None
    ) -> list[Container]:
        """Wait until every container (of ``services``) is healthy and ``expect`` counts are running.

        Fails fast when a container exits (or is restarting after a crash), and on timeout; the
        error names each container that is not healthy with its state and the tail of its logs.
        """
        services = list(services)
        expect = dict(expect or {})
        seen: dict[str, Any] = {"containers": [], "problems": {}, "short": {}}

        def healthy() -> list[Container]:
            containers = self.containers(services)
            problems = {c.name: health_of(c) for c in containers if health_of(c) != "healthy"}
            short = {
                svc: n
                for svc, n in expect.items()
                if sum(c.labels.get(SERVICE_LABEL) == svc and health_of(c) == "healthy" for c in containers) < n
            }
            seen.update(containers=containers, problems=problems, short=short)
            if any(health_of(c) in ("exited", "dead", "restarting") for c in containers):
                raise ComposeError(report(f"project {self.name}: a container exited or is restarting:"))
            return containers if containers and not problems and not short else []

        def report(why: str) -> str:
            return "\n".join([why, *_report_lines(**seen)])

        everyone = f"every container of project {self.name} to be healthy"
        return until(healthy, timeout, lambda: report(everyone), interval=0.5, error=ComposeError)


def _report_lines(containers: list[Container], problems: dict[str, str], short: dict[str, int]) -> list[str]:
    """The failed containers with their log tails first; those merely still starting by name only."""
    lines = []
    starting = []
    for c in containers:
        if problems.get(c.name) == "starting":
            starting.append(c.name)
        elif c.name in problems:
            lines.append(f"  {c.name}: {problems[c.name]}, last log lines:\n{logs_tail(c)}")
    if starting:
        lines.append(f"  still starting: {', '.join(starting)}")
    lines += [f"  service {svc}: fewer than {n} healthy containers" for svc, n in short.items()]
    return lines or ["  no containers at all"]


def status_of(url: str, timeout: float = 2.0) -> dict[str, Any]:
    """One node's /status document."""
    return get_json(url, timeout)


def snapshot(targets: Iterable[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """``{label: /status document}`` of every reachable target (for before/after comparisons)."""
    out = {}
    for label, url in targets:
        try:
            out[label] = status_of(url)
        except OSError:
            continue
    return out


def labelled_delta(before: Mapping[str, Any] | None, after: Mapping[str, Any], group: str) -> dict[str, int]:
    """Growth of one labelled counter group (e.g. the broker's ``replies_by_worker``) between two documents."""
    old = ((before or {}).get("labelled") or {}).get(group) or {}
    new = (after.get("labelled") or {}).get(group) or {}
    return {key: n - old.get(key, 0) for key, n in new.items() if n - old.get(key, 0)}
