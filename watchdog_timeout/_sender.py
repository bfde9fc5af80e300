"""The one guarded way this library raises an exception in another thread: look, then send.

Design notes
------------
Every exception the library sends into a thread (a deadline's interrupt, its
re-sends, ``StoppableThread.kill()``, ``Watchdog.start()``, ``async_raise()``)
goes through here, so that one set of rules decides where it may land.

Things that don't work:

- Sending at once. The exception lands at the target's next check point, which
  may be our own bookkeeping (a scope's ``__exit__``: its state is left half
  done), or a loop's back-edge that CPython's exception table misses
  (python/cpython#130279 on 3.13, #108214 on 3.11/3.12): the ``except`` or
  ``finally`` around the loop is skipped, in any frame: a user's
  ``try: ... finally: lock.release()`` too.
- Python code between the last look and the send: each call is a check point
  where this thread may lose the GIL and the target move on.
- Waiting for a safe landing point a fixed number of looks: the target may not
  have run at all in between (a loaded machine), or may be blocked in C where
  no look will ever find it elsewhere.
- Taking a target that used no CPU for a while as blocked in C: on a loaded
  machine a thread paused right after a call can get no CPU for 50 ms, and sent
  to then, it raised at the back-edge that follows (3.13: the user's ``finally``
  skipped: once in CI, and 5 trials in 2,250 beside a real-time hog on its CPU).

Solution: look at the target's stack (``locate``): DEFER while our bookkeeping
runs in it, EDGE while the next landing point escapes a handler, else DELIVER;
then look again, compare the top frame and its instruction, and call the C
function, with no Python call between the comparison and the send
(``send_unmoved``). While the target's landing points stay unsafe, ``Patience``
counts the target's own progress (its CPU time, from
``/proc/self/task/<tid>/schedstat``): after ``PATIENCE_CPU`` seconds of running
only through unsafe points (a loop whose only check point is such a back-edge)
it sends anyway, and a target that has slept for ``BLOCKED_AFTER`` seconds (no
CPU time, and never runnable at a look: ``/proc/self/task/<tid>/stat``) is
blocked in a C call, where the exception lands when the call returns.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from types import CodeType, FrameType
from typing import Any, Callable, TypeVar

from . import _async_raise
from ._async_raise import ThreadOrIdent, _check_exc_type, _check_target
from ._frames import (
    EDGE,
    INSIDE,
    Marker,
    Where,
    edge_escapes,
    edge_is_the_only_check_point,
    landing,
    position,
)
from ._monitor import Alarm, monitor

__all__ = (
    "DEFER",
    "DELIVER",
    "GONE",
    "PROTECTED",
    "REINJECT",
    "RETRY",
    "outside_again",
    "Patience",
    "async_raise",
    "locate",
    "protect",
    "send_unmoved",
    "send_when_safe",
)

DELIVER, DEFER, GONE = Where.DELIVER, Where.DEFER, Where.GONE

#: Seconds of the target's own CPU time spent only at unsafe landing points
#: before an exception is sent anyway.
PATIENCE_CPU = 0.25
#: The thread switch interval while a delivery waits for a safe landing point:
#: each look needs the GIL back from the busy target, so a shorter interval
#: gives more looks (the target pauses where it notices the request, and on
#: 3.13 a loop of one call pauses after the call nine times in ten).
HURRIED_SWITCH_INTERVAL = 0.0002
#: Seconds without any progress after which a target counts as blocked in C.
BLOCKED_AFTER = 0.05
#: Looks before giving up where the target's CPU time cannot be read.
PATIENCE_LOOKS = 20

#: Code objects of our bookkeeping: an interrupt is never sent while one is running.
#: Only leaf code: a frame of ours that calls user code (``_inline``, a worker's
#: call) must never hold delivery back.
PROTECTED: set[CodeType] = set()


_F = TypeVar("_F", bound=Callable[..., Any])

#: Level-triggered: how often an interrupt is sent again while its scope is open.
REINJECT = 0.05
#: Our own bookkeeping was running in the target, or it moved while we looked:
#: look again this soon.
RETRY = 0.001
#: The longest wait between two looks at a frame seen past its block (they start
#: at RETRY and double: see ``outside_again``).
OUTSIDE_AGAIN_MAX = 1.0


def protect(function: _F) -> _F:
    """Decorator: an interrupt is never sent while ``function``'s code runs (leaf bookkeeping)."""
    PROTECTED.add(function.__code__)
    return function


