"""What the local-process and integration tests import: the shared harness (:mod:`ops.harness`) and
bounded waits (:mod:`ops.wait`), under the names the tests have always used.

Nothing is implemented twice: ``NodeProc`` *is* :class:`ops.harness.NodeProcess`, and
:func:`wait_until` is :func:`ops.wait.until` with the tests' default of treating any exception of
the predicate (a node not listening yet, a key not there yet) as "not yet".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nodes.core.status import get_json
from ops.harness import ROOT, NodeProcess, RedisServer, free_port
from ops.wait import until

NodeProc = NodeProcess

__all__ = ["ROOT", "NodeProc", "NodeProcess", "RedisServer", "free_port", "get_json", "wait_until"]


def wait_until(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``pred`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    return until(pred, timeout, what, interval=interval, ignore=(Exception,))
