"""deadline() under stress: the deadline boundary, forced deliveries, random nestings.

Counts that must be zero are counted over many trials, with threads switching
every 10 us so that races show up (the default 5 ms hides them).
"""

from __future__ import annotations

import contextlib
import dis
import os
import random
import sys
import time
from types import CodeType, FrameType
from typing import Any, Callable, Optional

import pytest
from helpers import run_in_thread, spin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import watchdog_timeout
from watchdog_timeout import Deadline, TimeoutExpired, deadline, remaining
from watchdog_timeout._errors import _Interrupt
from watchdog_timeout._monitor import monitor
from watchdog_timeout._registry import current_state

TRIALS = 20_000


def boundary_trials(trials: int, seed: int) -> dict[str, int]:
    """Work about as long as the limit, on both sides of it; count what happens.

    ``wrong`` counts a TimeoutExpired from a body that finished; ``stray`` an
    interrupt that landed after its block; ``unconverted`` one that escaped its
    block as the raw interrupt.
    """
    rng = random.Random(seed)
    clock = time.perf_counter
    limit = 0.0002
    counts = dict.fromkeys(("completed", "timeout", "wrong", "stray", "unconverted"), 0)
    for _ in range(trials):
        work = limit * rng.uniform(0.5, 3.0)
        finished = False
        try:
            try:
                start = clock()
                with deadline(limit):
                    while clock() - start < work:
                        pass
                    finished = True
                counts["completed"] += 1
            except TimeoutExpired:
                counts["wrong" if finished else "timeout"] += 1
            except _Interrupt:
                counts["unconverted"] += 1
            tail = clock()
            while clock() - tail < 0.0001:  # a stray interrupt lands here
                pass
        except _Interrupt:
            counts["stray"] += 1
    return counts


def assert_clean(counts: dict[str, int], trials: int) -> None:
    assert counts["stray"] == 0, counts
    assert counts["unconverted"] == 0, counts
    assert counts["wrong"] == 0, counts
    assert counts["completed"] + counts["timeout"] == trials, counts
    assert counts["timeout"] > 0, counts  # the trials did straddle the boundary
    assert current_state().scopes == []


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("fast_switching")
def test_boundary_trials_main_thread() -> None:
    assert_clean(boundary_trials(TRIALS, seed=1), TRIALS)


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("fast_switching")
def test_boundary_trials_worker_thread() -> None:
    assert_clean(run_in_thread(lambda: boundary_trials(TRIALS, seed=2), timeout=280), TRIALS)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.usefixtures("fast_switching")
def test_boundary_trials_200k() -> None:
    assert_clean(boundary_trials(100_000, seed=3), 100_000)
    counts = run_in_thread(lambda: boundary_trials(100_000, seed=4), timeout=3000)
    assert_clean(counts, 100_000)


# --- forced deliveries inside our own bookkeeping ----------------------------------


class Boom(Exception):
    """Stands for an exception from elsewhere (KeyboardInterrupt, another async_raise)."""


TraceFunction = Callable[[FrameType, str, Any], Optional[Callable[..., Any]]]

# Where an asynchronous exception can land: at the entry of a function (its
# "call" event: ours, or a Python function ours calls), at a backward jump, and
# right after a call returns. Opcode tracing could raise anywhere (just before
# the C call that releases a lock, say), which no real delivery does.


PACKAGE = os.path.dirname(watchdog_timeout.__file__)


def _opname(frame: FrameType) -> str:
    return dis.opname[frame.f_code.co_code[frame.f_lasti]]


def raising_at(code: CodeType, step: int, counter: list[int]) -> TraceFunction:
    """A trace function that raises Boom at check point ``step`` (0: the call) of ``code``."""
    previous = [""]

    def count() -> None:
        counter[0] += 1
        if counter[0] == step:
            raise Boom

    def local(frame: FrameType, event: str, arg: object) -> TraceFunction:
        if event == "opcode":
            name = _opname(frame)
            if name.startswith(("JUMP_BACKWARD", "JUMP_ABSOLUTE")) or previous[0].startswith(
                "CALL"  # a call has returned (PRECALL, on 3.11, has not called yet)
            ):
                count()
            previous[0] = name
        return local

    def first(frame: FrameType, event: str, arg: object) -> TraceFunction | None:
        if frame.f_code is code:
            frame.f_trace_opcodes = True
            if step == 0:
                raise Boom
            return local
        if (
            frame.f_back is not None
            and frame.f_back.f_code is code
            and frame.f_code.co_filename.startswith(PACKAGE)
        ):
            # The entry of one of our functions called from ``code``; not a finalizer
            # that a deallocation ran there (it would swallow Boom; a swallowed
            # interrupt is sent again, see test_finalizers).
            count()
        return None

    return first


def run_with_delivery_at(code: CodeType, step: int) -> tuple[bool, Deadline]:
    """Enter and exit a 50 ms deadline with Boom raised at ``step`` of ``code``."""
    counter = [0]
    scope = deadline(0.05)
    sys.settrace(raising_at(code, step, counter))
    try:
        with scope:
            pass
    except Boom:
        return True, scope
    finally:
        sys.settrace(None)
    return False, scope


