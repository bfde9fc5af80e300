"""The monitor: the deadline heap, its thread, fork and interpreter shutdown.

The heap's logic runs against a fake clock with ``start_thread=False`` (no thread, no
sleeping): ordering, lazy cancellation and compaction, wake-up requests, and
``run_due()`` (alarms under the lock, follow-ups without it, failures logged). Then a
real monitor thread (a fresh ``Monitor()``, stopped at the end), a fork in a
subprocess (the child gets a new monitor thread that still fires its deadline), and
interpreter shutdown with deadlines armed in daemon threads.
"""

from __future__ import annotations

import contextlib
import dis
import linecache
import logging
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any, Callable

import pytest
from helpers import assert_takes_about, run_python, spin, spin_forever

from watchdog_timeout import _monitor, deadline, remaining
from watchdog_timeout._monitor import Alarm, Monitor

# --- test doubles ---------------------------------------------------------------------


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _held(lock: object) -> bool:
    """Whether this thread holds the monitor's (re-entrant) lock."""
    return bool(lock._is_owned())  # type: ignore[attr-defined]


class Target(Alarm):
    """An alarm target that records its alarms (and can raise or return a follow-up)."""

    def __init__(
        self,
        name: str,
        log: list[tuple[str, float]] | None = None,
        *,
        raises: BaseException | None = None,
        follow_up: Callable[[], None] | None = None,
        monitor: Monitor | None = None,
    ) -> None:
        self.name = name
        self.log = log if log is not None else []
        self.raises = raises
        self.follow_up = follow_up
        self.monitor = monitor
        self.lock_held: list[bool] = []
        self.fired = threading.Event()

    def alarm(self, now: float) -> Callable[[], None] | None:
        if self.monitor is not None:
            self.lock_held.append(_held(self.monitor.lock))
        self.log.append((self.name, now))
        self.fired.set()
        if self.raises is not None:
            raise self.raises
        return self.follow_up

    def __repr__(self) -> str:
        return f"Target({self.name!r})"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def heap(clock: FakeClock) -> Monitor:
    """A monitor with a fake clock and no thread."""
    return Monitor(clock, start_thread=False)


@pytest.fixture
def live() -> Iterator[Monitor]:
    """A fresh monitor with a real thread, stopped (and checked) at the end."""
    monitor = Monitor()
    yield monitor
    monitor.stop(timeout=5.0)
    thread = monitor._thread
    assert thread is None or not thread.is_alive(), "stop() did not end the monitor thread"


def _names(targets: Sequence[object]) -> list[str]:
    return [t.name for t in targets if isinstance(t, Target)]


def _thread_of(monitor: Monitor) -> threading.Thread | None:
    # A function, not the attribute: mypy would narrow the attribute between calls.
    return monitor._thread


def _wake_pending(monitor: Monitor) -> bool:
    return not monitor._wake.locked()


# --- the heap ---------------------------------------------------------------------------


def test_monitor_without_thread_starts_none(heap: Monitor) -> None:
    before = set(threading.enumerate())
    with heap.lock:
        heap.schedule(1.0, Target("a"))
    assert heap._thread is None
    assert set(threading.enumerate()) == before


def test_monitor_pop_due_returns_due_targets_earliest_first(heap: Monitor) -> None:
    with heap.lock:
        for when, name in [(5.0, "e"), (1.0, "a"), (3.0, "c"), (2.0, "b"), (4.0, "d")]:
            heap.schedule(when, Target(name))
        assert _names(heap.pop_due(0.5)) == []
        assert _names(heap.pop_due(3.0)) == ["a", "b", "c"]  # `when <= now` is due
        assert len(heap) == 2
        assert _names(heap.pop_due(math.inf)) == ["d", "e"]
        assert len(heap) == 0


def test_monitor_pop_due_returns_every_tie_after_earlier_ones(heap: Monitor) -> None:
    # Equal times fall back to Alarm's ordering (by identity): all come out, in
    # some order, after every earlier entry.
    names = [f"t{i}" for i in range(50)]
    with heap.lock:
        for name in names:
            heap.schedule(7.0, Target(name))
        heap.schedule(6.0, Target("first"))
        popped = _names(heap.pop_due(7.0))
    assert popped[0] == "first"
    assert sorted(popped[1:]) == sorted(names)


