"""Interrupts that land in a finalizer are sent again, quietly, instead of being lost.

A deallocation inside the block runs ``__del__`` methods and weakref callbacks at
any instruction; an interrupt that lands in one is swallowed by the interpreter and
reported to ``sys.unraisablehook``. The library filters those reports and delivers
the interrupt again at once.
"""

from __future__ import annotations

import gc
import sys
import weakref
from typing import Any, Callable

import pytest
from helpers import run_in_thread, spin

from watchdog_timeout import Deadline, TimeoutExpired, deadline, timeout
from watchdog_timeout._armed import EXPIRING
from watchdog_timeout._late import filter_unraisable
from watchdog_timeout._monitor import monitor


class Box:
    """An object to drop."""


def churn_finalizers() -> None:
    """Allocate and drop objects whose weakref callbacks run Python code, forever."""
    while True:
        box = Box()
        weakref.finalize(box, sum, range(20))
        del box  # the callback runs here, in the middle of the block


class Reports:
    """A ``sys.unraisablehook`` that records what reaches it."""

    def __init__(self) -> None:
        self.seen: list[BaseException | None] = []

    def __call__(self, unraisable: Any) -> None:
        self.seen.append(unraisable.exc_value)


@pytest.fixture
def reports(monkeypatch: pytest.MonkeyPatch) -> Reports:
    """The reports that get past the library's filter during the test."""
    recorder = Reports()
    monkeypatch.setattr(sys, "unraisablehook", recorder)
    return recorder


def expire_in_finalizers(run: Callable[[], None], trials: int) -> int:
    """Run ``run`` (which times out in churn_finalizers) ``trials`` times; count timeouts."""
    expired = 0
    for _ in range(trials):
        try:
            run()
        except TimeoutExpired:
            expired += 1
    return expired


def test_deadline_in_the_main_thread_drops_no_report(reports: Reports) -> None:
    def run() -> None:
        with deadline(0.01):
            churn_finalizers()

    assert expire_in_finalizers(run, 50) == 50
    assert reports.seen == []


def test_deadline_in_another_thread_drops_no_report(reports: Reports) -> None:
    def run() -> None:
        with deadline(0.01):
            churn_finalizers()

    assert run_in_thread(lambda: expire_in_finalizers(run, 50)) == 50
    assert reports.seen == []


def test_timeout_worker_drops_no_report(reports: Reports) -> None:
    limited = timeout(0.01)(churn_finalizers)
    assert expire_in_finalizers(limited, 50) == 50
    assert reports.seen == []


def test_other_reports_still_reach_the_previous_hook(reports: Reports) -> None:
    class Broken:
        def __del__(self) -> None:
            raise ValueError("from __del__")

    filter_unraisable()
    assert sys.unraisablehook is not reports  # the filter is around it now
    Broken()
    gc.collect()  # PyPy finalizes at collections, CPython at once
    assert len(reports.seen) == 1
    assert isinstance(reports.seen[0], ValueError)


def swallow_late_timeout(scope: Deadline, late: list[BaseException]) -> None:
    """Do what the delivery hook does when an interrupt lands after the block ended
    (``_scope._exit_late``), then have a finalizer swallow the TimeoutExpired.

    It can be raised again as soon as this returns from the finalizer: ``late``
    gets it before.
    """
    with monitor.lock:
        scope._state = EXPIRING  # as if its time were up
    late.append(scope._exit_late(None))

    class Swallowing:
        def __del__(self) -> None:
            raise late[0]

    Swallowing()
    gc.collect()  # PyPy finalizes at collections, CPython at once


def test_a_late_timeout_swallowed_by_a_finalizer_is_raised_again(reports: Reports) -> None:
    def run() -> None:
        filter_unraisable()
        spun = False
        late: list[BaseException] = []
        with pytest.raises(TimeoutExpired) as caught:
            with deadline(10) as scope:
                swallow_late_timeout(scope, late)
                spin(10)  # a check point here raises it again
                spun = True
        assert not spun
        assert caught.value is late[0]
        assert scope.expired

    run()
    run_in_thread(run)
    assert reports.seen == []


def test_a_late_timeout_swallowed_by_a_finalizer_is_suppressed(reports: Reports) -> None:
    filter_unraisable()
    spun = False
    with deadline(10, suppress=True) as scope:
        swallow_late_timeout(scope, [])
        spin(10)  # a check point here raises it again
        spun = True
    assert not spun
    assert scope.expired
    assert reports.seen == []
