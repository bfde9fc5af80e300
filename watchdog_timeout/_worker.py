"""The worker threads of ``isolation="thread"``: running a call, reporting, abandoning.

Design notes
------------
Things that don't work:

- A thread per call (func-timeout): 70-130 us to start and join, and a thread
  left behind for every call that could not be stopped.
- A separate timer per call: the caller's own deadlines (an outer ``deadline()``,
  an outer ``@timeout``) would not reach the worker, which would then be
  abandoned instead of stopped.
- Reusing every worker: one that could not be stopped is still running the old
  call, and its pending interrupt would hit the next one.

Solution: the caller (``_handoff``) limits the call in its own thread and
*delegates* to the worker: while the call runs, the caller's thread state points
to the worker's (``delegate``) and the worker's to the caller's (``parent``).
When any scope of the caller's chain expires, the monitor follows the delegates
to the thread that really runs the code and interrupts it there (never in our
own frames: the worker's calling frame is the ``boundary``). The interrupt is
tagged with the caller's scope, so it travels back as the call's outcome and is
converted by that scope in the caller, outer scopes included. The caller waits
on a C lock until the worker reports, or until the earliest expired deadline
plus ``grace``: then it gives up, marks the worker abandoned (never reused) and
reports TimeoutExpired with ``stopped=False``. An abandoned worker keeps
receiving the interrupt every ``REINJECT`` seconds until its call ends, then
logs the late outcome and exits.

Idle workers wait for the next call on a C lock (no Condition: its Python-level
internals break when interrupted), and exit after ``IDLE_TIMEOUT`` seconds.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
from types import FrameType
from typing import Any, Callable

from ._errors import _Interrupt
from ._monitor import Alarm, logger, monitor
from ._registry import (
    ThreadState,
    current_state,
    send_guarded,
    withdraw_pending,
)
from ._seconds import clock
from ._sender import DELIVER, REINJECT, RETRY, Patience, protect

__all__ = ("IDLE_TIMEOUT", "Call", "Worker", "abandon", "abandoned_workers", "take_worker")

#: Seconds an idle worker waits for another call before it exits.
IDLE_TIMEOUT = 2.0


class Call:
    """One call handed to a worker, and its outcome."""

    __slots__ = (
        "args",
        "armed",
        "caller",
        "context",
        "done",
        "finished",
        "function",
        "kwargs",
        "outcome",
        "reported",
        "until",
    )

    def __init__(
        self,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        caller: ThreadState,
    ) -> None:
        self.function = function
        self.args = args
        self.kwargs = kwargs
        self.context = contextvars.copy_context()
        self.caller = caller
        self.done = threading.Lock()
        self.done.acquire()
        #: When the call is to end (None: no limit of its own).
        self.until: float | None = None
        #: The handshake that spares a call that ends in time every lock (see
        #: ``_handoff``): the caller sets ``armed`` before it arms the call's limit and
        #: then reads ``finished``; the worker sets ``finished`` when the call is over
        #: and then reads ``armed``. At least one of them sees the other's flag.
        self.armed = False
        self.finished = False
        #: The outcome is in and ``done`` released (set under ``_pool_lock``): for a
        #: caller that may have spent the release already (an exception landed
        #: right after its acquire returned).
        self.reported = False
        #: (True, result) or (False, exception): one attribute, stored in one step,
        #: so that an interrupt landing in between cannot mismatch the two.
        self.outcome: tuple[bool, Any] = (False, None)


class Worker:
    """A daemon thread that runs calls handed to it, one at a time."""

    __slots__ = ("_go", "abandoned", "call", "state", "thread")

    def __init__(self, name: str) -> None:
        self._go = threading.Lock()
        self._go.acquire()
        self.call: Call | None = None
        self.abandoned = False
        self.state: ThreadState | None = None
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)

    @protect
    def hand(self, call: Call) -> None:
        """Give the worker a call (it is idle, or not started yet)."""
        self.call = call
        if self.thread.ident is None:
            self.thread.start()
        self._go.release()

    @protect
    def _serve(self) -> None:
        self.state = current_state()
        while True:
            if not self._go.acquire(timeout=IDLE_TIMEOUT):
                if _retire(self):
                    return
                self._go.acquire()  # a call arrived just as we timed out
            call = self.call
            if call is None:
                return
            try:
                self._run(call)
            except BaseException as exc:  # an interrupt that landed in our own frames
                call.outcome = (False, exc)
                self._unlink(call)
            self.call = None
            with _pool_lock:  # reporting and being abandoned exclude each other
                if not self.abandoned:
                    call.reported = True
                    call.done.release()
                    _idle.append(self)
            if self.abandoned:
                _log_late(self.thread.name, *call.outcome)
                return  # never reused
            del call

    @protect
    def _run(self, call: Call) -> None:
        # One assignment for both: an interrupt landing between two (PyPy checks for
        # one anywhere) would pair ok=True with the interrupt.
        outcome: tuple[bool, object]
        try:
            if self._link(call, sys._getframe()):
                outcome = (True, call.context.run(call.function, *call.args, **call.kwargs))
            else:  # abandoned before it began: its caller has had its answer
                outcome = (False, _Interrupt(scope=None, stopped=False))
        except BaseException as exc:
            outcome = (False, exc)
        # An interrupt still pending for the call can land at any check point until
        # the unlink withdraws it, which it then does; the unlink is idempotent.
        while True:
            try:
                self._unlink(call)
                break
            except _Interrupt:
                pass
        call.outcome = outcome
        del outcome

    @protect
    def _link(self, call: Call, boundary: FrameType) -> bool:
        """Make the caller's interrupts reach this thread; False if already abandoned.

        Without the lock while nothing is armed: the monitor reads the links under
        its lock, each written in one step, boundary first, delegate last.
        """
        state = self.state
        assert state is not None
        state.boundary = boundary
        state.call_until = call.until
        state.parent = call.caller
        call.caller.delegate = state
        if not call.armed:
            return True
        with monitor.lock:
            if self.abandoned:  # (set before abandon takes this lock to unlink)
                self._unlink_locked(call)
                return False
        return True

    @protect
    def _unlink(self, call: Call) -> None:
        state = self.state
        assert state is not None
        call.finished = True
        if call.armed or state.sent or state.scopes:
            with monitor.lock:
                self._unlink_locked(call)
            return
        # Nothing armed, sent or left open: no other thread looks at the links.
        if call.caller.delegate is state:
            call.caller.delegate = None
        state.parent = None
        state.call_until = None
        state.boundary = None

    @protect
    def _unlink_locked(self, call: Call) -> None:
        state = self.state
        assert state is not None
        # First: withdraw what was sent for this call.
        try:  # noqa: SIM105 (suppress() is Python code an interrupt can land in)
            withdraw_pending(state)
        except _Interrupt:
            pass  # it landed an instant before: the same outcome
        if call.caller.delegate is state:
            call.caller.delegate = None
        state.parent = None
        state.call_until = None
        state.boundary = None
        leftovers = state.scopes[:]  # scopes the call's code left open
        for scope in leftovers:
            scope._forget(state)


# --- the pool of idle workers ---------------------------------------------------

_idle: list[Worker] = []
_abandoned: list[Worker] = []
_pool_lock = threading.Lock()


@protect
def take_worker(name: str) -> Worker:
    with _pool_lock:
        worker = _idle.pop() if _idle else None
    if worker is None:
        return Worker(name)
    if worker.thread.name != name:
        worker.thread.name = name
    return worker


@protect
def _retire(worker: Worker) -> bool:
    with _pool_lock:
        if worker in _idle:
            _idle.remove(worker)
            return True
    return False


def _after_fork_in_child() -> None:
    # The workers' threads do not exist in the child: start afresh.
    global _pool_lock
    _pool_lock = threading.Lock()
    _idle.clear()
    _abandoned.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def abandoned_workers() -> tuple[threading.Thread, ...]:
    """The worker threads that could not be stopped and are still running.

    Each is still running a call whose caller got TimeoutExpired with
    ``stopped=False``; it receives the interrupt again every 50 ms and ends as
    soon as it runs Python code. For tests and for operators.
    """
    with _pool_lock:
        _abandoned[:] = [w for w in _abandoned if w.thread.is_alive()]
        return tuple(w.thread for w in _abandoned)


def _log_late(name: str, ok: bool, value: object) -> None:
    if ok:
        logger.debug("watchdog_timeout: %s returned after it was abandoned: %r", name, value)
    elif isinstance(value, _Interrupt):
        logger.debug("watchdog_timeout: %s stopped after it was abandoned", name)
    else:
        logger.warning(
            "watchdog_timeout: %s raised after it was abandoned",
            name,
            exc_info=(type(value), value, getattr(value, "__traceback__", None)),  # type: ignore[arg-type]
        )


class _Reinjector(Alarm):
    """Keeps interrupting an abandoned worker until its call ends."""

    __slots__ = ("boundary", "patience", "worker")

    def __init__(self, worker: Worker, boundary: FrameType) -> None:
        self.worker = worker
        self.boundary = boundary
        self.patience = Patience(worker.state.native_id if worker.state else None)

    def alarm(self, now: float) -> None:
        worker = self.worker
        state = worker.state
        if worker.call is None or state is None:
            return  # the call has ended
        where = send_guarded(state, _Interrupt, self.patience, boundary=self.boundary)
        if where is DELIVER:
            state.sent = True
        monitor.schedule(now + (REINJECT if where is DELIVER else RETRY), self)


@protect
def abandon(worker: Worker, call: Call) -> bool:
    """Leave the worker running; False if it reported meanwhile after all."""
    with _pool_lock:
        if call.reported or call.done.acquire(blocking=False):
            return False
        worker.abandoned = True
        _abandoned.append(worker)
    state = worker.state
    with monitor.lock:
        if call.caller.delegate is state:
            call.caller.delegate = None
        if state is not None and state.boundary is not None:
            monitor.schedule(clock() + REINJECT, _Reinjector(worker, state.boundary))
    return True
