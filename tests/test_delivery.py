"""Delivery: the main thread is woken from blocking calls; applications keep their signals."""

from __future__ import annotations

import contextlib
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Callable

import pytest
from helpers import assert_takes_about

from watchdog_timeout import TimeoutExpired, _wakeup, deadline

pytestmark = pytest.mark.skipif(
    not _wakeup._wakeup_signal or not hasattr(signal, "pthread_kill"),
    reason="no wake-up signal on this platform",
)


@contextlib.contextmanager
def blocking_call(name: str) -> Iterator[Callable[[], object]]:
    """A call that blocks in C for 10 s or more, and the cleanup of what it used."""
    with contextlib.ExitStack() as stack:
        if name == "time.sleep":
            yield lambda: time.sleep(10)
        elif name == "Event.wait":
            yield lambda: threading.Event().wait(10)
        elif name == "Lock.acquire":
            lock = threading.Lock()
            lock.acquire()
            yield lambda: lock.acquire(timeout=10)
        elif name == "Queue.get":
            yield lambda: queue.Queue().get(timeout=10)
        elif name in ("socket.recv", "select.select", "os.read"):
            a, b = socket.socketpair()
            stack.enter_context(a)
            stack.enter_context(b)
            yield {
                "socket.recv": lambda: a.recv(10),
                "select.select": lambda: select.select([a], [], [], 10),
                "os.read": lambda: os.read(a.fileno(), 1),
            }[name]
        elif name == "socket.accept":
            listener = stack.enter_context(socket.socket())
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            yield listener.accept
        elif name == "Thread.join":
            done = threading.Event()
            thread = threading.Thread(target=done.wait, args=(10,))
            thread.start()
            stack.callback(thread.join)
            stack.callback(done.set)
            yield lambda: thread.join(10)
        elif name == "Popen.wait":
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(10)"])
            stack.callback(child.wait)
            stack.callback(child.kill)
            yield lambda: child.wait(10)
        else:  # pragma: no cover
            raise AssertionError(name)


CALLS = [
    "time.sleep",
    "Event.wait",
    "Lock.acquire",
    "Queue.get",
    "socket.recv",
    "socket.accept",
    "select.select",
    "os.read",
    "Thread.join",
    "Popen.wait",
]


@pytest.mark.parametrize("name", CALLS)
def test_main_thread_is_woken_from_a_blocking_call(name: str) -> None:
    with blocking_call(name) as call:
        with assert_takes_about(0.2), pytest.raises(TimeoutExpired):
            with deadline(0.2):
                call()


def test_main_thread_blocked_call_that_returns_in_time_is_untouched() -> None:
    with deadline(1) as scope:
        time.sleep(0.05)
    assert not scope.expired


def run_script(source: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_an_application_handler_for_the_signal_is_never_replaced() -> None:
    result = run_script(
        """
        import signal, time
        from watchdog_timeout import _wakeup, deadline, TimeoutExpired
        calls = []
        signal.signal(_wakeup._wakeup_signal, lambda *a: calls.append(a))
        start = time.monotonic()
        try:
            with deadline(0.1):
                time.sleep(0.5)   # not woken: the signal is not ours
        except TimeoutExpired:
            pass
        took = time.monotonic() - start
        assert signal.getsignal(_wakeup._wakeup_signal) is not _wakeup._on_wakeup_signal
        assert calls == [], calls
        assert 0.45 < took < 3, took
        with deadline(0.1) as scope:   # busy code is still interrupted
            try:
                while True: pass
            except BaseException:
                raise
        """
    )
    assert "TimeoutExpired" in result.stderr
    assert "AssertionError" not in result.stderr, result.stderr


def test_the_signal_can_be_turned_off() -> None:
    result = run_script(
        """
        import signal, time
        from watchdog_timeout import _wakeup, deadline, TimeoutExpired
        assert _wakeup._wakeup_signal == 0
        start = time.monotonic()
        try:
            with deadline(0.1):
                time.sleep(0.5)
        except TimeoutExpired:
            print(round(time.monotonic() - start, 1))
        """,
        env={"WATCHDOG_TIMEOUT_SIGNAL": "0"},
    )
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) >= 0.5


def test_the_signal_can_be_chosen() -> None:
    result = run_script(
        """
        import signal
        from watchdog_timeout import _wakeup, deadline
        with deadline(1):
            pass
        print(_wakeup._wakeup_signal == signal.SIGUSR2,
              signal.getsignal(signal.SIGUSR2) is _wakeup._on_wakeup_signal)
        """,
        env={"WATCHDOG_TIMEOUT_SIGNAL": "SIGUSR2"},
    )
    assert result.stdout.split() == ["True", "True"], result.stderr


def test_a_stale_signal_after_the_block_does_nothing() -> None:
    with deadline(5):
        pass
    main = threading.main_thread().ident
    assert main is not None
    signal.pthread_kill(main, _wakeup._wakeup_signal)
    time.sleep(0.05)  # the handler runs here and finds nothing to interrupt
