"""The monitor: one thread that waits for every armed deadline in the process.

Design notes
------------
Things that don't work:

- A thread (or ``threading.Timer``) per deadline, as stopit does: ~100 us and a
  thread per ``with`` block, and thousands of threads for thousands of scopes.
- Waking the monitor with a ``Condition`` or an ``Event``: their internals are
  Python code, and an asynchronous exception landing inside them leaves their
  internal locks held (measured: thousands in 20,000 deliveries). The threads that
  arm deadlines are the very threads being interrupted.
- Removing a disarmed deadline from the heap: O(n), for the common case of a
  block that finishes in time.
- A "wake-up pending" flag beside the wake-up lock, set before the release: on
  3.9 an exception from elsewhere between the two left it set, and every later
  deadline of the process waited for the monitor's own timeout (2 s when idle).
- Compacting the heap in the thread that disarms an entry: an exception from
  elsewhere between the new list and its ``heapify`` left a list that was not a
  heap, and the monitor slept past due entries.

Solution: one lazily started daemon thread (``watchdog_timeout-monitor``) and a
heap of ``[when, target]`` entries under one C lock. The threads being limited
(and interrupted) change shared state only in single C steps: arming is a
heappush, disarming replaces ``target`` with a sentinel (lazy deletion). Whatever
rewrites the heap runs on the monitor, which nothing interrupts: it drops dead
entries from the top, and compacts the heap when more than half of it is dead.
Entries are two-item lists, to keep 10,000 armed scopes under 300 bytes each:
equal times fall back to comparing targets, which ``Alarm`` orders by identity.
The monitor sleeps on a second C lock used as a binary semaphore, released (one C
call, no flag) when a new entry becomes the earliest or the heap needs compacting.

Nothing runs an import on the monitor: an import waits for the interpreter's
import locks, with ours held. What the alarms need (``ctypes``, ``dis``) is imported
by the user's thread that first uses the library (``_registry.current_state``).

The monitor calls ``target.alarm(now)`` with the lock held, so that a target can
check its state and act in one step with respect to threads that take the same
lock. What ``alarm`` returns (user callbacks: ``on_expire``, reports) and every
log record run each in a short-lived thread of its own (``watchdog_timeout-callback``),
never on the monitor: an ``on_expire`` that sleeps, or calls a limited function,
or a slow logging handler, would delay every other limit in the process.

No user code runs under the lock, but on 3.9 a Ctrl-C can leave it held
(bpo-29988: see ``release_leaked``). The thread that leaked it releases it where
it next enters the library; for a main thread that never does (it stops its
workers and joins them), whoever waits for the lock longer than ``HELD_TOO_LONG``
(the monitor; on 3.9 also a thread entering a scope) sends the main thread the
wake-up signal, whose handler gives back a hold with no frame of ours on its stack.

The thread exits after ``IDLE`` seconds with nothing armed, and starts again on
demand. It is not stopped at interpreter exit: ``atexit`` handlers registered
before this module may use deadlines too (it is a daemon thread). After
``os.fork()`` the child gets fresh locks and a new monitor thread, keeping only
the entries of the thread that forked (the only one that exists in the child).
"""

from __future__ import annotations

import heapq
import math
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    import logging

from ._seconds import clock as _default_clock

__all__ = ("Alarm", "Entry", "Monitor", "logger", "monitor")


class _Logger:
    """The ``watchdog_timeout`` logger, imported on first use (logging costs an import)."""

    def __getattr__(self, name: str) -> Any:
        import logging  # noqa: PLC0415 (only when something is logged)

        return getattr(logging.getLogger("watchdog_timeout"), name)


#: The ``watchdog_timeout`` logger.
logger: logging.Logger = _Logger()  # type: ignore[assignment]

#: ``[when, target]``; ``target`` is ``DEAD`` once disarmed or fired. A list and not
#: an object, so that heapq compares entries in C.
Entry = list[Any]

