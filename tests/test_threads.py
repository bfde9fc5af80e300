"""StoppableThread and stop_thread: ask, then insist; refusals; the thread's own exception."""

from __future__ import annotations

import threading
import time

import pytest
from helpers import spin

from watchdog_timeout import StoppableThread, shield, stop_thread


def test_stoppable_thread_is_compatible_with_the_recipe() -> None:
    def serve() -> None:
        while not worker.stopped():
            worker.stop_event.wait(0.01)

    worker = StoppableThread(target=serve)
    assert not worker.stopped()
    worker.start()
    worker.stop()
    assert worker.stopped()
    worker.join(2)
    assert not worker.is_alive()
    assert worker.exception is None


def test_kill_asks_first_and_a_cooperative_thread_needs_nothing_more() -> None:
    seen: list[str] = []

    def serve() -> None:
        worker.stop_event.wait(10)
        seen.append("asked")

    worker = StoppableThread(target=serve)
    worker.start()
    assert worker.kill(grace=1.0)
    assert seen == ["asked"]
    assert worker.exception is None


def test_kill_escalates_to_a_forced_stop_of_a_busy_loop() -> None:
    worker = StoppableThread(target=spin, args=(30,))
    worker.start()
    start = time.monotonic()
    assert worker.kill(grace=0.05)
    assert time.monotonic() - start < 2
    assert isinstance(worker.exception, SystemExit)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_kill_a_thread_that_swallows_the_first_interrupt() -> None:
    swallowed = []

    def stubborn() -> None:
        try:
            spin(30)
        except BaseException:  # swallows the first one
            swallowed.append(True)
        spin(30)

    worker = StoppableThread(target=stubborn)
    worker.start()
    assert worker.kill(KeyError, grace=0.05, timeout=5)
    assert swallowed == [True]
    assert isinstance(worker.exception, KeyError)


def test_kill_returns_false_for_a_thread_blocked_in_c_until_it_returns() -> None:
    worker = StoppableThread(target=time.sleep, args=(0.6,))
    worker.start()
    assert worker.kill(grace=0.05, timeout=0.1) is False
    assert worker.is_alive()
    assert worker.kill(grace=0.0, timeout=5)  # once the sleep returns, it dies
    assert isinstance(worker.exception, SystemExit)


def test_kill_waits_for_a_shield() -> None:
    events = []

    def critical() -> None:
        with shield():
            spin(0.3)
            events.append("shield done")
        spin(30)

    worker = StoppableThread(target=critical)
    worker.start()
    time.sleep(0.05)
    assert worker.kill(grace=0.0, timeout=5)
    assert events == ["shield done"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_thread_exception_is_kept_also_from_a_subclass_run() -> None:
    class Failing(StoppableThread):
        def run(self) -> None:
            raise ValueError("from run")

    worker = Failing()
    worker.start()
    worker.join()
    assert isinstance(worker.exception, ValueError)
    assert str(worker.exception) == "from run"


def test_kill_refusals() -> None:
    worker = StoppableThread(target=lambda: None)
    with pytest.raises(RuntimeError, match="has not been started"):
        worker.kill()
    with pytest.raises(TypeError, match="the instance"):
        worker.kill(SystemExit())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`grace` must be non-negative"):
        worker.kill(grace=-1)
    worker.start()
    worker.join()
    assert worker.kill()  # already ended: nothing to do

    def kill_myself() -> None:
        with pytest.raises(ValueError, match="cannot kill itself"):
            me.kill()

    me = StoppableThread(target=kill_myself)
    me.start()
    me.join()
    assert me.exception is None


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_stop_thread() -> None:  # a plain thread's SystemExit: pytest reports it, Python not
    worker = threading.Thread(target=spin, args=(30,))
    worker.start()
    stop_thread(worker)
    worker.join(2)
    assert not worker.is_alive()
    with pytest.raises(ValueError, match="not alive"):
        stop_thread(worker)
    with pytest.raises(TypeError, match=r"threading\.Thread"):
        stop_thread(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="current thread"):
        stop_thread(threading.current_thread())
