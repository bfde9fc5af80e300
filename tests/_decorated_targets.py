"""Module-level functions decorated with @timeout(isolation="process"), for the tests.

They must live in an importable module: the child process finds them by name.
"""

from __future__ import annotations

import os
import signal
import time

from watchdog_timeout import timeout


@timeout(5, isolation="process")
def add(a: int, b: int) -> tuple[int, int]:
    return a + b, os.getpid()


@timeout(0.2, isolation="process", grace=0.2)
def hang() -> None:
    time.sleep(60)  # C-level: only a process can really be stopped here


@timeout(2, isolation="process")
def crash() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


@timeout(2, isolation="process")
def fail(message: str) -> None:
    raise LookupError(message)


@timeout(5, isolation="process", label="outer")
def nest(inner_seconds: float) -> object:
    return nested_hang(inner_seconds)


@timeout(lambda seconds: seconds, isolation="process", label="inner")
def nested_hang(seconds: float) -> None:
    time.sleep(60)


class Service:
    """A module-level class: its methods can be found by name in the child."""

    def __init__(self, base: int) -> None:
        self.base = base

    @timeout(5, isolation="process")
    def shifted(self, n: int) -> int:
        return self.base + n