def test_monitor_schedule_returns_the_entry(heap: Monitor) -> None:
    target = Target("a")
    with heap.lock:
        entry = heap.schedule(3.0, target)
    assert entry == [3.0, target]


def test_monitor_cancel_is_lazy(heap: Monitor) -> None:
    with heap.lock:
        first = heap.schedule(1.0, Target("a"))
        heap.schedule(2.0, Target("b"))
        heap.cancel(first)
        assert len(heap) == 1
        assert len(heap._heap) == 2  # still in the heap
        assert heap.next_when() == 2.0  # the monitor drops dead entries from the top
        assert len(heap._heap) == 1
        heap.cancel(first)  # twice: counted once
        assert len(heap) == 1
        assert _names(heap.pop_due(5.0)) == ["b"]
        assert len(heap) == 0
        assert heap._heap == []
        assert heap._dead == 0


def test_monitor_cancel_after_firing_changes_nothing(heap: Monitor) -> None:
    with heap.lock:
        fired = heap.schedule(1.0, Target("a"))
        heap.schedule(2.0, Target("b"))
        assert _names(heap.pop_due(1.0)) == ["a"]
        heap.cancel(fired)
        assert len(heap) == 1
        assert heap._dead == 0
        assert _names(heap.pop_due(2.0)) == ["b"]


def test_monitor_len_counts_live_entries(heap: Monitor) -> None:
    with heap.lock:
        entries = [heap.schedule(float(i), Target(str(i))) for i in range(10)]
        for count, entry in enumerate(entries[::2], start=1):
            heap.cancel(entry)
            assert len(heap) == 10 - count


def test_monitor_compacts_when_more_than_half_is_dead(heap: Monitor) -> None:
    with heap.lock:
        entries = [heap.schedule(float(i), Target(f"t{i}")) for i in range(200)]
        # Cancel every other entry but the first, then more: compaction at the 101st
        # dead one. The monitor compacts (in next_when), never cancel() itself.
        order = entries[2::2] + entries[1::2] + entries[:1]
        for entry in order[:100]:
            heap.cancel(entry)
        heap.next_when()
        assert len(heap._heap) == 200  # exactly half dead: not yet
        heap.cancel(order[100])
        assert len(heap._heap) == 200
        assert heap.next_when() == 0.0
        assert len(heap._heap) == 99
        assert heap._dead == 0
        assert len(heap) == 99
        live = ["t0"] + [f"t{i}" for i in range(5, 200, 2)]
        assert _names(heap.pop_due(math.inf)) == live


def test_monitor_does_not_compact_small_heaps(heap: Monitor) -> None:
    with heap.lock:
        entries = [heap.schedule(float(i), Target(f"t{i}")) for i in range(100)]
        for entry in entries[1:65]:
            heap.cancel(entry)
        heap.next_when()
        assert len(heap._heap) == 100  # 64 dead: not beyond the minimum
        assert len(heap) == 36
        heap.cancel(entries[0])
        heap.next_when()
        assert len(heap._heap) == 35  # the 65th: beyond it, and more than half
        assert _names(heap.pop_due(math.inf)) == [f"t{i}" for i in range(65, 100)]


def test_monitor_never_compacts_below_the_minimum(heap: Monitor) -> None:
    with heap.lock:
        entries = [heap.schedule(float(i), Target(f"t{i}")) for i in range(66)]
        for entry in entries[1:65]:
            heap.cancel(entry)
        heap.next_when()
        assert len(heap._heap) == 66
        assert _names(heap.pop_due(math.inf)) == ["t0", "t65"]
        assert heap._dead == 0


def test_monitor_compaction_keeps_working_afterwards(heap: Monitor) -> None:
    with heap.lock:
        entries = [heap.schedule(float(i), Target(f"t{i}")) for i in range(300)]
        for entry in entries[:250]:
            heap.cancel(entry)
        heap.schedule(0.5, Target("early"))
        assert len(heap) == 51
        assert _names(heap.pop_due(260.0)) == ["early"] + [f"t{i}" for i in range(250, 261)]
        assert len(heap) == 39
        assert len(heap._heap) - heap._dead == 39


