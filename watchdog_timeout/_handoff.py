"""Handing a call to a worker thread and waiting for its outcome: the caller's side.

Design notes
------------
Things that don't work:

- Entering a full scope for every call and arming the monitor: a call that ends in
  time paid for a heap entry, four takes of the monitor's lock and a scope's
  enter and exit (13 us pinned to one CPU, 3.2x a raw two-lock ping-pong).
- Waiting exactly until the limit plus ``grace`` for a worker still running
  Python: on a loaded machine the interrupt lands later than ``grace``, and the
  caller would abandon a worker that was about to stop.
- Firing a past-due limit in the caller's own thread (to spare the monitor's turn
  at the GIL, about 2.6 ms per timeout of a CPU-bound call): the scope's alarm
  then runs where a Ctrl-C can land in it; the injection sweeps found 66 points
  where the exception was swallowed or the interrupt never sent. Only the monitor
  runs alarms.

Solution: when nothing else limits the calling thread, the caller's own wait on
the call's lock is the timer (``_lazy``): a call that ends in time takes no lock
of the monitor's and arms nothing. Once the limit has passed (or an exception
such as Ctrl-C came meanwhile), the caller enters the call's scope as if entered
when the call began, and goes on as a caller with outer limits always does
(``_limited``): the monitor interrupts the worker, the caller waits until the
earliest deadline plus ``grace``, longer only while the worker still runs Python
(up to ``STOPPING_AT_MOST``), then abandons it. Two flags spare the worker the
lock while nothing was armed (``worker.Call``): the caller sets ``armed`` and then
reads ``finished``, the worker sets ``finished`` and then reads ``armed``, so at
least one of them sees the other's.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from ._errors import _Interrupt
from ._monitor import monitor
from ._registry import ThreadState, current_state, earliest_when, expiring_scope
from ._scope import Deadline
from ._seconds import clock
from ._sender import REINJECT, cpu_time, protect, runnable
from ._worker import Call, Worker, abandon, take_worker

__all__ = ("run_in_worker",)

#: After the grace: how long the caller waits for a worker still running Python, and
#: how often it looks whether it still runs (see ``_wait``).
STOPPING_AT_MOST = 1.0
STOPPING_LOOK = 0.02


@protect
def _give_up_at(state: ThreadState, grace: float) -> float | None:
    """When the caller stops waiting: the earliest deadline of its chain, plus grace."""
    earliest = earliest_when(state, interrupting_only=True)
    return None if earliest is None else earliest + grace


@protect
def _wait(call: Call, state: ThreadState, grace: float, worker: Worker) -> bool:
    """Wait for the worker to report; False if it is still running at give-up time.

    Give-up time is the earliest deadline plus ``grace``, later only while the
    worker is still running Python outside a shield (its CPU time grows: the
    interrupt is about to land, on a loaded machine later than ``grace``), up to
    ``STOPPING_AT_MOST``. A worker blocked in C uses no CPU and is not runnable,
    and one in a shield holds the interrupt back: the caller is answered at once.
    """
    done = call.done
    stopping_since: float | None = None
    cpu_before: float | None = None
    while True:
        give_up = _give_up_at(state, grace)
        if give_up is None:
            # No limit now; a reschedule or an outer scope may add one: look again.
            if done.acquire(timeout=1.0):
                return True
            continue
        now = clock()
        left = give_up - now
        if left <= 0:
            if expiring_scope(state) is None:
                # Not expiring yet (the monitor is late, or on_expire still runs): a
                # caller answered now would get an interrupt no scope converts.
                left = REINJECT
            else:
                native = worker.state.native_id if worker.state is not None else None
                cpu = cpu_time(native)
                if stopping_since is None:
                    stopping_since = now
                running = cpu is not None and cpu_before is not None and cpu > cpu_before + 0.001
                running = running or runnable(native)  # no CPU on a loaded machine: not blocked
                shielded = worker.state is not None and bool(worker.state.shields)
                if shielded or (cpu_before is not None and not running):
                    return done.acquire(blocking=False)
                if now - stopping_since >= STOPPING_AT_MOST:
                    return done.acquire(blocking=False)
                cpu_before = cpu
                left = STOPPING_LOOK
        if done.acquire(timeout=min(left, threading.TIMEOUT_MAX)):
            return True


@protect
def run_in_worker(
    function: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    seconds: float | None,
    grace: float,
    name: str,
    thread_name: str,
    on_expire: Callable[[], object] | None = None,
    exception: type[BaseException] | None = None,
) -> Any:
    """Call ``function(*args, **kwargs)`` in a worker thread, limited to ``seconds``.

    Returns what it returns and raises what it raises (with the worker's frames in
    the traceback); raises TimeoutExpired when the call's own deadline, or an
    outer one of this thread, expires first.
    """
    monitor.release_leaked()  # (an exception from elsewhere, on 3.9/3.10)
    caller = current_state()
    call = Call(function, args, kwargs, caller)
    worker = take_worker(thread_name)
    settings = (name, on_expire, exception)
    if seconds is not None:
        call.until = clock() + seconds
        if not caller.scopes and caller.parent is None:
            # Nothing else limits this thread: the caller's own wait is the timer.
            return _lazy(call, worker, seconds, grace, settings)
    call.armed = True
    scope = Deadline(seconds, label=name, on_expire=on_expire, exception=exception)
    with scope:
        return _limited(call, worker, scope, grace, handed=False)


#: What a call's scope is made with: its name, ``on_expire`` and ``exception``.
_Settings = tuple[str, Optional[Callable[[], object]], Optional[type[BaseException]]]


@protect
def _lazy(call: Call, worker: Worker, seconds: float, grace: float, settings: _Settings) -> Any:
    """The call's limit armed only once it has passed, or at an exception meanwhile.

    A call that ends in time takes no lock of the monitor's and enters no scope: the
    caller waits on the call's own lock until the limit. Past it, the caller arms
    the call's scope as if entered when the call began, and goes on as
    ``_limited`` does (``Call.armed`` and ``finished`` tell the worker whether
    its links need the lock).
    """
    interrupted: BaseException | None = None
    done = False
    try:
        worker.hand(call)
        done = call.done.acquire(timeout=seconds)
    except BaseException as exc:  # Ctrl-C (or another exception) while waiting
        interrupted = exc
    if done:
        return _outcome(call)
    call.armed = True
    if call.finished:  # it ended at the limit: its outcome is on its way
        while not call.reported:
            call.done.acquire(timeout=0.05)
        if interrupted is not None:
            raise interrupted
        return _outcome(call)
    name, on_expire, exception = settings
    scope = Deadline(seconds, label=name, on_expire=on_expire, exception=exception)
    assert call.until is not None
    scope._rarely().began = call.until - seconds
    with scope:
        return _limited(call, worker, scope, grace, handed=True, interrupted=interrupted)


@protect
def _limited(
    call: Call,
    worker: Worker,
    scope: Deadline,
    grace: float,
    *,
    handed: bool,
    interrupted: BaseException | None = None,
) -> Any:
    """Hand the call over (unless ``handed``) and wait for its outcome, inside its scope.

    ``interrupted``: an exception that came while the caller waited before the scope
    began (Ctrl-C): the worker is interrupted too, and it goes on.
    """
    caller = call.caller
    finished = False
    if interrupted is None:
        try:
            if not handed:
                worker.hand(call)
            finished = _wait(call, caller, grace, worker)
        except BaseException as exc:  # Ctrl-C (or another exception) while waiting
            interrupted = exc
    if interrupted is not None:
        scope._expire_now()  # interrupt the worker too
        try:
            finished = call.reported or call.done.acquire(timeout=grace)
        finally:
            if not finished:
                abandon(worker, call)
        raise interrupted
    if not finished and abandon(worker, call):
        raise _Interrupt(scope=expiring_scope(caller) or scope, stopped=False)
    return _outcome(call)


def _outcome(call: Call) -> Any:
    """Return what the call returned, or raise what it raised."""
    ok, value = call.outcome
    call.outcome = (False, None)
    if ok:
        return value
    try:
        raise value
    finally:
        del value
