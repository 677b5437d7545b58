"""What both echo clients share: the counts, the end of a batch and its exit code, pacing without sleeping.

Each request ends exactly one way, so ``sent == answered + lost`` once the batch is done: *answered*
(its echo came back intact within REQUEST_TIMEOUT) or *lost* (it did not: no echo, a late one, or the
connection it was on broke). Nothing is re-sent: the point is to show what the transport itself did.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from nodes.core.lifecycle import EXIT_INTERRUPTED, Node
from nodes.core.log import event

log = logging.getLogger(__name__)


class Schedule:
    """When the next send is due at RATE per second (0 = now), without sleeping: a client that waits for
    echoes must keep reading while it paces, or it would misjudge their timeouts."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = time.monotonic()

    def wait(self) -> float:
        """Seconds until the next send may go (0 = now)."""
        return max(0.0, self.next - time.monotonic()) if self.interval else 0.0

    def take(self) -> None:
        if self.interval:
            self.next = max(self.next, time.monotonic() - self.interval) + self.interval


class EchoBatch(Node):
    """Base of udpclient and tcpclient: REQUESTS requests, WINDOW in flight, each answered or lost."""

    #: Counters shown in the summary line after answered/lost (per transport).
    SUMMARY: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("answered", "lost", *self.SUMMARY):
            self.stats.counters[name] = 0
        self.done = False
        self.schedule = Schedule(self.settings.rate)
        self.started = time.monotonic()

    def summary(self) -> str:
        c = self.stats.counters
        tail = "".join(f" {name.replace('_', ' ')} {c[name]}" for name in self.SUMMARY)
        return f"answered {c['answered']}/{self.settings.requests} lost {c['lost']}{tail}"

    def extra_status(self) -> dict[str, Any]:
        s = self.settings
        return {"requests": s.requests, "done": self.done, "server": s.server, "window": s.window}

    def finish(self) -> int:
        """Log the batch's summary; 0 every request answered, 1 some lost or never sent, 3 stopped early."""
        c, s = self.stats.counters, self.settings
        self.done = c["sent"] == s.requests and c["answered"] + c["lost"] == s.requests
        self.log_batch_summary(s.requests, self.done, c["answered"], self.started)
        if not self.done and self.stop.is_set():
            event(log, "batch_interrupted", logging.WARNING, exit_code=EXIT_INTERRUPTED, unsent=s.requests - c["sent"])
            return EXIT_INTERRUPTED
        return 0 if self.done and c["lost"] == 0 else 1

    def wait_server(self, attempt: Any, what: str) -> Any:
        """Call ``attempt()`` until it returns something (not None), for WAIT_TIMEOUT; None if it never does."""
        timeout = self.settings.wait_timeout
        deadline = time.monotonic() + timeout
        event(log, "waiting", what=what, server=self.settings.server, timeout_s=timeout)
        while self.running():
            result = attempt()
            if result is not None:
                event(log, "ready", what=what)
                return result
            if time.monotonic() >= deadline:
                event(log, "wait_timeout", logging.ERROR, what=what, server=self.settings.server, timeout_s=timeout)
                return None
            self.stop.wait(0.2)
        return None
