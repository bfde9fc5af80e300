"""Module-level functions for tests/test_nesting.py (process isolation pickles them by name)."""

from __future__ import annotations

import time
from typing import Any, Callable

from watchdog_timeout import TimeoutExpired, Watchdog, deadline, timeout

KINDS = ("deadline", "inline", "thread", "process", "watchdog")


def spin(seconds: float) -> str:
    """Busy pure-Python work for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "finished"


def limited(kind: str, seconds: float, function: Callable[..., Any], *args: Any) -> Any:
    """Call ``function(*args)`` under a limit of the given kind."""
    if kind == "deadline":
        with deadline(seconds):
            return function(*args)
    if kind == "watchdog":
        with Watchdog(seconds):
            return function(*args)
    isolation = "thread" if kind == "thread" else kind
    return timeout(seconds, isolation=isolation)(function)(*args)  # type: ignore[arg-type]


def between(inner_kind: str, inner_seconds: float, work: float) -> tuple[str, Any]:
    """The code between two limits: it catches TimeoutExpired from the inner one."""
    try:
        return ("returned", limited(inner_kind, inner_seconds, spin, work))
    except TimeoutExpired as caught:
        return ("caught between", caught.seconds)