@protect
def outside_again(rare: Any) -> float:
    """When to look again at a frame seen past its block; counts the look in ``rare``.

    Such a frame is on its way into its ``__exit__`` (whose frame is not shown
    before it is complete: a thread the OS leaves unscheduled there stays so for
    many looks), or past an exit that an exception skipped. Nothing is sent to it,
    and no look retires its scope, not even the main thread's signal handler in the
    thread itself (3.9/3.10 pop the block before the exception on its way into
    ``__exit__`` is built, and the handler can run then): the exit itself ends it,
    or the frame's return, or the thread's next use of the library
    (``_registry.retire_left``).
    """
    looks: int = rare.outside + 1  # the scope's Rare: looks since it was last sent to
    rare.outside = looks
    return min(RETRY * 2.0 ** min(looks, 10), OUTSIDE_AGAIN_MAX)


@protect
def locate(
    top: FrameType,
    boundary: FrameType | None,
    marker: Marker,
    ours: bool,
    *,
    protected: bool = True,
    after_pause: bool = False,
) -> Where:
    """Where the thread whose innermost frame is ``top`` is, relative to a block.

    ``boundary`` is the frame that runs the block (``ours``: a frame of our own
    worker that calls the limited code), or None when the block is not known from
    frames. Returns DEFER while our bookkeeping runs above the boundary (unless
    ``protected`` is False); EDGE when the exception would land on a back-edge
    that escapes a handler; OUTSIDE when the boundary frame has left the block;
    GONE when it is not on the stack; else DELIVER. ``after_pause``: judge where
    an exception sent now would land (``_frames.landing``), rather than where the
    thread is (as a signal handler running in the thread does).
    """
    frame: FrameType | None = top
    while frame is not None:
        if frame is boundary:
            if frame is top and protected and (ours or frame.f_code in PROTECTED):
                return DEFER
            if after_pause:
                where = landing(top, boundary, marker, ours)
            elif _escapes_at(top, boundary):
                where = EDGE
            else:
                where = position(frame, marker)
            return DELIVER if where is INSIDE else where
        if protected and frame.f_code in PROTECTED:
            return DEFER
        frame = frame.f_back
    if boundary is None:
        if after_pause:
            return DELIVER if landing(top, None, marker, ours) is INSIDE else EDGE
        return EDGE if _escapes_at(top, None) else DELIVER
    return GONE


def _escapes_at(top: FrameType, boundary: FrameType | None) -> bool:
    # Raised right where ``top`` is (a signal handler's raise): a back-edge that
    # escapes its handler, in a frame above the boundary (whose own position()
    # says EDGE itself).
    return top is not boundary and edge_escapes(top.f_code, top.f_lasti)


