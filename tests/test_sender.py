"""The one guarded sender: never into a back-edge that skips a handler, in any frame.

On CPython 3.13 an exception raised at the back-edge of a loop written directly in a
``try`` escapes its ``except``/``finally`` (python/cpython#130279); 3.11/3.12 do the
same for a one-line ``while 1: pass`` (#108214). Every exception this library sends
(a deadline's interrupt in any thread, ``async_raise``, ``kill()``) waits for a safe
landing point, so that the user's own cleanup runs. The counts must be zero. (A loop
whose only check point is such a back-edge gets it there all the same, or it could
never be stopped: tests/test_scope.py.)
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
from types import FrameType
from typing import Callable

import pytest
from helpers import run_in_thread, spin

from watchdog_timeout import (
    StoppableThread,
    TimeoutExpired,
    Watchdog,
    _sender,
    async_raise,
    deadline,
    timeout,
)

TRIALS = 25


def _busy_holding(lock: threading.Lock, seconds: float = 5.0) -> None:
    lock.acquire()
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:  # one call, then the back-edge: 3.13's bad case
            pass
    finally:
        lock.release()


def _locks_left_held(limited: Callable[[threading.Lock], None]) -> int:
    held = 0
    for _ in range(TRIALS):
        lock = threading.Lock()
        try:
            limited(lock)
        except TimeoutExpired:
            pass
        if lock.acquire(timeout=1.0):  # a worker may still be unwinding
            lock.release()
        else:
            held += 1
    return held


def test_a_timed_out_functions_own_finally_runs_under_timeout() -> None:
    assert _locks_left_held(timeout(0.03)(_busy_holding)) == 0


def test_a_timed_out_functions_own_finally_runs_under_deadline_in_the_main_thread() -> None:
    def limited(lock: threading.Lock) -> None:
        with deadline(0.03):
            _busy_holding(lock)

    assert _locks_left_held(limited) == 0


def test_a_timed_out_functions_own_finally_runs_under_deadline_in_another_thread() -> None:
    def limited(lock: threading.Lock) -> None:
        with deadline(0.03):
            _busy_holding(lock)

    assert run_in_thread(lambda: _locks_left_held(limited), timeout=120) == 0


class _Stop(BaseException):
    pass


def _caught_by_the_targets_handler(send: Callable[[StoppableThread], object]) -> int:
    caught = 0
    for _ in range(TRIALS):
        record: list[BaseException] = []

        def target(record: list[BaseException] = record) -> None:
            try:
                end = time.monotonic() + 5
                while time.monotonic() < end:
                    pass
            except BaseException as exc:
                record.append(exc)

        thread = StoppableThread(target=target)
        thread.start()
        time.sleep(0.01)
        send(thread)
        thread.join(10)
        caught += len(record)
    return caught


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_async_raise_is_caught_by_the_handler_around_a_busy_loop() -> None:
    assert _caught_by_the_targets_handler(lambda t: async_raise(t, _Stop)) == TRIALS


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_kill_is_caught_by_the_handler_around_a_busy_loop() -> None:
    assert _caught_by_the_targets_handler(lambda t: t.kill(_Stop, grace=0)) == TRIALS


def test_a_blocked_main_thread_signal_mask_falls_back_to_the_direct_send() -> None:
    # A daemon that blocks every signal in the main thread (the sigwait pattern).
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutExpired), deadline(0.2):
            end = time.monotonic() + 3
            while time.monotonic() < end:
                pass
        assert time.monotonic() - start < 1.5
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    # The mask lifted, a blocking call of the main thread is woken again.
    start = time.monotonic()
    with pytest.raises(TimeoutExpired), deadline(0.2):
        time.sleep(5)
    assert time.monotonic() - start < 2.5


def test_nothing_lands_after_a_started_watchdog_is_stopped() -> None:
    def cycles() -> int:
        landed_after_stop = 0
        for _ in range(150):
            stopped = False
            dog = Watchdog(0.003).start()
            try:
                end = time.monotonic() + 0.004
                while time.monotonic() < end:
                    pass
                dog.stop()
                stopped = True
                end = time.monotonic() + 0.01
                while time.monotonic() < end:
                    pass
            except TimeoutExpired:
                if stopped:
                    landed_after_stop += 1
                else:
                    dog.stop()
        return landed_after_stop

    assert run_in_thread(cycles, timeout=120) == 0


#: Start/stop cycles of a watchdog on another thread, its limit running out around stop().
STOP_CYCLES = 120


class _Watched:
    """A busy thread for the test's watchdogs; records the TimeoutExpired that land in it.

    ``phase`` is ``(cycle, stopped)``, set by the thread that stops the watchdogs;
    the handler reads it first thing. ``stopped`` is claimed (``claim_stopped``)
    only once that cycle's ``stop()`` has returned, and only while this thread sits
    in ``spin()``: then it is not halfway through raising an interrupt it took before
    ``stop()`` (the exception's ``__init__`` runs before the handler, and a thread
    switch there would make that one look late). The next cycle starts only once
    this thread has gone round its loop again (``ran_on``): an interrupt left
    pending lands before it, and none of the next watchdog's is in flight.
    """

    def __init__(self) -> None:
        self.phase = (0, False)
        self.laps = 0
        self.done = False
        self.while_watching = 0
        self.after_stop: list[int] = []
        self.died: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="test-watched-spinner")

    def _run(self) -> None:
        try:
            self._spin_and_record()
        except BaseException as exc:  # reported by the test, not as a thread warning
            self.died.append(exc)

    def _spin_and_record(self) -> None:
        while True:
            try:
                while not self.done:
                    self.laps += 1
                    spin(0.0005)
                return
            except TimeoutExpired:
                cycle, stopped = self.phase  # first thing: the stopping thread's claim
                if stopped:
                    self.after_stop.append(cycle)
                else:
                    self.while_watching += 1

    def claim_stopped(self, cycle: int) -> None:
        """Say that ``cycle``'s watchdog is stopped, if this thread sits in spin()."""
        top = sys._current_frames().get(self.thread.ident)  # type: ignore[arg-type]
        if top is not None and top.f_code is spin.__code__:
            self.phase = (cycle, True)

    def ran_on(self, seconds: float = 10.0) -> bool:
        """Wait until the thread has begun another lap of its loop (it left spin())."""
        laps = self.laps
        give_up = time.monotonic() + seconds
        while self.laps == laps and not self.died and time.monotonic() < give_up:
            time.sleep(0.0005)
        return self.laps != laps


