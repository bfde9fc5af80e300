"""Plain helpers for the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Callable, TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def assert_takes_about(seconds: float, *, slack: float = 0.5) -> Iterator[None]:
    """Assert that the block takes ``seconds``: not less, and less than about twice.

    The upper bound is generous (``2 * seconds + slack``): the machines are shared,
    noisy and have two cores. Timing targets belong to the benchmarks.
    """
    start = time.monotonic()
    yield
    elapsed = time.monotonic() - start
    assert elapsed >= seconds * 0.9, f"took {elapsed:.3f} s, expected about {seconds} s"
    assert elapsed < 2 * seconds + slack, f"took {elapsed:.3f} s, expected about {seconds} s"


def run_in_thread(function: Callable[[], T], *, timeout: float = 30.0) -> T:
    """Run ``function`` in a new thread; return its result or raise its exception there."""
    outcome: list[tuple[bool, object]] = []

    def target() -> None:
        try:
            outcome.append((True, function()))
        except BaseException as exc:  # handed to the caller
            outcome.append((False, exc))

    thread = threading.Thread(target=target, name="test-worker")
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{function!r} still running after {timeout} s"
    ok, value = outcome[0]
    if ok:
        return value  # type: ignore[return-value]
    assert isinstance(value, BaseException)
    raise value


def spin(seconds: float) -> None:
    """Busy pure-Python work for ``seconds``: the kind of code an interrupt stops."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def spin_forever() -> None:
    """Busy pure-Python work that never ends on its own."""
    while True:
        pass


def run_python(code: str, *, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (this one's); its output as text."""
    return subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=timeout
    )