def cpu_time(native_id: int | None) -> float | None:
    """Seconds of CPU time thread ``native_id`` of this process has used, or None."""
    if native_id is None:
        return None
    try:
        with open(f"/proc/self/task/{native_id}/schedstat", "rb") as stats:
            return int(stats.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def runnable(native_id: int | None) -> bool:
    """Whether thread ``native_id`` of this process runs or waits for a CPU now.

    A thread asleep in a blocking call is not; nor is one that waits for the GIL
    while another thread holds it. One that was woken to take the GIL and has not
    had a CPU since (a loaded machine) is. False where it cannot be read.
    """
    if native_id is None:
        return False
    try:
        with open(f"/proc/self/task/{native_id}/stat", "rb") as stat:
            line = stat.read()
    except OSError:
        return False
    return line[line.rfind(b")") + 2 : line.rfind(b")") + 3] == b"R"


#: How often the monitor looks whether a hurried delivery was dropped unfinished.
CALM_LOOK = 0.1

_hurry_lock = threading.Lock()
# The Patience objects waiting now, by id: weakly, so that one dropped while it
# waits (its scope ended) is found dead by the monitor (_Calm), never by a
# finalizer in a user's thread, where an exception from elsewhere would be lost.
_hurrying: dict[int, weakref.ref[Patience]] = {}
_interval_before = 0.0
_hurried = False  # the switch interval is ours now, not the program's


def _hurry(patience: Patience, on: bool) -> None:
    """Shorten the switch interval while any delivery waits; restore it after the last."""
    global _interval_before, _hurried
    key = id(patience)
    started = False
    with _hurry_lock:
        waiting = _hurrying.get(key)
        if on and (waiting is None or waiting() is not patience):
            if not _hurried:
                _interval_before = sys.getswitchinterval()
                sys.setswitchinterval(min(_interval_before, HURRIED_SWITCH_INTERVAL))
                _hurried = started = True
            _hurrying[key] = weakref.ref(patience)
        elif not on and waiting is not None and waiting() is patience:
            del _hurrying[key]
            if not _hurrying:
                _calm_down()
    if started:  # (after _hurry_lock: the monitor's lock is always taken first)
        lock = monitor.lock
        if lock._is_owned():  # type: ignore[attr-defined]
            monitor.schedule(time.monotonic() + CALM_LOOK, _calm)
        else:
            with lock:
                monitor.schedule(time.monotonic() + CALM_LOOK, _calm)


class _Calm(Alarm):
    """Restores the switch interval once every hurried delivery has ended or was dropped."""

    def alarm(self, now: float) -> None:
        with _hurry_lock:
            for key in [key for key, waiting in _hurrying.items() if waiting() is None]:
                del _hurrying[key]
            if _hurrying:
                monitor.schedule(now + CALM_LOOK, self)
            else:
                _calm_down()


def _calm_down() -> None:
    """Give the program its switch interval back (hold ``_hurry_lock``)."""
    global _hurried
    if _hurried:
        sys.setswitchinterval(_interval_before)
        _hurried = False


_calm = _Calm()


class Patience:
    """How long to wait for a safe landing point, counted in the target's own progress.

    While it waits, the switch interval is shortened (see HURRIED_SWITCH_INTERVAL);
    ``reset()`` restores it, or the monitor does once the object is dropped.
    """

    __slots__ = (
        "__weakref__",
        "_last_cpu",
        "_last_place",
        "_looks",
        "_spent",
        "_still_since",
        "native_id",
    )

    def __init__(self, native_id: int | None) -> None:
        self.native_id = native_id
        self._spent = 0.0
        self._looks = 0
        self._last_cpu: float | None = None
        self._last_place: tuple[int, int] | None = None
        self._still_since = 0.0

    def exhausted(self, top: FrameType) -> bool:
        """After an unsafe look at ``top``: whether to send anyway.

        True once the target has run ``PATIENCE_CPU`` seconds through unsafe points
        only, or has slept for ``BLOCKED_AFTER`` seconds, neither running nor
        runnable at any look (blocked in C: it then raises where the call
        returns). A target that waits for a CPU (a loaded machine) is not blocked:
        sent to then, a thread paused after a call raised at the back-edge after it.
        """
        if edge_is_the_only_check_point(top.f_code, top.f_lasti):
            return True  # no other point will come: waiting is futile
        _hurry(self, on=True)
        now = time.monotonic()
        place = (id(top), top.f_lasti)
        cpu = cpu_time(self.native_id)
        if cpu is None:
            self._looks += 1
            return self._looks > PATIENCE_LOOKS
        last_cpu = self._last_cpu
        if last_cpu is not None:
            self._spent += max(0.0, cpu - last_cpu)
        ran = last_cpu is not None and cpu - last_cpu > 1e-4
        if ran or place != self._last_place or runnable(self.native_id):
            self._still_since = now
        self._last_cpu, self._last_place = cpu, place
        if self._spent >= PATIENCE_CPU or now - self._still_since >= BLOCKED_AFTER:
            _hurry(self, on=False)
            return True
        return False

    def reset(self) -> None:
        """Start counting afresh (the target reached a safe point, or was sent to)."""
        self._spent = 0.0
        self._looks = 0
        self._last_cpu = None
        self._last_place = None
        _hurry(self, on=False)


def send_unmoved(
    ident: int, top: FrameType, lasti: int, exc_type: type[BaseException]
) -> int | None:
    """Send ``exc_type`` to thread ``ident`` if it is still where a look found it.

    Returns how many threads got it, or None if the target moved (the look is
    stale: this thread lost the GIL since). No check point lies between the
    comparison and the C call.

    Raises:
        RuntimeError: The interpreter cannot raise in another thread.
    """
    send = _async_raise.send_async_exc
    if send is None:
        raise RuntimeError(_async_raise._unsupported)
    if sys._current_frames().get(ident) is not top or top.f_lasti != lasti:
        return None
    return send(ident, exc_type)


def send_when_safe(
    ident: int,
    exc_type: type[BaseException],
    patience: Patience,
    *,
    boundary: FrameType | None = None,
    into_bookkeeping: bool = False,
) -> Where:
    """One guarded attempt: DELIVER if sent now, DEFER or EDGE to try again, GONE if no thread.

    ``boundary``: our worker's frame that runs the code, to land above it (an
    abandoned worker). ``into_bookkeeping``: our own code on the stack does not
    defer (for exceptions that are not ours to manage, once patience ran out).
    """
    top = sys._current_frames().get(ident)
    if top is None:
        return GONE
    lasti = top.f_lasti
    ours = boundary is not None
    where = locate(top, boundary, None, ours, protected=not into_bookkeeping, after_pause=True)
    if where is GONE:
        return DEFER  # the boundary left the stack: the call is over
    if where is EDGE and patience.exhausted(top):
        where = DELIVER
    if where is not DELIVER:
        return where
    found = send_unmoved(ident, top, lasti, exc_type)
    if found is None:
        return DEFER
    patience.reset()
    _report(ident, found)
    return DELIVER


def async_raise(thread_or_ident: ThreadOrIdent, exc_type: type[BaseException]) -> None:
    """Raise ``exc_type`` inside another running thread.

    The exception is raised the next time that thread runs Python bytecode. A
    thread blocked in C code (``time.sleep``, a socket read, a lock) raises it
    only when the C call returns; C code that never returns is never interrupted.
    It is never sent while this library's own bookkeeping runs in the thread.
    Where it would land on a loop's back-edge that skips the ``except``/``finally``
    around the loop (a CPython bug: python/cpython#130279 on 3.13, #108214 on
    3.11/3.12), this call waits for the thread to move on, a few milliseconds
    usually. It sends anyway when that back-edge is the loop's only check point
    (the loop could not be stopped otherwise), or after about 0.25 s of the
    target's own CPU time spent only at such points; the ``except``/``finally``
    around the loop in that function is then skipped.

    Examples:
        >>> async_raise(worker, SystemExit)  # doctest: +SKIP

    Args:
        thread_or_ident: The target, as a ``threading.Thread`` or its ``ident``.
        exc_type: An exception class (not an instance).

    Raises:
        TypeError: ``exc_type`` is not an exception class, or the target is neither
            a thread nor an ident.
        ValueError: The target is the current thread, has not started, has
            finished, or no thread has that ident.
        SystemError: The interpreter reported more than one thread with the ident;
            the exception was withdrawn.
        RuntimeError: The interpreter cannot raise in another thread.
    """
    checked_type = _check_exc_type(exc_type)
    ident = _check_target(thread_or_ident)
    _async_raise.ensure_loaded()
    if _async_raise.send_async_exc is None:
        raise RuntimeError(_async_raise._unsupported)
    if sys.implementation.name != "cpython":  # no frames to judge: send at once
        _report(ident, _async_raise.raise_in(ident, checked_type))
        return
    thread = threading._active.get(ident)  # type: ignore[attr-defined]
    patience = Patience(getattr(thread, "native_id", None))
    give_up = time.monotonic() + 1.0  # bounded even if the target sits in our code
    while True:
        late = time.monotonic() >= give_up
        where = send_when_safe(ident, checked_type, patience, into_bookkeeping=late)
        if where is DELIVER:
            return
        if where is GONE:
            raise ValueError(f"no running thread has the ident {ident}")
        time.sleep(0.0005)  # let the target run to another check point


def _report(ident: int, found: int) -> None:
    if found == 0:
        raise ValueError(f"no running thread has the ident {ident}")
    if found > 1:
        _async_raise.clear_async_exc(ident)
        raise SystemError(
            f"PyThreadState_SetAsyncExc found {found} threads with the ident {ident}; "
            "the exception was withdrawn"
        )