def test_nothing_lands_in_another_thread_after_its_watchdog_is_stopped() -> None:
    # The watched thread is not the one that calls stop(): an interrupt sent an
    # instant before stop() can still be pending in it (it has not run since), and
    # stop() must withdraw it. Watching the thread that calls stop() cannot show
    # this: that thread runs every bytecode up to stop() itself.
    rng = random.Random(20251125)
    watched = _Watched()
    watched.thread.start()
    try:
        for cycle in range(1, STOP_CYCLES + 1):
            seconds = rng.uniform(0.005, 0.015)
            watched.phase = (cycle, False)
            dog = Watchdog(seconds).start(watched.thread)
            spin(seconds + rng.uniform(0.0, 0.02))  # the limit runs out around stop()
            dog.stop()
            watched.claim_stopped(cycle)
            assert watched.ran_on(), f"the watched thread stopped running: {watched.died}"
    finally:
        watched.done = True
        watched.thread.join(10)
    assert not watched.died
    assert watched.after_stop == []


def test_a_patience_dropped_while_it_waits_gives_the_switch_interval_back() -> None:
    # A delivery that waits for a safe landing point shortens the switch interval. One
    # dropped unfinished (its scope ended) is found by the monitor, not by a finalizer
    # in the dropping thread (an exception from elsewhere landing there was lost: the
    # 3.13 injection sweep of thread-expiring found it).
    before = sys.getswitchinterval()
    patience = _sender.Patience(threading.get_native_id())
    assert not patience.exhausted(sys._getframe())  # one unsafe look: it waits, hurried
    assert sys.getswitchinterval() <= _sender.HURRIED_SWITCH_INTERVAL
    del patience
    give_up = time.monotonic() + 5.0
    while sys.getswitchinterval() != before and time.monotonic() < give_up:
        time.sleep(0.01)
    assert sys.getswitchinterval() == before
    assert not hasattr(_sender.Patience, "__del__")


def _looks_until_exhausted(patience: _sender.Patience, top: FrameType, seconds: float) -> bool:
    """Look at ``top`` every 10 ms for ``seconds``: did ``patience`` run out?"""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if patience.exhausted(top):
            return True
        time.sleep(0.01)
    return False


def test_patience_waits_for_a_target_that_gets_no_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # A target paused right after a call (3.13) on a loaded machine: it runs no
    # code for a while, but it waits for a CPU. Taken for blocked in C, it was sent
    # to, and raised at the back-edge after the call: its finally was skipped (CI).
    monkeypatch.setattr(_sender, "cpu_time", lambda native_id: 1.0)
    monkeypatch.setattr(_sender, "runnable", lambda native_id: True)
    patience = _sender.Patience(threading.get_native_id())
    try:
        assert not _looks_until_exhausted(patience, sys._getframe(), 4 * _sender.BLOCKED_AFTER)
    finally:
        patience.reset()


def _sleeping_thread(seconds: float) -> threading.Thread:
    asleep = threading.Event()

    def sleeper() -> None:
        asleep.set()
        time.sleep(seconds)

    thread = threading.Thread(target=sleeper)
    thread.start()
    assert asleep.wait(10)
    time.sleep(0.05)
    return thread


def test_patience_sends_to_a_target_blocked_in_c() -> None:
    # Asleep in a blocking call: it neither runs nor is runnable, and the exception
    # lands where the call returns. Real figures from the kernel.
    thread = _sleeping_thread(2.0)
    try:
        top = sys._current_frames()[thread.ident]  # type: ignore[index]
        before = _sender.cpu_time(thread.native_id)
        if before is None:
            pytest.skip("no /proc/self/task/<tid>/schedstat")
        patience = _sender.Patience(thread.native_id)
        try:
            assert _looks_until_exhausted(patience, top, 1.0)
        finally:
            patience.reset()
    finally:
        thread.join()


def test_runnable_tells_a_running_thread_from_a_sleeping_one() -> None:
    if _sender.cpu_time(threading.get_native_id()) is None:
        pytest.skip("no /proc/self/task/<tid>/stat")
    assert _sender.runnable(threading.get_native_id())  # this one, running now
    thread = _sleeping_thread(1.0)
    try:
        assert not _sender.runnable(thread.native_id)
    finally:
        thread.join()
    assert not _sender.runnable(None)
