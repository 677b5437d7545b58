"""Fixtures of the docker integration tests: a compose project per test module, always torn down.

The tests need a working docker engine, a compose tool and the node image (``make image``). When
one is missing they skip with the reason - except in CI (``REQUIRE_DOCKER=1``), where a test that
cannot run must fail, never pass by skipping.

Each module gets its own project name (``mpc-it-<random>``), so it never touches a cluster a
person is running, and ``down -v`` removes exactly what the module created, even when a test fails.
The numbers each test measured are repeated in a terminal summary section, so ``pytest -q`` shows
them without ``-s``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import pytest

from ops.compose import IMAGE, ComposeError, Project, compose_tool, docker_client, image_exists
from ops.harness import free_port

#: Interpolated into compose.yaml for every module: fast work, quick retries, patient batch senders.
BASE_ENV = {"WORK_MS": "1", "TASK_MS": "0", "REQUEST_TIMEOUT": "1", "RETRIES": "3", "WAIT_TIMEOUT": "60"}

NUMBERS: list[str] = []


def _unusable() -> str | None:
    """Why the docker tests cannot run here, or None."""
    try:
        docker_client()
        compose_tool()
    except ComposeError as exc:
        return str(exc)
    if not image_exists(IMAGE):
        return f"image {IMAGE} is missing: build it with `make image` (bash scripts/build-image.sh)"
    return None


@pytest.fixture(scope="session")
def docker_ready() -> None:
    reason = _unusable()
    if reason is None:
        return
    if os.environ.get("REQUIRE_DOCKER") == "1":
        pytest.fail(f"REQUIRE_DOCKER=1 but docker is unusable: {reason}", pytrace=False)
    pytest.skip(f"docker integration tests skipped: {reason} (set REQUIRE_DOCKER=1 to make this a failure)")


@pytest.fixture(scope="module")
def cluster(docker_ready: None, request: pytest.FixtureRequest) -> Iterator[Project]:
    """An empty compose project of this module's own; tests bring up the services they need."""
    # The fixed host ports of compose.yaml, moved to free ones: never clash with a cluster a person runs.
    ports = {var: str(free_port()) for var in ("FRONTEND_HOST_PORT", "ZPUB_HOST_PORT", "REDIS_HOST_PORT")}
    project = Project(f"mpc-it-{secrets.token_hex(3)}", env={**BASE_ENV, **ports})
    NUMBERS.append(f"{request.module.__name__}: compose project {project.name} ({' '.join(compose_tool())})")
    try:
        yield project
    finally:
        project.down()


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Print a measured number and keep it for the terminal summary."""

    def emit(line: str) -> None:
        print(line)
        NUMBERS.append(f"{request.node.name}: {line}")

    return emit


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if NUMBERS:
        terminalreporter.section("docker integration: what was delivered")
        for line in NUMBERS:
            terminalreporter.write_line(line)
