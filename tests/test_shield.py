"""shield(): interrupts wait for the critical section, then land right after it."""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Generator

import pytest
from helpers import assert_takes_about, run_in_thread, spin

from watchdog_timeout import TimeoutExpired, deadline, shield, timeout
from watchdog_timeout._errors import _Interrupt


def test_an_expired_scope_whose_block_is_shielded_reports_after_the_shield() -> None:
    after = []
    with assert_takes_about(0.2), pytest.raises(TimeoutExpired):
        with deadline(0.05):
            with shield():
                spin(0.2)
                after.append("shield completed")
            spin(10)
    assert after == ["shield completed"]


def test_the_deferred_interrupt_is_delivered_at_the_end_of_the_shield() -> None:
    landed: list[tuple[float, bool]] = []
    start = time.monotonic()
    with deadline(0.05, suppress=True) as scope:
        try:
            with shield():
                spin(0.2)
        except _Interrupt as interrupt:  # raised by the shield's exit itself
            landed.append((time.monotonic() - start, interrupt.scope is scope))
            raise
        spin(10)  # never reached
    assert scope.expired
    assert len(landed) == 1
    when, ours = landed[0]
    assert ours
    assert 0.2 <= when < 0.2 + 0.5  # at the shield's end, not at the deadline


def test_shields_nest() -> None:
    reached = []
    with pytest.raises(TimeoutExpired), deadline(0.05):
        with shield():
            with shield():
                spin(0.1)
            spin(0.1)  # still in the outer shield: the inner one's exit raised nothing
            reached.append("outer shield's end")
        spin(10)
    assert reached == ["outer shield's end"]


def test_a_shield_in_the_main_thread_holds_the_wake_up_signal_back() -> None:
    with assert_takes_about(0.3), pytest.raises(TimeoutExpired), deadline(0.05):
        with shield():
            time.sleep(0.3)  # not woken
        time.sleep(10)  # woken at once


def test_a_shield_does_not_delay_the_caller_of_a_timeout_call() -> None:
    @timeout(0.05, grace=0.1)
    def critical() -> None:
        with shield():
            spin(1.0)

    with assert_takes_about(0.15), pytest.raises(TimeoutExpired) as caught:
        critical()
    assert not caught.value.stopped


def queue_round_trips(trials: int, shielded: bool) -> int:
    """Deadlines expiring during queue.put/get; how many left the queue's lock held."""
    broken = 0
    for trial in range(trials):
        jobs: queue.Queue[int] = queue.Queue()
        with deadline(0.00005 + (trial % 10) * 0.00002, suppress=True):
            while True:
                if shielded:
                    with shield():
                        jobs.put(trial)
                        jobs.get()
                else:
                    jobs.put(trial)
                    jobs.get()
        if not jobs.mutex.acquire(blocking=False):
            broken += 1
        else:
            jobs.mutex.release()
    return broken


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("fast_switching")
def test_10000_deliveries_never_leave_a_shielded_queue_lock_held() -> None:
    assert run_in_thread(lambda: queue_round_trips(10_000, shielded=True), timeout=280) == 0


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("fast_switching")
def test_without_a_shield_the_same_deliveries_do_break_queues() -> None:
    # What the shield is for (and proof that the test above can fail).
    assert run_in_thread(lambda: queue_round_trips(3_000, shielded=False), timeout=280) > 0


def test_shield_misuse() -> None:
    guard = shield()
    with pytest.raises(RuntimeError, match="before it is entered"):
        guard.__exit__(None, None, None)
    with guard, pytest.raises(RuntimeError, match="entered twice"), guard:
        pass


def test_a_shield_does_not_raise_for_a_scope_of_a_suspended_generator() -> None:
    def generator() -> Generator[int, None, None]:
        with deadline(0.05):
            yield 1

    suspended = generator()
    next(suspended)
    time.sleep(0.2)  # its deadline passes while it is suspended, outside its block
    with shield():
        pass  # leaving the shield must not raise that scope's interrupt here
    with contextlib.suppress(TimeoutExpired):  # its own scope may report as it closes
        suspended.close()


def test_a_scope_opened_inside_a_shield_fires() -> None:
    # A shield holds back the scopes outside it; one opened inside limits its own
    # part of the critical section (trio's rule).
    with assert_takes_about(0.1), deadline(5, suppress=True) as outer:
        with shield():
            with deadline(0.1, suppress=True) as inner:
                spin(3)
    assert inner.expired
    assert not outer.expired


def test_an_outer_scope_is_still_held_back_around_an_inner_one() -> None:
    with deadline(0.05, suppress=True) as outer:
        with shield():
            with deadline(5, suppress=True) as inner:
                spin(0.2)
            finished = True
        spin(10)
    assert finished
    assert outer.expired
    assert not inner.expired


@pytest.mark.parametrize("where", ["main", "thread"])
def test_an_inner_scope_expiring_in_a_shield_under_an_expired_outer_one_reports_itself(
    where: str,
) -> None:
    # The outer limit ran out while the shield runs: the interrupt that the inner
    # scope sends is its own, caught by its own handler, and the shielded section
    # goes on; the outer one follows at the shield's end.
    def shielded_under_an_expired_limit() -> tuple[list[str], bool]:
        steps: list[str] = []
        with deadline(0.1, suppress=True) as outer:
            with shield():
                try:
                    with deadline(0.3):
                        spin(3)
                except TimeoutExpired as error:
                    steps.append(f"inner {error.seconds}")
                steps.append("shield finished")
            spin(3)
        return steps, outer.expired

    with assert_takes_about(0.3):
        if where == "main":
            steps, outer_expired = shielded_under_an_expired_limit()
        else:
            steps, outer_expired = run_in_thread(shielded_under_an_expired_limit)
    assert steps == ["inner 0.3", "shield finished"]
    assert outer_expired
