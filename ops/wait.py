"""Bounded waiting and log tails: the one way ops, the tests and the bench wait for something.

Why one helper: every wait in this project must end (a hung ``make up`` or test is worse than a failed
one) and, when it ends without what it waited for, must say *what* that was - and show the tail of
the log that explains why. :func:`until` is that loop; :func:`tail` is that log excerpt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class WaitError(RuntimeError):
    """A bounded wait ended without what it waited for; the message names it."""


class TimedOut(WaitError):
    """The deadline passed."""


class Gone(WaitError):
    """Raised by a predicate when what it waits for can no longer happen (e.g. the process exited).

    It ends the wait at once, whatever :func:`until`'s ``ignore`` says: failing fast beats timing out.
    """


def until(
    pred: Callable[[], T],
    timeout: float,
    what: str | Callable[[], str],
    *,
    interval: float = 0.1,
    ignore: tuple[type[BaseException], ...] = (),
    error: type[Exception] = TimedOut,
) -> T:
    """Call ``pred`` until it returns something truthy and return that; fail after ``timeout`` seconds.

    ``pred`` runs at least once and once more at the deadline. Exceptions of the ``ignore`` types
    count as "not yet" (a node not listening yet) and the last one is quoted in the error. On timeout
    raises ``error`` (callers keep their own error type: LocalError, ComposeError, BenchError) with
    ``timed out after Ns waiting for <what>``; ``what`` may be a callable, evaluated only then, so
    the message can name what is still missing.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        result: T | None = None
        try:
            result = pred()
        except Gone:
            raise
        except ignore as exc:
            last = exc
        if result:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(interval, left))
    described = what() if callable(what) else what
    raise error(f"timed out after {timeout:g}s waiting for {described}" + (f" (last error: {last!r})" if last else ""))


def last_lines(text: str, lines: int = 15, indent: str = "") -> str:
    """The last ``lines`` lines of ``text``, each prefixed with ``indent`` (for a message quoting a log)."""
    return "\n".join(indent + line for line in text.rstrip("\n").splitlines()[-lines:])


def tail(path: Path, lines: int = 15, indent: str = "") -> str:
    """The last lines of a log file, or a note that there is no log yet (never raises)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"{indent}(no log yet at {path})"
    return last_lines(text, lines, indent) or f"{indent}(empty log {path})"
