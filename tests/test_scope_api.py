"""deadline_at(), cancel() from any thread, and exception= (the peers' features, in this API)."""

from __future__ import annotations

import threading
import time

import pytest
from helpers import assert_takes_about, run_in_thread, spin, spin_forever

from watchdog_timeout import TimeoutExpired, deadline, deadline_at, timeout


class _Custom(Exception):
    pass


# --- deadline_at --------------------------------------------------------------------


def test_deadline_at_fires_at_the_absolute_time() -> None:
    when = time.monotonic() + 0.1
    with assert_takes_about(0.1), pytest.raises(TimeoutExpired) as caught:
        with deadline_at(when) as scope:
            assert scope.when == when
            spin_forever()
    assert scope.expired
    assert caught.value.seconds == pytest.approx(0.1, abs=0.05)


def test_deadline_at_shares_one_deadline_between_steps() -> None:
    when = time.monotonic() + 0.15
    with deadline_at(when, suppress=True) as first:
        spin(0.1)
    with assert_takes_about(0.05), deadline_at(when, suppress=True) as second:
        spin_forever()  # only what the first step left
    assert not first.expired
    assert second.expired


def test_deadline_at_in_the_past_interrupts_at_once() -> None:
    with assert_takes_about(0.0, slack=0.3), deadline_at(time.monotonic() - 1, suppress=True) as s:
        spin_forever()
    assert s.expired
    assert s.seconds == 0.0


def test_deadline_at_none_and_inf_mean_no_limit() -> None:
    for when in (None, float("inf")):
        with deadline_at(when) as scope:
            assert scope.when is None


@pytest.mark.parametrize(
    ("when", "error"),
    [(float("nan"), ValueError), (float("-inf"), ValueError), ("1", TypeError), (True, TypeError)],
)
def test_deadline_at_rejects_bad_times_naming_them(when: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="`when`"):
        deadline_at(when)  # type: ignore[arg-type]


# --- cancel --------------------------------------------------------------------------


def test_cancel_from_another_thread_ends_the_block_quietly() -> None:
    with assert_takes_about(0.1), deadline(10) as scope:
        threading.Timer(0.1, scope.cancel).start()
        spin_forever()
    assert scope.cancelled
    assert not scope.expired


def test_cancel_a_block_in_another_thread() -> None:
    scopes = []

    def blocked() -> bool:
        with deadline(None) as scope:  # no limit: only a cancel ends it
            scopes.append(scope)
            spin_forever()
        return scope.cancelled

    worker = threading.Thread(target=lambda: results.append(blocked()))
    results: list[bool] = []
    worker.start()
    while not scopes:
        time.sleep(0.001)
    scopes[0].cancel()
    worker.join(5)
    assert results == [True]


def test_cancel_before_the_block_ends_it_at_once() -> None:
    scope = deadline(10)
    scope.cancel()
    with assert_takes_about(0.0, slack=0.3), scope:
        spin_forever()
    assert scope.cancelled


def test_cancel_after_the_block_and_twice_do_nothing() -> None:
    with deadline(10) as scope:
        pass
    scope.cancel()
    scope.cancel()
    assert not scope.cancelled
    with deadline(10) as twice:
        threading.Timer(0.05, twice.cancel).start()
        threading.Timer(0.06, twice.cancel).start()
        spin_forever()
    assert twice.cancelled
    spin(0.1)  # nothing more arrives


def test_cancel_is_not_a_timeout_for_an_outer_scope() -> None:
    with deadline(10) as outer:
        with deadline(10) as inner:
            threading.Timer(0.05, inner.cancel).start()
            spin_forever()
        spin(0.05)
    assert inner.cancelled
    assert not outer.cancelled
    assert not outer.expired


def test_cancel_in_a_worker_thread_is_quiet_too() -> None:
    def body() -> bool:
        with deadline(10) as scope:
            threading.Timer(0.05, scope.cancel).start()
            spin_forever()
        return scope.cancelled

    assert run_in_thread(body)


# --- exception= ---------------------------------------------------------------------


def test_deadline_raises_the_chosen_exception_from_timeout_expired() -> None:
    with pytest.raises(_Custom) as caught, deadline(0.05, exception=_Custom):
        spin_forever()
    expired = caught.value.__cause__
    assert isinstance(expired, TimeoutExpired)
    assert str(caught.value) == str(expired)
    assert expired.seconds == 0.05


@pytest.mark.parametrize("isolation", ["thread", "inline", "process"])
def test_timeout_raises_the_chosen_exception(isolation: str) -> None:
    limited = timeout(0.1, isolation=isolation, exception=_Custom)(time.sleep)  # type: ignore[arg-type]
    with pytest.raises(_Custom, match="exceeded its time limit") as caught:
        limited(3)
    assert isinstance(caught.value.__cause__, TimeoutExpired)


@pytest.mark.parametrize("bad", [ValueError("an instance"), "Error", int])
def test_exception_must_be_an_exception_class(bad: object) -> None:
    with pytest.raises(TypeError, match="`exception`"):
        deadline(1, exception=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`exception`"):
        timeout(1, exception=bad)  # type: ignore[arg-type]
