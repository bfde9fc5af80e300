"""Watchdog: heartbeats, stack summaries, report-only mode, decorator and start/stop forms."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from helpers import assert_takes_about, spin, spin_forever

from watchdog_timeout import Deadline, TimeoutExpired, Watchdog, remaining, shield, timeout


def stuck_here() -> None:
    spin(10)


def test_watchdog_loop_that_kicks_survives() -> None:
    # The limit is wide: on a busy machine a 10 ms sleep can take far longer.
    with Watchdog(0.5) as dog:
        for _ in range(100):  # about 1 s, twice the limit
            time.sleep(0.01)
            dog.kick()
    assert not dog.expired
    assert dog.kicks == 100
    assert 0.005 < dog.longest_gap < 0.5


def test_watchdog_loop_stuck_once_is_interrupted_with_where_it_was() -> None:
    with assert_takes_about(0.3), pytest.raises(TimeoutExpired) as caught:
        with Watchdog(0.1, label="ingest") as dog:
            for i in range(100):
                if i == 20:
                    stuck_here()
                time.sleep(0.01)
                dog.kick()
    error = caught.value
    assert dog.expired
    assert error.name == "ingest"
    assert error.seconds == 0.1
    assert error.stack is not None
    assert [name for _, _, name in error.stack[:2]] == ["spin", "stuck_here"]
    assert "it was in spin (helpers.py:" in str(error)
    assert "called from stuck_here" in str(error)


def test_watchdog_is_a_deadline_and_remaining_follows_kicks() -> None:
    with Watchdog(0.5) as dog:
        assert isinstance(dog, Deadline)
        time.sleep(0.2)
        dog.kick()
        left = remaining()
        assert left is not None
        assert 0.4 < left <= 0.5


def test_watchdog_report_only_never_interrupts(caplog: pytest.LogCaptureFixture) -> None:
    reports = []
    with caplog.at_level(logging.WARNING, logger="watchdog_timeout"):
        with Watchdog(0.05, interrupt=False, on_expire=lambda: reports.append(1)) as dog:
            spin(0.3)
    assert not dog.expired
    assert 2 <= len(reports) <= 8  # once per period while no kick comes
    assert "not kicked for 0.05 seconds" in caplog.text
    assert "the thread is in spin (helpers.py:" in caplog.text


def test_watchdog_on_expire_runs_before_and_a_kick_during_it_saves_the_thread() -> None:
    order = []

    def on_expire() -> None:
        order.append("on_expire")
        dog.kick()

    dog = Watchdog(0.05, on_expire=on_expire)
    with dog:
        give_up = time.monotonic() + 5
        while not order and time.monotonic() < give_up:  # busy until on_expire has run
            pass
        spin(0.02)
        order.append("still running")
    assert order[:2] == ["on_expire", "still running"]
    assert not dog.expired


def test_watchdog_as_decorator_gives_access_to_the_watchdog() -> None:
    @Watchdog(0.5, label="job")  # wide: on a busy machine a 10 ms sleep can take far longer
    def job(steps: int, stuck: bool = False) -> int:
        for _ in range(steps):
            time.sleep(0.01)
            Watchdog.current().kick()
        if stuck:
            stuck_here()
        return Watchdog.current().kicks

    assert job(20) == 20
    assert job(5) == 5  # a new watchdog for each call
    with pytest.raises(TimeoutExpired, match="job exceeded"):
        job(2, stuck=True)
    with pytest.raises(LookupError):
        Watchdog.current()


def test_watchdog_start_and_stop_watch_another_thread() -> None:
    outcome: list[TimeoutExpired] = []
    quit_loop = threading.Event()

    def loop() -> None:
        try:
            while not quit_loop.is_set():
                stuck_here()
        except TimeoutExpired as error:  # no block here: the thread is sent TimeoutExpired
            outcome.append(error)

    dog = Watchdog(0.1, label="worker loop")
    worker = threading.Thread(target=loop)
    worker.start()
    dog.start(worker)
    worker.join(5)
    dog.stop()
    quit_loop.set()
    worker.join(5)
    assert len(outcome) == 1
    assert outcome[0].name == "worker loop"
    assert outcome[0].stack is not None
    assert outcome[0].stack[1][2] == "stuck_here"


def test_watchdog_start_calls_on_expire_once_while_it_resends() -> None:
    calls: list[float] = []
    caught: list[TimeoutExpired] = []

    def loop() -> None:
        while len(caught) < 3:  # swallows the first interrupts: they are sent again
            try:
                spin_forever()
            except TimeoutExpired as error:
                caught.append(error)

    dog = Watchdog(0.1, on_expire=lambda: calls.append(time.monotonic()))
    worker = threading.Thread(target=loop)
    worker.start()
    dog.start(worker)
    worker.join(5)
    dog.stop()
    assert not worker.is_alive()
    assert len(caught) == 3
    assert len(calls) == 1


def test_watchdog_start_on_the_current_thread_and_kicks_keep_it_quiet() -> None:
    # The limit is wide: on a busy machine a 10 ms sleep can take far longer. And the
    # watchdog is stopped whatever happens: one left running interrupts this thread
    # (pytest's) again and again, wherever it is, for the rest of the session.
    dog = Watchdog(0.5).start()
    try:
        for _ in range(100):  # about 1 s, twice the limit
            time.sleep(0.01)
            dog.kick()
    finally:
        dog.stop()
    spin(0.6)  # stopped: nothing arrives


def test_watchdog_start_report_only(caplog: pytest.LogCaptureFixture) -> None:
    done = threading.Event()
    worker = threading.Thread(target=done.wait, args=(5,))
    worker.start()
    with caplog.at_level(logging.WARNING, logger="watchdog_timeout"):
        dog = Watchdog(0.05, interrupt=False, label="poller").start(worker)
        time.sleep(0.2)
        dog.stop()
    done.set()
    worker.join()
    assert "poller not kicked" in caplog.text


def test_watchdog_misuse() -> None:
    with pytest.raises(ValueError, match="finite number"):
        Watchdog(None)
    with pytest.raises(ValueError, match="non-negative"):
        Watchdog(-1)
    with pytest.raises(TypeError, match="on_expire"):
        Watchdog(1, on_expire=3)  # type: ignore[arg-type]
    dog = Watchdog(1)
    with pytest.raises(RuntimeError, match="cannot be kicked: it is created"):
        dog.kick()
    with dog:
        pass
    with pytest.raises(RuntimeError, match="cannot be kicked: it is finished"):
        dog.kick()
    with pytest.raises(RuntimeError, match="without start"):
        Watchdog(1).stop()
    with pytest.raises(TypeError, match="use `with Watchdog"):

        @Watchdog(1)
        async def coroutine() -> None:
            pass


def test_watchdog_interrupt_waits_for_a_shield() -> None:
    with assert_takes_about(0.2), pytest.raises(TimeoutExpired), Watchdog(0.05):
        with shield():
            spin(0.2)
        stuck_here()


def test_current_watchdog_is_found_inside_an_at_timeout_worker() -> None:
    @timeout(2.0)
    def step() -> str:
        dog = Watchdog.current()  # the caller's, seen from the worker thread
        dog.kick()
        return dog.label or ""

    with Watchdog(1.0, label="pipeline"):
        assert step() == "pipeline"