def test_monitor_next_when(heap: Monitor) -> None:
    with heap.lock:
        assert heap.next_when() == math.inf
        heap.schedule(4.0, Target("a"))
        heap.schedule(2.0, Target("b"))
        assert heap.next_when() == 2.0
        heap.pop_due(math.inf)
        assert heap.next_when() == math.inf


# --- wake-up requests ---------------------------------------------------------------


def _pretend_thread_running(monitor: Monitor) -> None:
    # schedule() requests a wake-up only from a monitor that has a thread; a
    # Thread object that never runs stands in for it.
    monitor._thread = threading.Thread(target=lambda: None, name="watchdog_timeout-fake")


def _consume_wake(monitor: Monitor) -> bool:
    """What the monitor thread does when woken; whether a wake-up was pending."""
    return monitor._wake.acquire(blocking=False)


def test_monitor_wakes_only_for_a_new_earliest_entry(heap: Monitor) -> None:
    _pretend_thread_running(heap)
    assert heap._next_wake == math.inf
    assert not _consume_wake(heap)
    with heap.lock:
        heap.schedule(10.0, Target("a"))
    assert heap._next_wake == 10.0
    assert _wake_pending(heap)
    assert _consume_wake(heap)
    with heap.lock:
        heap.schedule(20.0, Target("later"))
        heap.schedule(10.0, Target("tie"))
    assert heap._next_wake == 10.0
    assert not _wake_pending(heap)
    assert not _consume_wake(heap)
    with heap.lock:
        heap.schedule(5.0, Target("earlier"))
    assert heap._next_wake == 5.0
    assert _wake_pending(heap)
    assert _consume_wake(heap)


def test_monitor_wakes_once_while_a_wake_up_is_pending(heap: Monitor) -> None:
    _pretend_thread_running(heap)
    with heap.lock:
        heap.schedule(10.0, Target("a"))
        heap.schedule(5.0, Target("b"))  # releasing the wake lock twice would raise
        heap.schedule(1.0, Target("c"))
    assert heap._next_wake == 1.0
    assert _consume_wake(heap)
    assert not _consume_wake(heap)


def test_monitor_without_thread_requests_no_wake_up(heap: Monitor) -> None:
    with heap.lock:
        heap.schedule(10.0, Target("a"))
    assert heap._next_wake == 10.0
    assert not _wake_pending(heap)
    assert not _consume_wake(heap)


def test_monitor_run_due_sets_next_wake(heap: Monitor, clock: FakeClock) -> None:
    _pretend_thread_running(heap)
    with heap.lock:
        heap.schedule(100.5, Target("a"))
        heap.schedule(101.0, Target("b"))
    _consume_wake(heap)
    clock.now = 100.7
    assert heap.run_due() == 101.0
    assert heap._next_wake == 101.0
    # Not earlier than the next wake-up: no request.
    with heap.lock:
        heap.schedule(102.0, Target("c"))
    assert not _wake_pending(heap)
    clock.now = 200.0
    assert heap.run_due() == math.inf
    assert heap._next_wake == math.inf


# --- run_due ------------------------------------------------------------------------


def test_monitor_run_due_alarms_due_targets_with_the_lock_held(
    heap: Monitor, clock: FakeClock
) -> None:
    log: list[tuple[str, float]] = []
    targets = [Target(name, log, monitor=heap) for name in ("a", "b", "c")]
    with heap.lock:
        heap.schedule(101.0, targets[1])
        heap.schedule(100.5, targets[0])
        heap.schedule(105.0, targets[2])
    assert heap.run_due() == 100.5  # nothing due at 100.0
    assert log == []
    clock.now = 101.0
    assert heap.run_due() == 105.0
    assert log == [("a", 101.0), ("b", 101.0)]  # called with the time read once
    assert targets[0].lock_held == [True]
    assert targets[1].lock_held == [True]
    assert not _held(heap.lock)
    with heap.lock:
        assert len(heap) == 1


