"""deadline(): the scope state machine, its public view, and the semantics that must hold.

The boundary-race trials live in test_scope_races.py; main-thread wake-ups and
the signal in test_delivery.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import assert_takes_about, run_in_thread, spin, spin_forever

from watchdog_timeout import Deadline, TimeoutExpired, deadline, deadline_at, remaining, timeout
from watchdog_timeout._errors import _Interrupt
from watchdog_timeout._registry import current_state

# --- interrupting ---------------------------------------------------------------


def test_deadline_interrupts_busy_loop_in_main_thread() -> None:
    with assert_takes_about(0.05), pytest.raises(TimeoutExpired) as caught:
        with deadline(0.05) as scope:
            while True:
                pass
    assert scope.expired
    error = caught.value
    assert error.seconds == 0.05
    assert error.name == "deadline"
    assert error.stopped
    assert error.elapsed >= 0.05
    assert isinstance(error.__cause__, _Interrupt)
    assert "exceeded its time limit of 0.05 seconds" in str(error)


def test_deadline_interrupts_busy_loop_in_worker_thread() -> None:
    def body() -> Deadline:
        with deadline(0.05) as scope:
            while True:
                pass
        return scope  # pragma: no cover

    with assert_takes_about(0.05), pytest.raises(TimeoutExpired):
        run_in_thread(body)


def test_deadline_interrupt_is_not_caught_by_except_exception() -> None:
    swallowed = []
    with pytest.raises(TimeoutExpired), deadline(0.05):
        while True:
            try:
                spin(1.0)
            except Exception:  # what library code does; must not eat the interrupt
                swallowed.append(True)
    assert swallowed == []


def test_deadline_traceback_shows_where_the_code_was_stopped() -> None:
    with pytest.raises(TimeoutExpired) as caught, deadline(0.05):
        spin_forever()
    cause = caught.value.__cause__
    assert cause is not None
    names = []
    tb = cause.__traceback__
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "spin_forever" in names


def test_deadline_worker_thread_blocking_call_ends_when_it_returns() -> None:
    # Documented limitation: outside the main thread a blocking C call is not
    # interrupted; the interrupt is raised as soon as it returns.
    def body() -> None:
        with deadline(0.05):
            time.sleep(0.3)

    with assert_takes_about(0.3), pytest.raises(TimeoutExpired):
        run_in_thread(body)


def test_deadline_zero_expires_at_once() -> None:
    with assert_takes_about(0.0, slack=0.2), pytest.raises(TimeoutExpired), deadline(0):
        spin_forever()


def test_deadline_body_that_completes_is_not_a_timeout() -> None:
    with deadline(1.0) as scope:
        spin(0.01)
    assert not scope.expired
    assert "[finished]" in repr(scope)


def test_deadline_body_that_completes_after_the_deadline_in_c_is_kept() -> None:
    # With nothing to interrupt (the thread never ran Python code after the
    # deadline), a completed body stays completed: zero-limit scopes included.
    with deadline(0) as scope:
        pass
    assert not scope.expired


def test_deadline_suppress_ends_block_quietly() -> None:
    after = []
    with deadline(0.05, suppress=True) as scope:
        spin_forever()
    after.append(True)
    assert scope.expired
    assert after == [True]


def test_deadline_label_names_the_block() -> None:
    with pytest.raises(TimeoutExpired, match="'fetch' exceeded") as caught:
        with deadline(0.05, label="'fetch'"):
            spin_forever()
    assert caught.value.name == "'fetch'"


@pytest.mark.parametrize("seconds", [None, float("inf"), 10**400])
def test_deadline_without_limit_never_fires(seconds: object) -> None:
    with deadline(seconds) as scope:  # type: ignore[arg-type]
        spin(0.05)
        assert scope.remaining is None
        assert remaining() is None
    assert scope.seconds is None
    assert not scope.expired


# --- bad input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (-1, ValueError, "`seconds` must be non-negative, got -1"),
        (float("nan"), ValueError, "got nan"),
        ("1", TypeError, "got '1' (str)"),
        (True, TypeError, "got True (bool)"),
        ([1], TypeError, "got [1] (list)"),
    ],
)
def test_deadline_rejects_bad_seconds(value: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        deadline(value)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_deadline_rejects_uncallable_on_expire() -> None:
    with pytest.raises(TypeError, match="`on_expire` must be callable"):
        deadline(1, on_expire=42)  # type: ignore[arg-type]


# --- single use and misuse ----------------------------------------------------------


def test_deadline_cannot_be_entered_twice() -> None:
    scope = deadline(1)
    with scope, pytest.raises(RuntimeError, match="entered twice: it is active"), scope:
        pass
    with pytest.raises(RuntimeError, match="entered twice: it is finished"), scope:
        pass


def test_deadline_cannot_be_exited_before_entered_or_twice() -> None:
    scope = deadline(1)
    with pytest.raises(RuntimeError, match="cannot be exited: it is created"):
        scope.__exit__(None, None, None)
    with scope:
        pass
    with pytest.raises(RuntimeError, match="cannot be exited: it is finished"):
        scope.__exit__(None, None, None)


def test_deadline_cannot_be_exited_in_another_thread() -> None:
    scope = deadline(5)
    with scope:
        with pytest.raises(RuntimeError, match="exited in the thread that entered it"):
            run_in_thread(lambda: scope.__exit__(None, None, None))
        assert not scope.expired
    assert "[finished]" in repr(scope)


def test_deadline_reschedule_after_exit_names_the_state() -> None:
    scope = deadline(1)
    with scope:
        pass
    with pytest.raises(RuntimeError, match="cannot be rescheduled: it is finished"):
        scope.reschedule(1)
    with deadline(0.02, suppress=True) as expired:
        spin_forever()
    with pytest.raises(RuntimeError, match="cannot be rescheduled: it is expired"):
        expired.reschedule(1)


def test_deadline_reschedule_rejects_bad_seconds() -> None:
    with deadline(1) as scope:
        with pytest.raises(ValueError, match="non-negative"):
            scope.reschedule(-2)
        with pytest.raises(TypeError, match="number of seconds"):
            scope.reschedule("soon")  # type: ignore[arg-type]


# --- the public view ----------------------------------------------------------------


def test_deadline_view_before_during_after() -> None:
    scope = deadline(2.0, label="view")
    assert scope.seconds == 2.0
    assert scope.remaining == 2.0
    assert scope.elapsed == 0.0
    assert deadline(1).when is None
    assert not scope.expired
    assert repr(scope) == "<Deadline [created] seconds=2.0 label='view'>"
    with scope:
        spin(0.05)
        assert scope.when is not None
        left = scope.remaining
        assert left is not None
        assert 1.5 < left < 1.96
        assert 0.05 <= scope.elapsed < 0.5
        assert repr(scope).startswith("<Deadline [active] seconds=2.0 remaining=")
    elapsed = scope.elapsed
    spin(0.02)
    assert scope.elapsed == elapsed  # frozen once the block ended
    assert repr(scope) == "<Deadline [finished] seconds=2.0 label='view'>"


def test_deadline_reschedule_moves_the_deadline() -> None:
    with assert_takes_about(0.1), pytest.raises(TimeoutExpired) as caught:
        with deadline(10) as scope:
            spin(0.05)
            before = time.monotonic()
            scope.reschedule(0.05)
            assert scope.when is not None
            assert scope.when >= before + 0.05  # from now, not from the start
            spin_forever()
    assert caught.value.seconds == pytest.approx(0.1, abs=0.05)


def test_deadline_reschedule_to_none_disarms() -> None:
    with deadline(0.05) as scope:
        scope.reschedule(None)
        spin(0.15)
    assert not scope.expired
    assert scope.seconds is None


def test_deadline_reschedule_before_entering() -> None:
    scope = deadline(10)
    scope.reschedule(0.05)
    assert scope.seconds == 0.05
    with assert_takes_about(0.05), pytest.raises(TimeoutExpired), scope:
        spin_forever()


def test_remaining_is_the_minimum_over_nested_scopes() -> None:
    assert remaining() is None
    with deadline(5):
        outer = remaining()
        assert outer is not None
        assert 4.5 < outer <= 5
        with deadline(1):
            inner = remaining()
            assert inner is not None
            assert 0.5 < inner <= 1
            with deadline(None):
                assert remaining() == pytest.approx(inner, abs=0.2)
        with deadline(9):
            assert remaining() == pytest.approx(outer, abs=0.2)
    assert remaining() is None


def test_remaining_is_zero_once_passed() -> None:
    with deadline(0.02, suppress=True):
        try:
            spin_forever()
        except _Interrupt:
            assert remaining() == 0.0
            raise


def test_remaining_is_per_thread() -> None:
    with deadline(1):
        assert run_in_thread(remaining) is None


# --- nesting ----------------------------------------------------------------------------


def test_nested_outer_shorter_reports() -> None:
    with pytest.raises(TimeoutExpired) as caught:
        with deadline(0.05, label="outer") as outer:
            with deadline(5, label="inner") as inner:
                spin_forever()
    assert caught.value.name == "outer"
    assert outer.expired
    assert not inner.expired


def test_nested_inner_shorter_reports_and_outer_continues() -> None:
    with deadline(5, label="outer") as outer:
        with pytest.raises(TimeoutExpired) as caught, deadline(0.05, label="inner") as inner:
            spin_forever()
        spin(0.01)
    assert caught.value.name == "inner"
    assert inner.expired
    assert not outer.expired


def test_nested_inner_suppress_does_not_swallow_outer_interrupt() -> None:
    with pytest.raises(TimeoutExpired) as caught:
        with deadline(0.05, label="outer"):
            with deadline(5, label="inner", suppress=True) as inner:
                spin_forever()
    assert caught.value.name == "outer"
    assert not inner.expired


@pytest.mark.parametrize("shortest", [0, 1, 2])
def test_nested_three_levels_the_shortest_reports(shortest: int) -> None:
    limits = [5.0, 5.0, 5.0]
    limits[shortest] = 0.05
    scopes: list[Deadline] = []
    with pytest.raises(TimeoutExpired) as caught:
        with deadline(limits[0], label="0") as s0:
            scopes.append(s0)
            with deadline(limits[1], label="1") as s1:
                scopes.append(s1)
                with deadline(limits[2], label="2") as s2:
                    scopes.append(s2)
                    spin_forever()
    assert caught.value.name == str(shortest)
    assert [s.expired for s in scopes] == [i == shortest for i in range(3)]


def test_nested_outermost_reports_when_several_ran_out() -> None:
    # In a worker thread a blocking call is not interrupted: both deadlines have
    # passed when the thread next runs Python code, and the outer one reports (trio).
    def body() -> tuple[Deadline, Deadline]:
        with deadline(0.1, label="outer") as outer, deadline(0.05, label="inner") as inner:
            time.sleep(0.3)
        return outer, inner  # pragma: no cover

    with pytest.raises(TimeoutExpired) as caught:
        run_in_thread(body)
    assert caught.value.name == "outer"


@pytest.mark.parametrize("shortest", [0, 150, 299])
def test_nested_300_levels(shortest: int) -> None:
    scopes = []
    with pytest.raises(TimeoutExpired) as caught, contextlib.ExitStack() as stack:
        for level in range(300):
            scopes.append(
                stack.enter_context(deadline(0.05 if level == shortest else 30, label=str(level)))
            )
        spin_forever()
    assert caught.value.name == str(shortest)
    assert [i for i, s in enumerate(scopes) if s.expired] == [shortest]
    assert current_state().scopes == []


# --- level-triggered ------------------------------------------------------------------


def test_deadline_sends_again_when_the_interrupt_is_swallowed() -> None:
    caught_at = []
    start = time.monotonic()
    with pytest.raises(TimeoutExpired), deadline(0.05):
        while True:
            try:
                spin_forever()
            except BaseException:  # a bare except: the kind of code that eats it
                caught_at.append(time.monotonic() - start)
                if len(caught_at) == 3:
                    raise
    gaps = [b - a for a, b in zip(caught_at, caught_at[1:])]
    assert all(0.03 < gap < 0.5 for gap in gaps), gaps


def test_deadline_body_that_swallows_and_completes_is_not_a_timeout() -> None:
    swallowed = []
    with deadline(0.02) as scope:
        try:
            spin_forever()
        except BaseException:
            swallowed.append(True)
    assert swallowed == [True]
    assert not scope.expired
    spin(0.1)  # nothing more arrives once the block has ended


# --- on_expire ------------------------------------------------------------------------------


def test_on_expire_runs_once_off_the_monitor_before_the_interrupt() -> None:
    calls: list[str] = []
    with (
        pytest.raises(TimeoutExpired),
        deadline(0.05, on_expire=lambda: calls.append(threading.current_thread().name)),
    ):
        spin_forever()
    assert calls == ["watchdog_timeout-callback"]


def test_a_slow_on_expire_delays_no_other_limit() -> None:
    # User callbacks never run on the monitor: a sleeping on_expire in another thread
    # cannot hold back this thread's limit.
    sleeping = threading.Event()

    def slow_on_expire() -> None:
        sleeping.set()
        time.sleep(2)

    def slow_scope() -> None:
        with deadline(0.05, suppress=True, on_expire=slow_on_expire):
            spin_forever()

    other = threading.Thread(target=slow_scope)
    other.start()
    try:
        assert sleeping.wait(5)
        started = time.monotonic()
        with deadline(0.1, suppress=True) as fast:
            spin_forever()
        elapsed = time.monotonic() - started
    finally:
        other.join(10)
    assert fast.expired
    assert elapsed < 0.7, f"a 0.1 s limit fired after {elapsed:.2f} s"


def test_on_expire_callbacks_due_together_run_apart() -> None:
    # Scopes due in the same pass of the monitor: an on_expire that sleeps must not
    # hold back the other's (each sleeps: whichever runs first).
    due = time.monotonic() + 0.2
    started_at: list[float] = []

    def slow_on_expire() -> None:
        started_at.append(time.monotonic())
        time.sleep(1.5)

    def limited() -> None:
        with deadline_at(due, suppress=True, on_expire=slow_on_expire):
            spin_forever()

    threads = [threading.Thread(target=limited) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(started_at) == 2
    late = max(started_at) - due
    assert late < 0.75, f"an on_expire began {late:.2f} s after its time"


def test_on_expire_that_calls_a_limited_function_does_not_stall_the_monitor() -> None:
    # The limited call inside on_expire needs the monitor itself (it runs out): on the
    # monitor, it would wait for itself.
    results: list[object] = []

    def on_expire() -> None:
        try:
            timeout(0.1)(spin_forever)()
        except TimeoutExpired as error:
            results.append(error.seconds)

    with deadline(0.05, suppress=True, on_expire=on_expire):
        spin_forever()
    with assert_takes_about(0.1), deadline(0.1, suppress=True):
        spin_forever()
    assert results == [0.1]


def test_on_expire_not_called_when_the_block_ends_in_time() -> None:
    calls = []
    with deadline(0.2, on_expire=lambda: calls.append(1)):
        pass
    spin(0.3)
    assert calls == []


def test_on_expire_that_raises_is_logged_and_the_interrupt_still_comes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> None:
        raise ValueError("on_expire broke")

    with caplog.at_level(logging.ERROR, logger="watchdog_timeout"):
        with pytest.raises(TimeoutExpired), deadline(0.05, on_expire=broken):
            spin_forever()
    assert "on_expire" in caplog.text
    assert "on_expire broke" in caplog.text


@contextlib.contextmanager
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _context_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and len(chain) < 20:
        chain.append(link)
        link = link.__context__
    return chain


@pytest.mark.parametrize("in_main_thread", [True, False])
def test_on_expire_unblocks_a_call_whose_own_error_goes_on_with_the_timeout_in_context(
    in_main_thread: bool,
) -> None:
    # on_expire shuts the socket down: the block then fails with its own error, which
    # propagates as itself (as under asyncio.timeout), with TimeoutExpired in its
    # context chain and scope.expired True; in the main thread as in any other.
    def trial() -> tuple[BaseException | None, bool]:
        with socket_pair() as (a, _b):
            scope = deadline(0.02, on_expire=lambda: a.shutdown(socket.SHUT_RDWR))
            try:
                with scope:
                    data = a.recv(10)
                    if not data:
                        raise ConnectionError("peer gone")
            except BaseException as exc:
                return exc, scope.expired
        return None, scope.expired

    for _ in range(10):
        outcome, expired = trial() if in_main_thread else run_in_thread(trial)
        assert expired
        assert not isinstance(outcome, _Interrupt)
        assert isinstance(outcome, (ConnectionError, TimeoutExpired)), repr(outcome)
        if isinstance(outcome, ConnectionError):
            assert any(isinstance(link, TimeoutExpired) for link in _context_chain(outcome))


def _count_to(n: int) -> str:
    """A query that runs in sqlite's C code only: about 0.2 s per million."""
    return (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < "
        f"{n}) SELECT count(*) FROM c"
    )