_WHEN, _TARGET = 0, 1
_COMPACT_MIN = 64
#: Seconds the monitor thread waits with nothing armed before it exits.
IDLE = 2.0
#: How long a wait for the lock lasts before the main thread is asked to give back
#: a hold it may have leaked (``release_leaked``); asked again after each such wait.
HELD_TOO_LONG = 0.1
#: 3.9 can leave a ``with lock:`` block without releasing the lock (bpo-29988).
_WITH_MAY_LEAK = sys.version_info < (3, 10)


def _nobody_to_ask(owner: int | None) -> None:
    pass


def _owner_of(lock: Any) -> int | None:
    # The ident of the thread that holds ``lock`` (an RLock), from its repr: "<locked
    # _thread.RLock object owner=140... count=1 at 0x...>". For a lock that stays busy.
    digits = repr(lock).partition(" owner=")[2].partition(" ")[0]
    return int(digits) if digits.isdigit() and digits != "0" else None


class Alarm:
    """Base of what the monitor keeps in its heap: orderable, for equal times."""

    __slots__ = ()

    def __lt__(self, other: object) -> bool:
        return id(self) < id(other)


#: What stands in a disarmed entry.
DEAD = Alarm()


class AlarmTarget(Protocol):
    """What the monitor calls when an entry's time comes."""

    def alarm(self, now: float) -> Callable[[], None] | None:
        """Act on the alarm, with the monitor's lock held; return a follow-up to run without it."""