def test_monitor_run_due_runs_follow_ups_without_the_lock(heap: Monitor, clock: FakeClock) -> None:
    events: list[str] = []
    lock_held: list[bool] = []

    def follow_up(name: str) -> Callable[[], None]:
        def run() -> None:
            lock_held.append(_held(heap.lock))
            events.append(f"follow-up {name}")

        return run

    class Recording(Target):
        def alarm(self, now: float) -> Callable[[], None] | None:
            events.append(f"alarm {self.name}")
            return super().alarm(now)

    with heap.lock:
        heap.schedule(100.0, Recording("a", follow_up=follow_up("a")))
        heap.schedule(100.0, Recording("b"))  # returns None: no follow-up
        heap.schedule(100.0, Recording("c", follow_up=follow_up("c")))
    heap.run_due()
    alarms, follow_ups = events[:3], events[3:]
    assert sorted(alarms) == ["alarm a", "alarm b", "alarm c"]  # all before any follow-up
    assert sorted(follow_ups) == ["follow-up a", "follow-up c"]
    assert lock_held == [False, False]


def test_monitor_run_due_follow_up_can_schedule(heap: Monitor, clock: FakeClock) -> None:
    # A follow-up takes the lock itself (as on_expire's rescheduling does).
    later = Target("later")

    def follow_up() -> None:
        with heap.lock:
            heap.schedule(clock.now + 1.0, later)

    with heap.lock:
        heap.schedule(100.0, Target("a", follow_up=follow_up))
    heap.run_due()  # follow-ups run off the monitor's path: its schedule wakes it
    with heap.lock:
        assert heap.next_when() == 101.0
    clock.now = 101.0
    heap.run_due()
    assert later.log == [("later", 101.0)]


