"""JSON-lines logging, configured in one place.

Every line is one JSON object: ``ts, level, node, role, event`` plus the event's fields, so
that ``make logs`` can be piped to ``jq`` and a person can still read it. Call
:func:`setup` once per process; modules log through ``logging.getLogger(__name__)`` and
:func:`event`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

#: (node, role) of the node logging: a context variable, so nodes run as threads of one process (the
#: bench, in-process tests) each log under their own name. ``setup`` sets the process default.
log_context: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar("log_context")
_default = ("-", "-")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        node, role = log_context.get(_default)
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "node": node,
            "role": role,
            "event": getattr(record, "event", None) or record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup(node: str, role: str, level: str = "INFO") -> None:
    """Route the root logger to stdout as JSON lines, naming this node and role."""
    global _default
    _default = (node, role)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


#: A repeated anomaly is logged the first LOG_FIRST times, then every LOG_EVERY-th: a flood of bad
#: frames cannot drown the log, and the running total in each line says how many there were.
LOG_FIRST, LOG_EVERY = 10, 100


def worth_logging(n: int) -> bool:
    """Whether the ``n``-th occurrence of a repeated anomaly gets its own log line."""
    return n <= LOG_FIRST or n % LOG_EVERY == 0


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event; the fields become top-level JSON keys."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"event": name, "fields": fields})