@pytest.mark.parametrize("in_main_thread", [True, False])
def test_a_limit_out_during_a_long_c_call_leaves_no_unanswered_wake_ups_behind(
    in_main_thread: bool,
) -> None:
    # The main thread's wake-up signals go unanswered while sqlite runs on: the count
    # must not carry over into the next scope, which would then be sent its interrupt
    # at once, ahead of its on_expire's effect (sqlite's own error, with the timeout in
    # its context, became a TimeoutExpired in every later scope of the main thread).
    def c_call_interrupted() -> BaseException | None:
        with contextlib.closing(sqlite3.connect(":memory:")) as connection:
            try:
                with deadline(0.1, on_expire=connection.interrupt):
                    connection.execute(_count_to(10**9)).fetchall()
            except Exception as exc:  # what the call ended with
                return exc
        return None

    def trials() -> tuple[list[int], BaseException | None]:
        with contextlib.closing(sqlite3.connect(":memory:")) as connection:
            with pytest.raises(TimeoutExpired):  # a limit out while sqlite runs on
                with deadline(0.02):
                    connection.execute(_count_to(10**6)).fetchall()
        counts = []
        with deadline(5):
            counts.append(current_state().wakeups)
        return counts, c_call_interrupted()

    counts, outcome = trials() if in_main_thread else run_in_thread(trials)
    assert counts == [0]
    # As the C call returns, the interrupt may already be pending (a loaded machine): it
    # then lands at the exit, and TimeoutExpired goes on with sqlite's error as cause.
    assert isinstance(outcome, (sqlite3.OperationalError, TimeoutExpired)), repr(outcome)
    if isinstance(outcome, sqlite3.OperationalError):
        assert any(isinstance(link, TimeoutExpired) for link in _context_chain(outcome))