class Monitor:
    """A heap of deadlines and the one thread that waits for them."""

    def __init__(
        self, clock: Callable[[], float] = _default_clock, *, start_thread: bool = True
    ) -> None:
        self.clock = clock
        self._start_thread = start_thread
        #: Called with the ident of the thread that holds the lock, while it stays
        #: busy: asks the main thread to give back a hold it leaked, if that is the
        #: case (``_wakeup`` sets it: a signal whose handler runs in that thread).
        self.ask_main_to_give_back: Callable[[int | None], None] = _nobody_to_ask
        self._reset()

    def _reset(self) -> None:
        #: The lock that owners of entries share with the monitor. Re-entrant only so
        #: that ``if_free`` can tell whether this thread holds it: never re-entered.
        self.lock = threading.RLock()
        self._heap: list[Entry] = []
        self._dead = 0
        self._next_wake = math.inf
        #: A binary semaphore: released to wake the monitor, taken by its wait.
        self._wake = threading.Lock()
        self._wake.acquire()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def if_free(self, action: Callable[[], object], timeout: float = 0.0) -> bool:
        """Run ``action`` under the lock unless this thread holds it or it stays busy.

        For code that runs where our own bookkeeping may hold the lock in this very
        thread (a signal handler, a finalizer, the delivery hook): never waits for
        itself, waits at most ``timeout`` for others. The lock is released even if
        an exception lands right after it was taken (``acquire(); try:`` would leak
        it). Returns whether ``action`` ran.
        """
        lock = self.lock
        if lock._is_owned():  # type: ignore[attr-defined]
            return False
        try:
            if not lock.acquire(True, timeout) if timeout > 0 else not lock.acquire(False):
                return False
            action()
            return True
        finally:
            if lock._is_owned():  # type: ignore[attr-defined]
                lock.release()

    def release_leaked(self) -> None:
        """Release the lock if this thread holds it: call where user code enters the library.

        User code never runs under the lock, so a hold found there was leaked: on
        3.9 an exception from elsewhere (Ctrl-C) that lands between the end of a
        ``with lock:`` block and the call of its ``__exit__`` skips the release (the
        interpreter pops the block first and checks for exceptions before the call;
        bpo-29988, fixed in 3.10: measured, 45 leaks in 2,805 exceptions sent into a
        ``with lock: pass`` loop on 3.9, none on 3.10 and 3.11), and every deadline of
        the process would then wait for this thread. One C call when nothing leaked.
        On 3.9, a lock busy here may have been leaked by the main thread (Ctrl-C), which
        may never use the library again: while it stays busy, the main thread is asked
        to give it back (``ask_main_to_give_back``), as the monitor does.
        """
        lock = self.lock
        while lock._is_owned():  # type: ignore[attr-defined]  # (give_back, inline: hot path)
            lock.release()
        if _WITH_MAY_LEAK:  # (a free lock: _take() returns at once)
            self._take()
            lock.release()

    def give_back(self) -> None:
        """Release every hold of the lock by this thread (a hold known to be leaked)."""
        lock = self.lock
        while lock._is_owned():  # type: ignore[attr-defined]
            lock.release()

    def _take(self) -> None:
        # Where nothing interrupts the wait, or where an exception after it is
        # repaired as a leak: the monitor's thread, release_leaked().
        lock = self.lock
        while not lock.acquire(True, HELD_TOO_LONG):
            self.ask_main_to_give_back(_owner_of(lock))

    # --- called with self.lock held ---------------------------------------

    def schedule(self, when: float, target: AlarmTarget) -> Entry:
        """Arm ``target`` at the absolute time ``when``; O(log n). Hold ``lock``."""
        entry = [when, target]
        if when < self._next_wake:
            # Woken first: the monitor then waits for our lock, so it sees the entry
            # whichever statement an exception from elsewhere cuts this short at.
            self._wake_up()
        heapq.heappush(self._heap, entry)
        self._next_wake = min(self._next_wake, when)
        if self._thread is None and self._start_thread and not self._stopping:
            self._start()  # whatever _next_wake says: a start cut short left it stale
        return entry

    def cancel(self, entry: Entry) -> None:
        """Disarm ``entry``; O(1). Hold ``lock``."""
        if entry[_TARGET] is not DEAD:
            entry[_TARGET] = DEAD
            self._dead += 1
            if self._dead > _COMPACT_MIN and self._dead * 2 > len(self._heap):
                self._wake_up()  # to compact the heap: the monitor's work

    def _wake_up(self) -> None:
        # Hold ``lock``. No flag beside the semaphore: a wake-up that an exception
        # cuts short leaves nothing that would hold back the next one. Released only
        # if none is pending: the callers hold our lock, and the monitor only ever
        # takes a wake-up, so it stays locked between the look and the release. (A
        # release that raised when one was pending, and was caught, showed up in the
        # context chains of unrelated exceptions: twice in loaded local CI runs.)
        wake = self._wake
        if self._thread is not None and wake.locked():
            wake.release()

    def pop_due(self, now: float) -> list[AlarmTarget]:
        """Remove and return the targets due at ``now``, earliest first. Hold ``lock``."""
        heap = self._heap
        due = []
        while heap and heap[0][_WHEN] <= now:
            entry = heapq.heappop(heap)
            target = entry[_TARGET]
            if target is DEAD:
                self._dead -= 1
            else:
                entry[_TARGET] = DEAD
                due.append(target)
        return due

    def next_when(self) -> float:
        """The time of the earliest armed entry, or ``inf``. Hold ``lock``.

        Compacts the heap when more than half of it is dead, and drops dead entries
        from its top: the monitor does all the rewriting of the heap. The threads
        that arm and disarm entries only push one and mark one dead (each a single
        step): an exception from elsewhere that cut a compaction short in one of them
        once left a list that was no longer a heap, and due entries went unseen.
        """
        heap = self._heap
        if self._dead > _COMPACT_MIN and self._dead * 2 > len(heap):
            heap = [entry for entry in heap if entry[_TARGET] is not DEAD]
            heapq.heapify(heap)
            self._heap = heap
            self._dead = 0
        while heap and heap[0][_TARGET] is DEAD:
            heapq.heappop(heap)
            self._dead -= 1
        if not heap:
            self._dead = 0  # exact again, even after a count cut short in cancel()
        return heap[0][_WHEN] if heap else math.inf

    def __len__(self) -> int:
        """The number of armed entries. Hold ``lock``."""
        return len(self._heap) - self._dead

    # --- the thread --------------------------------------------------------

    def _start(self) -> None:
        thread = threading.Thread(target=self._run, name="watchdog_timeout-monitor", daemon=True)
        try:
            self._thread = thread
            thread.start()
        except BaseException:
            # An exception from elsewhere (Ctrl-C) inside start(): the thread may never
            # run, and while one is recorded none is started again. Forget it: the next
            # schedule() starts another (if this one did start, it exits once idle).
            if self._thread is thread:
                self._thread = None
            raise

    def run_due(self) -> float:
        """Fire what is due now; return when to look again (``inf``: when woken)."""
        follow_ups: list[Callable[[], None]] = []
        self._take()  # (nothing interrupts the monitor: no exception lands before the try)
        try:
            now = self.clock()
            for target in self.pop_due(now):
                try:
                    follow_up = target.alarm(now)
                except BaseException as exc:  # logged off the monitor's path
                    follow_ups.append(_logging(exc))
                else:
                    if follow_up is not None:
                        follow_ups.append(follow_up)
            self._next_wake = self.next_when()
            next_wake = self._next_wake
        finally:
            self.lock.release()
        if follow_ups:
            self.call_soon(follow_ups)
        return next_wake

    def call_soon(self, callbacks: list[Callable[[], None]]) -> None:
        """Run each of ``callbacks`` in a thread of its own, never on the monitor.

        Each in its own: one ``on_expire`` that sleeps must not hold back another
        scope's, due in the same pass.
        """
        for callback in callbacks:
            if self._start_thread:
                threading.Thread(
                    target=_run_callback,
                    args=(callback,),
                    name="watchdog_timeout-callback",
                    daemon=True,
                ).start()
            else:  # a test monitor without threads
                _run_callback(callback)

    def _run(self) -> None:
        while not self._stopping:
            try:
                if not self._wait(self.run_due()):
                    return
            except BaseException:
                # Interpreter shutdown tears modules down under a daemon thread.
                if self._stopping or sys.is_finalizing():
                    return
                logger.exception("watchdog_timeout: the monitor caught an exception")

    def _wait(self, when: float) -> bool:
        """Sleep until ``when`` or a wake-up; False when the thread is to exit (idle)."""
        if when == math.inf:
            if not self._wake.acquire(timeout=IDLE):
                self._take()
                try:
                    if not self._heap:
                        if self._thread is threading.current_thread():
                            self._thread = None  # schedule() starts another
                        return False
                finally:
                    self.lock.release()
        else:
            delay = when - self.clock()
            if delay <= 0:
                time.sleep(0)  # due now: let the other threads run first (a look again)
            else:
                self._wake.acquire(timeout=min(delay, threading.TIMEOUT_MAX))
        return True

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread (at exit); armed deadlines stop firing."""
        with self.lock:
            self._stopping = True
            thread = self._thread
            self._wake_up()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _after_fork_in_child(self) -> None:
        keep_ident = threading.get_ident()
        survivors = [
            entry
            for entry in self._heap
            if entry[_TARGET] is not DEAD
            and getattr(entry[_TARGET], "owner_ident", None) == keep_ident
        ]
        self._reset()
        heapq.heapify(survivors)
        self._heap = survivors
        if survivors and self._start_thread:
            self._start()


def _logging(exc: BaseException) -> Callable[[], None]:
    def log() -> None:
        logger.error(
            "watchdog_timeout: an alarm failed", exc_info=(type(exc), exc, exc.__traceback__)
        )

    return log


def _run_callback(callback: Callable[[], None]) -> None:
    try:
        callback()
    except BaseException:
        logger.exception("watchdog_timeout: an on_expire callback raised")


#: The process-wide monitor.
monitor = Monitor()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=monitor._after_fork_in_child)
