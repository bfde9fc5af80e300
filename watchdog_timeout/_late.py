"""Interrupts that a finalizer swallowed: asked for again, never reported.

Design notes
------------
An interrupt can land in a ``__del__`` or a weakref callback run by a deallocation
inside the block; the interpreter swallows it there and reports it to
``sys.unraisablehook`` ("Exception ignored in ...").

Things that don't work:

- Waiting for the level-triggered re-send: the report is printed every time
  (measured: 124-167 reports per 100 timeouts), and a late ``TimeoutExpired``
  (``Deadline._exit_late``: its scope is finished) is never sent again.
- Sending it again from the hook: it runs inside the finalizer, where the new
  interrupt would land and be swallowed once more.

Solution: a filter around ``sys.unraisablehook`` (installed when the first
interrupt is sent) drops those reports and asks for the interrupt again at once;
a late ``TimeoutExpired`` is stored on the thread and raised again by the monitor
at the thread's next check point (``_LateResender``, through the delivery hook),
or by the scope's exit if that comes first.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from ._errors import _Interrupt, _LateTimeoutExpired
from ._monitor import Alarm, monitor
from ._registry import ThreadState, existing_state, resend_expiring, send_guarded
from ._seconds import clock
from ._sender import DELIVER, REINJECT, Patience, protect

__all__ = ("RESENT", "filter_unraisable")

#: Exceptions sent again and again until they stop their thread (besides
#: _Interrupt): one a finalizer swallowed is dropped quietly.
RESENT: set[type[BaseException]] = set()


class _UnraisableFilter:
    """A ``sys.unraisablehook`` that drops interrupts swallowed by finalizers.

    Every other report goes to the previous hook.
    """

    __slots__ = ("previous",)

    def __init__(self, previous: Callable[[Any], object]) -> None:
        self.previous = previous

    @protect
    def __call__(self, unraisable: Any) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, _Interrupt):
            _send_again(exc)
        elif type(exc) not in RESENT:
            self.previous(unraisable)


def filter_unraisable() -> None:
    """Put our filter around ``sys.unraisablehook``, unless it is already there."""
    if not isinstance(sys.unraisablehook, _UnraisableFilter):
        sys.unraisablehook = _UnraisableFilter(sys.unraisablehook)


@protect
def _send_again(exc: _Interrupt) -> None:
    """Deliver again, in this thread, an interrupt that a finalizer swallowed."""
    state = existing_state()
    if state is None:
        return
    if not isinstance(exc, _LateTimeoutExpired):
        # Its scope is still open and sends it again after REINJECT anyway: ask for
        # it now, unless the lock is taken (our bookkeeping, in this very thread).
        monitor.if_free(lambda: resend_expiring(state))
        return
    # Its scope is finished and sends nothing. The scope's exit raises it if that
    # comes first; otherwise the monitor raises it at the thread's next check point.
    state.late = exc
    # A resender already sending stops once state.late is spent: two are harmless.
    monitor.if_free(lambda: monitor.schedule(clock(), _LateResender(state)), timeout=0.1)


class _LateResender(Alarm):
    """Sends an interrupt to a thread until its pending late TimeoutExpired is raised."""

    __slots__ = ("patience", "state")

    def __init__(self, state: ThreadState) -> None:
        self.state = state
        self.patience = Patience(state.native_id)

    @property
    def owner_ident(self) -> int:
        """The thread it sends to (after a fork, only the forking thread's entries stay)."""
        return self.state.ident

    def alarm(self, now: float) -> None:
        state = self.state
        if state.late is None or not state.thread.is_alive():
            return  # raised, or handed to the scope's exit
        if send_guarded(state, _Interrupt, self.patience) is DELIVER:
            state.sent = True  # the delivery hook swaps in state.late
        monitor.schedule(now + REINJECT, self)