def test_cleanup_that_raises_after_the_interrupt_keeps_its_error_with_the_timeout() -> None:
    with pytest.raises(KeyError) as caught, deadline(0.05) as scope:
        try:
            spin_forever()
        finally:
            raise KeyError("cleanup failed")
    assert scope.expired
    context = caught.value.__context__
    assert isinstance(context, TimeoutExpired)  # in place of the private interrupt
    assert context.seconds == 0.05
    assert isinstance(context.__cause__, _Interrupt)


def test_a_block_unblocked_by_on_expire_that_returns_reports_the_timeout() -> None:
    with socket_pair() as (a, _b):
        with pytest.raises(TimeoutExpired), deadline(0.05, on_expire=lambda: a.shutdown(2)):
            assert a.recv(10) == b""  # returns once on_expire shuts the pair down


def test_remaining_as_native_timeout_in_worker_thread_never_leaks_the_interrupt() -> None:
    # The socket's own timeout and the deadline fire together: either may win,
    # but the interrupt itself must never escape the block.
    def trials() -> list[str]:
        outcomes = []
        for _ in range(60):
            with socket_pair() as (a, _b):
                try:
                    with deadline(0.01):
                        left = remaining()
                        assert left is not None
                        # 0 would make the socket non-blocking (a busy machine can
                        # spend the 10 ms before this line): a millisecond at least.
                        a.settimeout(max(left, 0.001))
                        a.recv(10)
                except TimeoutExpired:
                    outcomes.append("TimeoutExpired")
                except (TimeoutError, socket.timeout):  # distinct classes on 3.9
                    outcomes.append("socket timeout")
                spin(0.005)  # a stray interrupt would land here
        return outcomes

    outcomes = run_in_thread(trials)
    assert set(outcomes) <= {"TimeoutExpired", "socket timeout"}
    assert len(outcomes) == 60