def opcodes_run_by(code: CodeType) -> int:
    """How many check points one enter and exit pass in ``code``."""
    counter = [0]
    sys.settrace(raising_at(code, -1, counter))
    try:
        with deadline(0.05):
            pass
    finally:
        sys.settrace(None)
    return counter[0]


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="opcode tracing")
@pytest.mark.parametrize("method", ["__enter__", "__exit__", "_finish"])
def test_delivery_at_every_step_of_enter_and_exit_leaves_a_consistent_state(method: str) -> None:
    code = getattr(Deadline, method).__code__
    steps = opcodes_run_by(code)
    assert steps >= 1
    for step in range(steps + 1):
        raised, scope = run_with_delivery_at(code, step)
        assert raised, f"Boom at step {step} of {method} was swallowed"
        # Past the deadline: nothing may land here, and the scope must be gone.
        spin(0.12)
        assert monitor.lock.acquire(blocking=False), "monitor lock left held"
        monitor.lock.release()
        assert scope not in current_state().scopes, (step, scope)
        assert remaining() is None
    with pytest.raises(TimeoutExpired), deadline(0.02):  # and the next scope works
        spin(10)


def _block_then_exit(scope: Any, block_done: list[bool]) -> None:
    with scope:
        block_done[0] = True


def _all_opcodes(frame: FrameType, event: str, arg: object) -> TraceFunction:
    frame.f_trace_opcodes = True
    return _all_opcodes


def exit_after_a_pause(pause: float) -> Deadline:
    """Run ``with deadline(0.05): <nothing>``, holding the thread for ``pause`` seconds
    at the call of the scope's ``__exit__``, its block done: a thread that the OS
    did not schedule there while the limit ran out."""
    scope = deadline(0.05)
    block_done = [False]
    paused = []

    def local(frame: FrameType, event: str, arg: object) -> TraceFunction:
        if event == "opcode" and block_done[0] and _opname(frame).startswith(("CALL", "PRECALL")):
            block_done[0] = False
            paused.append(frame.f_lineno)
            time.sleep(pause)  # the monitor, or the main thread's handler, looks meanwhile
        return local

    def first(frame: FrameType, event: str, arg: object) -> TraceFunction | None:
        if frame.f_code is _block_then_exit.__code__:
            frame.f_trace_opcodes = True
            return local
        return None

    # 3.12 sends no opcode events in code at its first traced run: a run before.
    sys.settrace(_all_opcodes)
    _block_then_exit(contextlib.nullcontext(), [False])
    sys.settrace(first)
    try:
        _block_then_exit(scope, block_done)
    finally:
        sys.settrace(None)
    assert paused, "the tracer never paused the thread"
    return scope


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="opcode tracing")
@pytest.mark.parametrize("where", ["main", "thread"])
def test_an_exit_long_on_its_way_ends_its_scope_quietly(where: str) -> None:
    # Looks at a thread seen between its block and its exit's frame for long decide
    # that the exit was skipped, and retire the scope; the exit that then runs
    # ends it as usual: its block ended before the interrupt was sent.
    if where == "main":
        scope = exit_after_a_pause(1.0)
    else:
        scope = run_in_thread(lambda: exit_after_a_pause(1.0))
    assert not scope.expired
    assert scope not in current_state().scopes
    spin(0.1)  # nothing lands later
    assert remaining() is None


# --- random nestings against a model ---------------------------------------------------

# Spaced widely: on a busy machine an interrupt can land 100 ms late, and by then a
# second, longer limit would be expiring too (the outermost expiring one reports).
LIMITS = st.sampled_from([None, 0.03, 0.25, 0.5, 30.0])


@st.composite
def nestings(draw: st.DrawFn) -> list[tuple[float | None, float | None, bool]]:
    """Levels of (limit at creation, limit after a reschedule or no reschedule, when)."""
    levels = draw(st.integers(min_value=1, max_value=4))
    drawn = []
    for _ in range(levels):
        limit = draw(LIMITS)
        reschedule = draw(st.booleans())
        later = draw(LIMITS) if reschedule else limit
        drawn.append((limit, later, reschedule))
    return drawn


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(levels=nestings())
def test_random_nestings_match_the_model(
    levels: list[tuple[float | None, float | None, bool]],
) -> None:
    # Model: every level's limit counts from about the same moment (all entered,
    # then rescheduled, at once); the level whose effective limit is the smallest
    # reports; with no limit under 30 s the body completes. Limits sharing the
    # smallest value: the outermost of them reports.
    effective = [later for _, later, _ in levels]
    short = [(limit, i) for i, limit in enumerate(effective) if limit is not None and limit < 1]
    expected = min(short)[1] if short else None

    scopes: list[Deadline] = []

    def body(level: int) -> None:
        if level == len(levels):
            spin(0.15 if expected is None else 5.0)  # long enough for a late interrupt
            return
        limit, later, reschedule = levels[level]
        with deadline(limit, label=str(level)) as scope:
            scopes.append(scope)
            if reschedule:
                scope.reschedule(later)
            body(level + 1)

    if expected is None:
        body(0)
        assert not any(scope.expired for scope in scopes)
    else:
        with pytest.raises(TimeoutExpired) as caught:
            body(0)
        reported = int(caught.value.name)
        assert reported == expected, (effective, reported)
        assert [scope.expired for scope in scopes] == [i == reported for i in range(len(levels))]
    assert current_state().scopes == []
