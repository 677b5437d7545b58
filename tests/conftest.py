"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import NodeProc


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator:
    """Start nodes as processes: ``nodes("worker", {"WORK_MS": "1"})``; all stopped at teardown."""
    started: list[NodeProc] = []

    def start(role: str, env: dict[str, str] | None = None, name: str | None = None, healthy: bool = True) -> NodeProc:
        node = NodeProc(role, env or {}, tmp_path, name)
        started.append(node)
        return node.wait_healthy() if healthy else node

    yield start
    for node in reversed(started):
        node.stop()