# --- cleanup -------------------------------------------------------------------------------


def test_scopes_leave_no_state_behind() -> None:
    for _ in range(100):
        with deadline(0.001, suppress=True):
            spin(0.002)
        with deadline(5):
            pass
    assert current_state().scopes == []
    spin(0.06)  # an interrupt still due would land here


def test_scope_entered_by_exit_stack_and_contextmanager() -> None:
    @contextlib.contextmanager
    def limited(seconds: float) -> Iterator[Deadline]:
        with deadline(seconds) as scope:
            yield scope

    with pytest.raises(TimeoutExpired), limited(0.05):
        spin_forever()
    with pytest.raises(TimeoutExpired), contextlib.ExitStack() as stack:
        stack.enter_context(deadline(0.05))
        spin_forever()


def test_deadline_in_a_generator_waits_while_it_is_suspended() -> None:
    def generator() -> Iterator[int]:
        with deadline(0.05):
            yield 1
            spin_forever()

    items = generator()
    assert next(items) == 1
    spin(0.15)  # suspended: its deadline passes, but this code is not its block
    with pytest.raises(TimeoutExpired):
        next(items)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="CPython 3.11+ exception tables")
def test_loop_whose_only_check_point_is_an_uncovered_back_edge_still_times_out() -> None:
    # python/cpython#108214, #130279: a back-edge the exception table misses. The
    # interrupt is held back while the loop has other check points; a loop with
    # none gets it there, and the scope's exit is finished by the delivery hook.
    def count_down(n: int) -> int:
        with deadline(0.05):
            while n:
                n -= 1
        return n

    with assert_takes_about(0.05), pytest.raises(TimeoutExpired):
        count_down(10**12)
    assert current_state().scopes == []
    spin(0.15)  # no runaway interrupts