@pytest.mark.parametrize(
    "error", [RuntimeError("boom"), SystemExit(3), KeyboardInterrupt()], ids=repr
)
def test_monitor_run_due_logs_an_alarm_that_raises(
    heap: Monitor, caplog: pytest.LogCaptureFixture, error: BaseException
) -> None:
    log: list[tuple[str, float]] = []
    with heap.lock:
        heap.schedule(99.0, Target("before", log))
        heap.schedule(99.5, Target("bad", log, raises=error))
        heap.schedule(100.0, Target("after", log))
    with caplog.at_level(logging.ERROR, logger="watchdog_timeout"):
        assert heap.run_due() == math.inf  # not raised
    assert [name for name, _ in log] == ["before", "bad", "after"]
    records = [r for r in caplog.records if r.name == "watchdog_timeout"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None
    assert records[0].exc_info[1] is error
    assert not _held(heap.lock)


@pytest.mark.parametrize("error", [ValueError("boom"), SystemExit(3)], ids=repr)
def test_monitor_run_due_logs_a_follow_up_that_raises(
    heap: Monitor, caplog: pytest.LogCaptureFixture, error: BaseException
) -> None:
    ran: list[str] = []

    def bad() -> None:
        ran.append("bad")
        raise error

    with heap.lock:
        heap.schedule(100.0, Target("a", follow_up=bad))
        heap.schedule(100.0, Target("b", follow_up=lambda: ran.append("good")))
    with caplog.at_level(logging.ERROR, logger="watchdog_timeout"):
        heap.run_due()
    assert sorted(ran) == ["bad", "good"]  # the good one runs whatever the order
    records = [r for r in caplog.records if r.name == "watchdog_timeout"]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert records[0].exc_info[1] is error


def test_monitor_run_due_skips_cancelled_entries(heap: Monitor, clock: FakeClock) -> None:
    log: list[tuple[str, float]] = []
    with heap.lock:
        entry = heap.schedule(99.0, Target("cancelled", log))
        heap.schedule(99.5, Target("kept", log))
        heap.cancel(entry)
    heap.run_due()
    assert log == [("kept", 100.0)]
    with heap.lock:
        assert heap._dead == 0
        assert heap._heap == []


# --- exceptions from elsewhere inside arming and disarming ----------------------------


class Elsewhere(BaseException):
    """Stands for an exception from elsewhere: Ctrl-C, another library's async raise."""


def _lines(function: Callable[..., object]) -> list[int]:
    code = function.__code__
    starts = {line for _, line in dis.findlinestarts(code) if line is not None}
    return sorted(starts - {code.co_firstlineno})


#: Every line of the code that the limited threads run in the monitor, but the
#: start of its thread (test_monitor_survives_an_exception_inside_its_thread_start).
STEPS = [
    (function, line)
    for function in (Monitor.schedule, Monitor.cancel, Monitor._wake_up)
    for line in _lines(function)
    if "self._start()" not in linecache.getline(function.__code__.co_filename, line)
]


def _step_id(step: tuple[Callable[..., object], int]) -> str:
    function, line = step
    return f"{function.__name__}+{line - function.__code__.co_firstlineno}"


@contextlib.contextmanager
def _raising_before(function: Callable[..., object], line: int) -> Iterator[list[int]]:
    """Raise Elsewhere before ``line`` of ``function`` runs, the first time it does."""
    code = function.__code__
    hits: list[int] = []

    def local(frame: FrameType, event: str, arg: object) -> Any:
        if event == "line" and frame.f_lineno == line and not hits:
            hits.append(line)
            raise Elsewhere
        return local

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        return local if frame.f_code is code else None

    sys.settrace(tracer)
    try:
        yield hits
    finally:
        sys.settrace(None)


def _arm_and_disarm_cut_short(monitor: Monitor, step: tuple[Callable[..., object], int]) -> None:
    """Arm 100 entries, then arm and disarm with an exception at ``step``.

    The traced calls: two new earliest entries (the second while a wake-up is
    pending), then the two cancels around the compaction threshold.
    """
    entries = [monitor.schedule(monitor.clock() + 50.0 + i, Target(f"t{i}")) for i in range(100)]
    for entry in entries[1:65]:
        monitor.cancel(entry)  # 64 dead: the next one asks for a compaction
    _consume_wake(monitor)
    calls: list[Callable[[], object]] = [
        lambda: monitor.schedule(monitor.clock() + 30.0, Target("thirty")),
        lambda: monitor.schedule(monitor.clock() + 20.0, Target("twenty")),
        lambda: monitor.cancel(entries[0]),
        lambda: monitor.cancel(entries[65]),
    ]
    with _raising_before(*step) as hits:
        for call in calls:
            try:
                call()
            except Elsewhere:
                pass
    assert hits, "the line never ran"


@pytest.mark.parametrize("step", STEPS, ids=_step_id)
def test_an_exception_anywhere_in_arming_or_disarming_leaves_a_sound_heap(
    heap: Monitor, step: tuple[Callable[..., object], int]
) -> None:
    # On 3.9 an exception from elsewhere can land between any two statements. It
    # once left a "wake-up pending" flag set with no wake-up (every later deadline
    # waited for the monitor's own timeout), and cut a compaction short between the
    # new list and its heapify (the monitor slept past due entries).
    _pretend_thread_running(heap)
    with heap.lock:
        _arm_and_disarm_cut_short(heap, step)
    _consume_wake(heap)
    with heap.lock:
        heap.schedule(heap.clock() + 10.0, Target("next"))
    assert _consume_wake(heap), "a new earliest entry did not wake the monitor"
    entries = heap._heap
    assert all(entries[(i - 1) // 2][0] <= entries[i][0] for i in range(1, len(entries)))
    with heap.lock:
        assert heap.next_when() == heap.clock() + 10.0
        popped = _names(heap.pop_due(math.inf))
        assert heap.next_when() == math.inf
        assert len(heap) == 0
    assert popped[0] == "next"
    assert set(popped) >= {f"t{i}" for i in range(66, 100)}
    assert not set(popped) & {f"t{i}" for i in range(1, 65)}
    order = {"next": 10, "twenty": 20, "thirty": 30, **{f"t{i}": 50 + i for i in range(100)}}
    assert [order[name] for name in popped] == sorted(order[name] for name in popped)


@pytest.mark.parametrize("step", STEPS, ids=_step_id)
def test_a_deadline_after_an_arming_cut_short_fires_on_time(
    live: Monitor, step: tuple[Callable[..., object], int]
) -> None:
    with live.lock:
        _arm_and_disarm_cut_short(live, step)  # the monitor sleeps for 20 s or more
    soon = Target("soon")
    with live.lock:
        live.schedule(live.clock() + 0.05, soon)
    assert soon.fired.wait(5.0), "the monitor slept past a new earliest entry"


# --- the real thread ------------------------------------------------------------------


def test_monitor_thread_starts_lazily_named_and_daemon(live: Monitor) -> None:
    assert _thread_of(live) is None
    target = Target("a")
    with live.lock:
        live.schedule(live.clock() + 60.0, target)
    thread = _thread_of(live)
    assert thread is not None
    assert thread.name == "watchdog_timeout-monitor"
    assert thread.daemon
    assert thread.is_alive()
    with live.lock:
        live.schedule(live.clock() + 30.0, Target("b"))
    assert _thread_of(live) is thread  # one thread for every entry


@pytest.mark.parametrize("started", [False, True], ids=["before-the-thread-runs", "after"])
def test_monitor_survives_an_exception_inside_its_thread_start(
    live: Monitor, monkeypatch: pytest.MonkeyPatch, started: bool
) -> None:
    # A Ctrl-C can land inside Thread.start() of the first schedule(). The monitor
    # once kept the thread it never started: no deadline fired again in the process.
    monkeypatch.setattr(_monitor, "IDLE", 0.05)  # a thread that did start ends soon
    real_start = threading.Thread.start
    cut: list[threading.Thread] = []

    def interrupted_start(thread: threading.Thread) -> None:
        monkeypatch.setattr(threading.Thread, "start", real_start)
        cut.append(thread)
        if started:
            real_start(thread)
        raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", interrupted_start)
    cut_short = Target("cut short")
    with pytest.raises(KeyboardInterrupt), live.lock:
        live.schedule(live.clock() + 0.05, cut_short)
    with live.lock:
        (entry,) = [entry for entry in live._heap if entry[1] is cut_short]
        live.cancel(entry)  # rolled back, as Deadline.__enter__ does
    later = Target("later")
    with live.lock:
        live.schedule(live.clock() + 0.2, later)
    assert later.fired.wait(10), "the monitor fired nothing after a start cut short"
    assert not cut_short.fired.is_set()
    if started:  # it ran beside the new one, and exits once idle
        cut[0].join(5.0)
        assert not cut[0].is_alive()


def test_monitor_thread_fires_alarms_on_time(live: Monitor) -> None:
    fired: list[tuple[str, float]] = []
    start = live.clock()
    targets = [Target(name, fired) for name in ("a", "b")]
    with assert_takes_about(0.3):
        with live.lock:
            live.schedule(start + 0.3, targets[1])
            live.schedule(start + 0.15, targets[0])
        assert targets[1].fired.wait(10)
    assert [name for name, _ in fired] == ["a", "b"]
    assert fired[0][1] >= start + 0.15
    assert fired[1][1] >= start + 0.3


def test_monitor_thread_is_woken_by_an_earlier_entry(live: Monitor) -> None:
    with live.lock:
        live.schedule(live.clock() + 30.0, Target("late"))
    time.sleep(0.05)  # the thread now sleeps until the late entry
    early = Target("early")
    with assert_takes_about(0.1):
        with live.lock:
            live.schedule(live.clock() + 0.1, early)
        assert early.fired.wait(10)


def test_monitor_thread_survives_a_raising_alarm(
    live: Monitor, caplog: pytest.LogCaptureFixture
) -> None:
    bad = Target("bad", raises=RuntimeError("alarm failed"))
    good = Target("good")
    with caplog.at_level(logging.ERROR, logger="watchdog_timeout"):
        with live.lock:
            live.schedule(live.clock() + 0.05, bad)
        assert bad.fired.wait(10)
        with live.lock:
            live.schedule(live.clock() + 0.05, good)
        assert good.fired.wait(10)
    assert any(
        r.exc_info is not None and r.exc_info[1] is bad.raises
        for r in caplog.records
        if r.name == "watchdog_timeout"
    )
    assert live._thread is not None
    assert live._thread.is_alive()


def test_monitor_stop_joins_the_thread(live: Monitor) -> None:
    fired = Target("never")
    with live.lock:
        live.schedule(live.clock() + 0.3, fired)
    thread = live._thread
    assert thread is not None
    live.stop()
    assert not thread.is_alive()
    assert not fired.fired.wait(0.5)  # armed entries stop firing


def test_monitor_stopped_before_use_starts_no_thread() -> None:
    monitor = Monitor()
    monitor.stop()
    with monitor.lock:
        monitor.schedule(monitor.clock() + 0.01, Target("a"))
    assert monitor._thread is None


# --- fork and shutdown, in subprocesses ----------------------------------------------


def _run_script(script: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_monitor_restarts_in_a_forked_child() -> None:
    # The child inherits the armed deadline but not the monitor thread: it must get a
    # new one, or its busy loop runs to the end (exit 1) instead of timing out (exit 0).
    done = _run_script(
        """
        import os, sys, time, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        from watchdog_timeout import TimeoutExpired, deadline
        from watchdog_timeout._monitor import monitor

        def spin(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                pass

        parent_thread = None
        pid = -1
        try:
            with deadline(0.3):
                parent_thread = monitor._thread
                pid = os.fork()
                if pid == 0:
                    assert monitor._thread is not parent_thread, "no new monitor thread"
                    spin(5.0)
        except TimeoutExpired:
            if pid == 0:
                os._exit(0)
            sys.exit("the parent timed out")
        except BaseException as exc:
            if pid == 0:
                print("child:", repr(exc), file=sys.stderr, flush=True)
                os._exit(2)
            raise
        if pid == 0:
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 99)
        """
    )
    assert done.returncode == 0, (done.returncode, done.stderr)


def test_monitor_shutdown_with_a_deadline_armed_in_a_sleeping_daemon_thread() -> None:
    start = time.monotonic()
    done = _run_script(
        """
        import threading, time
        from watchdog_timeout import deadline

        entered = threading.Event()

        def sleeper():
            with deadline(30):
                entered.set()
                time.sleep(60)

        threading.Thread(target=sleeper, daemon=True).start()
        assert entered.wait(10)
        """
    )
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert elapsed < 10.0


def test_monitor_shutdown_while_deadlines_keep_firing_in_a_daemon_thread() -> None:
    script = """
        import threading, time
        from watchdog_timeout import TimeoutExpired, deadline

        fired = threading.Event()

        def spin():
            while True:
                pass

        def busy():
            while True:
                try:
                    with deadline(0.01):
                        spin()
                except TimeoutExpired:
                    fired.set()

        threading.Thread(target=busy, daemon=True).start()
        assert fired.wait(10)
        time.sleep(DELAY)
        """
    failures = []
    for trial in range(6):
        done = _run_script(script.replace("DELAY", str(0.005 * trial)))
        if done.returncode != 0 or done.stderr:
            failures.append((trial, done.returncode, done.stderr))
    assert failures == []


def test_the_monitor_thread_exits_when_idle_and_starts_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def monitor_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "watchdog_timeout-monitor"]

    monkeypatch.setattr(_monitor, "IDLE", 0.05)
    with deadline(0.01, suppress=True):
        spin(0.05)
    monitor_threads()[0].join(5.0)  # its wait (begun with the old IDLE) runs out
    assert monitor_threads() == []
    with deadline(0.05, suppress=True) as scope:
        spin_forever()
    assert scope.expired


def test_a_deadline_in_an_atexit_handler_registered_first_fires() -> None:
    # atexit runs handlers in reverse: one registered before the import runs after
    # anything the library registered. The monitor must still be there.
    script = textwrap.dedent(
        """
        import atexit, time
        def at_exit():
            from watchdog_timeout import deadline
            with deadline(0.1, suppress=True) as scope:
                while True:
                    pass
            print("expired", scope.expired)
        atexit.register(at_exit)
        from watchdog_timeout import deadline
        with deadline(0.01, suppress=True):
            time.sleep(0.05)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=30
    )
    assert done.stdout.strip() == "expired True", done.stderr


@pytest.mark.parametrize("entry", ["deadline", "remaining"])
def test_a_leaked_hold_of_the_lock_is_released_where_the_thread_next_enters(entry: str) -> None:
    # 3.9/3.10: an exception from elsewhere that lands between the end of a `with lock:`
    # block and its __exit__ leaves the lock held (the injection sweeps found it), and
    # every deadline of the process then waits for this thread.
    _monitor.monitor.lock.acquire()  # the leaked hold
    if entry == "remaining":
        remaining()
    with deadline(0.05, suppress=True) as scope:
        spin(3.0)
    assert scope.expired
    assert not _monitor.monitor.lock._is_owned()  # type: ignore[attr-defined]


_MAIN_LEAKS_AND_WAITS = """
import sys, threading, time
from watchdog_timeout import TimeoutExpired, deadline, shield
from watchdog_timeout._monitor import monitor
{warm_up}
fired, entered = [], threading.Event()
def limited():
    try:
        with deadline(0.5):
            entered.set()
            while True:
                pass
    except TimeoutExpired:
        fired.append(True)
worker = threading.Thread(target=limited, daemon=True)
{order}
worker.join(10)  # the main thread never uses the library again
give_up = time.monotonic() + 10  # (if the worker fired first: the monitor's idle look)
while monitor.lock._is_owned() and time.monotonic() < give_up:
    time.sleep(0.01)
print("fired" if fired else "never fired", "held" if monitor.lock._is_owned() else "given back")
"""


@pytest.mark.parametrize(
    "case",
    [
        "armed-before-the-leak",
        pytest.param(
            "entered-after-the-leak",
            marks=pytest.mark.skipif(
                sys.version_info >= (3, 10), reason="only 3.9's with-exit can leak the lock"
            ),
        ),
    ],
)
def test_a_hold_the_main_thread_leaked_is_given_back_though_it_never_enters_again(
    case: str,
) -> None:
    # 3.9 (bpo-29988): a Ctrl-C between the end of one of our `with lock:` blocks and its
    # __exit__ leaves the main thread holding the monitor's lock (measured: 27 in 6,257
    # KeyboardInterrupts over `with deadline(5): pass`). A program that then stops its
    # workers and joins them never enters the library again: the monitor, and a thread
    # entering a deadline on 3.9, ask the main thread (a signal) to give the hold back.
    leak = "monitor.lock.acquire()  # the leaked hold: no frame of ours holds it"
    if case == "armed-before-the-leak":
        warm_up = "with deadline(1):\n    pass"
        order = f"worker.start()\nentered.wait(10)\n{leak}"
    else:  # the monitor thread never started: only the entering thread can ask
        warm_up = "with shield():\n    pass"
        order = f"{leak}\nworker.start()"
    done = run_python(_MAIN_LEAKS_AND_WAITS.format(warm_up=warm_up, order=order))
    assert done.stdout.strip() == "fired given back", done.stderr


def test_the_signal_handler_never_gives_back_a_hold_of_our_own_code() -> None:
    # The handler can run at any check point of our bookkeeping in the main thread,
    # under the lock: only a hold with no frame of ours on the stack was leaked.
    from watchdog_timeout._wakeup import _on_wakeup_signal  # noqa: PLC0415

    lock = _monitor.monitor.lock
    held_in_handler: list[bool] = []

    def bookkeeping_interrupted() -> None:  # runs under if_free, a frame of ours
        _on_wakeup_signal(0, sys._getframe())
        held_in_handler.append(_held(lock))

    assert _monitor.monitor.if_free(bookkeeping_interrupted)
    assert held_in_handler == [True]
    assert not _held(lock)

    lock.acquire()  # leaked: only the test's frames are on the stack
    try:
        _on_wakeup_signal(0, sys._getframe())
        assert not _held(lock)
    finally:
        _monitor.monitor.give_back()


_IMPORTS_BY_THREAD = """
import sys, threading
imports = []
def record(event, args):
    if event == "import":
        imports.append((threading.current_thread().name, args[0]))
sys.addaudithook(record)
from watchdog_timeout import TimeoutExpired, Watchdog, deadline, timeout
def busy():
    while True:
        pass
def limited():
    try:
        with deadline(0.05):
            busy()
    except TimeoutExpired:
        pass
worker = threading.Thread(target=limited)
worker.start()
worker.join()
limited()
try:
    timeout(0.05)(busy)()
except TimeoutExpired:
    pass
try:
    with Watchdog(0.05):
        busy()
except TimeoutExpired:
    pass
print(sorted({name for thread, name in imports if thread == "watchdog_timeout-monitor"}))
"""


def test_the_monitor_never_imports() -> None:
    # It imports with its lock held: an import waits for the interpreter's import
    # locks, and on 3.9 a Ctrl-C in the main thread's own import can leave one held for
    # good (seen in a SIGINT storm: the monitor waited on it for 12 minutes, and with it
    # every deadline of the process). What it needs, the user's thread imports first.
    done = run_python(_IMPORTS_BY_THREAD)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
