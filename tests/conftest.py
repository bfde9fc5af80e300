"""Fixtures shared by the whole suite: a thread-leak guard, fast thread switching, Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import settings

from watchdog_timeout import _async_raise

# Hypothesis's 200 ms deadline per example measures the machine, not the library.
settings.register_profile("watchdog_timeout", deadline=None)
settings.load_profile("watchdog_timeout")

# Tests import the C bindings by name: bind them before any test module is imported
# (the library itself binds them where a thread first uses it, never at import).
_async_raise.ensure_loaded()

pytest_plugins = ["pytester"]

#: Threads of our own that legitimately outlive a test: the monitor and idle workers.
OWN_THREAD_PREFIX = "watchdog_timeout-"


def _foreign_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if not t.name.startswith(OWN_THREAD_PREFIX)}


@pytest.fixture(autouse=True)
def no_thread_leak() -> Iterator[None]:
    """Fail a test that leaves a thread of its own running (2 s to finish)."""
    before = _foreign_threads()
    yield
    deadline_at = time.monotonic() + 2.0
    leaked = _foreign_threads() - before
    while leaked and time.monotonic() < deadline_at:
        for thread in leaked:
            thread.join(0.05)
        leaked = {t for t in _foreign_threads() - before if t.is_alive()}
    assert not leaked, f"threads left running: {sorted(t.name for t in leaked)}"


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads every 10 us (not 5 ms) so that races show up in fewer trials."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, even in a run started with SIGINT ignored.

    A shell starts background jobs with SIGINT ignored, and Python then keeps it so.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