class _Delegating:
    """A user's context manager whose __enter__ enters a deadline."""

    def __init__(self, seconds: float) -> None:
        self.scope = deadline(seconds)

    def __enter__(self) -> _Delegating:
        self.scope.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> bool:
        return self.scope.__exit__(*exc_info)


class _ExtendedDeadline(Deadline):
    """A subclass that extends __enter__."""

    entered = False

    def __enter__(self) -> _ExtendedDeadline:
        super().__enter__()
        self.entered = True
        return self


def _enter_in_a_helper(stack: contextlib.ExitStack, seconds: float) -> Deadline:
    return stack.enter_context(deadline(seconds))


def test_deadline_entered_by_a_users_context_manager_fires() -> None:
    with assert_takes_about(0.1), pytest.raises(TimeoutExpired):
        with _Delegating(0.1):
            spin_forever()


def test_deadline_subclass_extending_enter_fires() -> None:
    with assert_takes_about(0.1), pytest.raises(TimeoutExpired):
        with _ExtendedDeadline(0.1) as scope:
            assert scope.entered
            spin_forever()


def test_deadline_entered_on_an_exit_stack_in_a_helper_fires() -> None:
    with assert_takes_about(0.1), pytest.raises(TimeoutExpired):
        with contextlib.ExitStack() as stack:
            _enter_in_a_helper(stack, 0.1)
            spin_forever()


def test_deadline_moved_off_its_with_by_pop_all_fires_until_closed() -> None:
    with contextlib.ExitStack() as stack:
        scope = stack.enter_context(deadline(0.1, suppress=True))
        kept = stack.pop_all()
    with assert_takes_about(0.1), kept:
        spin_forever()
    assert scope.expired


@pytest.mark.parametrize("entry", ["users-context-manager", "subclass", "helper", "pop-all"])
def test_deadline_entered_through_user_code_ends_quietly_in_time(entry: str) -> None:
    # The exit of a scope whose block ended in time: no RuntimeError ("... it is
    # finished"), nothing that lands afterwards, and the limit lifted.
    def entered_and_left_in_time() -> Deadline:
        if entry == "users-context-manager":
            delegating = _Delegating(0.3)
            with delegating:
                spin(0.05)
            return delegating.scope
        if entry == "subclass":
            with _ExtendedDeadline(0.3) as extended:
                spin(0.05)
            return extended
        if entry == "helper":
            with contextlib.ExitStack() as stack:
                scope = _enter_in_a_helper(stack, 0.3)
                spin(0.05)
            return scope
        with contextlib.ExitStack() as stack:
            scope = stack.enter_context(deadline(0.3))
            kept = stack.pop_all()
        with kept:
            spin(0.05)
        return scope

    for _ in range(5):
        scope = entered_and_left_in_time()
        assert not scope.expired
        assert remaining() is None
    spin(0.5)  # past every limit: nothing lands


def test_deadline_in_a_coroutine_is_refused_with_directions() -> None:
    async def limited() -> None:
        with deadline(0.1):
            await asyncio.sleep(1)

    with pytest.raises(RuntimeError, match=r"asyncio\.timeout.*@timeout"):
        asyncio.run(limited())


@pytest.mark.parametrize("stack", [contextlib.ExitStack, contextlib.AsyncExitStack])
def test_deadline_entered_on_a_stack_in_a_coroutine_is_refused(stack: type[Any]) -> None:
    # No `with` statement enters it: the frame that called enter_context decides.
    async def limited() -> None:
        exit_stack = stack()
        exit_stack.enter_context(deadline(0.1))
        await asyncio.sleep(1)

    with pytest.raises(RuntimeError, match=r"asyncio\.timeout.*@timeout"):
        asyncio.run(limited())


def test_deadline_in_a_function_called_from_a_coroutine_works() -> None:
    def blocking_part() -> str:
        with deadline(0.1, suppress=True) as scope:
            spin_forever()
        return f"expired={scope.expired}"

    async def caller() -> str:
        return blocking_part()

    assert asyncio.run(caller()) == "expired=True"
