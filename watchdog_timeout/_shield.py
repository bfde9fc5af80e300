"""``shield()``: hold interrupts back while a critical section runs.

Design notes
------------
An asynchronous exception can land between any two bytecodes, and code written
in Python that is not ready for it is left half-done: measured, it leaves the
internal locks of ``threading.Condition``, ``Semaphore``, ``Event`` and
``queue.Queue`` held in thousands of 20,000 deliveries, and the next thread that
uses the object deadlocks.

Things that don't work:

- Catching the interrupt inside the critical section and raising it again
  later: it can land in the ``except`` clause too, and the section is already
  broken where it landed.
- A flag that the monitor checks, without withdrawing what was already sent: an
  interrupt sent an instant before the flag is set is raised inside the section.

Solution: entering takes the monitor's lock, withdraws any interrupt still
pending on the thread, and counts the shield in the thread's state; while the
count is above zero no interrupt of an outer scope is sent to the thread (the monitor, the
main-thread signal, ``StoppableThread.kill()`` and abandoned workers all
check it). Leaving decrements the count and, at zero, raises the interrupt of
the outermost scope that expired meanwhile, itself: it lands right after the
section, and inside that scope's block (a scope that expired is still open, so
its block encloses the shield).

A shield holds back only the scopes entered before it (trio's rule): a scope
opened inside the shield is its own critical section's limit and fires as usual.
A shield whose ``__exit__`` never ran (an exception from elsewhere landed on its
first instruction) is recognised by its frame having left its block, and
retired; a scope's exit also retires the shields entered inside it.
"""

from __future__ import annotations

import sys
from types import FrameType, TracebackType
from typing import final

from ._errors import _Interrupt
from ._frames import Marker, marker_at_enter, with_frame
from ._monitor import monitor
from ._registry import (
    ThreadState,
    current_state,
    due_here,
    expiring_scope,
    held_back,
    resend_expiring,
    withdraw_pending,
)
from ._sender import protect

__all__ = ("Shield", "shield")


@final
class Shield:
    """A critical section that interrupts wait for; made by `shield`."""

    __slots__ = ("_depth", "_lasti", "_marker", "_owner", "_state")

    def __init__(self) -> None:
        self._state: ThreadState | None = None
        #: How many scopes the thread had open when the shield began: it holds back
        #: those, not the ones opened inside it.
        self._depth = 0
        #: The frame of its ``with`` statement, to recognise a shield whose exit
        #: never ran (see ``_delivery.live_shield``).
        self._owner: FrameType | None = None
        self._lasti = -1
        self._marker: Marker = None

    @protect
    def __enter__(self) -> Shield:
        if self._state is not None:
            raise RuntimeError("a shield cannot be entered twice")
        monitor.release_leaked()  # (an exception from elsewhere, on 3.9)
        owner = with_frame(sys._getframe(1))
        state = current_state()
        with monitor.lock:
            # What is withdrawn here is raised when the shield ends: the scope it was
            # meant for is still open.
            try:  # noqa: SIM105 (suppress() is Python code an interrupt can land in)
                withdraw_pending(state)
            except _Interrupt:
                pass  # it landed an instant before: the same outcome
            if owner is not None:
                self._owner = owner
                self._lasti = owner.f_lasti
                self._marker = marker_at_enter(owner)
            self._depth = len(state.scopes)
            state.shields.append(self)
            self._state = state  # last: the shield is open
        return self

    @protect
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        state = self._state
        if state is None:
            raise RuntimeError("a shield cannot be exited before it is entered")
        here = sys._getframe(1)
        due = None
        with monitor.lock:
            shields = state.shields
            if self in shields:  # idempotent; shields above it never exited: retire them
                del shields[shields.index(self) :]
            self._owner = None
            if expiring_scope(state) is not None:
                # Raise it here only inside its block (not, say, for a scope of a
                # suspended generator), and only if no outer shield still holds it.
                due = due_here(state, here)
                if due is not None and held_back(state, due, here):
                    due = None
                elif due is None:
                    resend_expiring(state)
        if due is not None:
            raise _Interrupt(scope=due)  # what was held back, right after the section


def shield() -> Shield:
    """Hold interrupts aimed at this thread back until the block ends.

    For critical sections that an asynchronous exception would leave broken:
    updating shared state, or using ``threading.Condition``, ``Semaphore``,
    ``Event`` or ``queue.Queue``, whose Python-level internals leave their locks
    held when interrupted. An interrupt due while the block runs (a ``deadline()``
    or ``@timeout`` that expired, ``StoppableThread.kill()``) is delivered right
    after it, if its scope is still open. Shields nest. A shield in a worker
    thread does not delay the caller of an ``@timeout`` call: the caller is still
    answered after ``seconds + grace``.

    Examples:
        >>> with deadline(1.0):  # doctest: +SKIP
        ...     with shield():
        ...         jobs.put(item)  # never left half-done
        ...     process(item)

    Returns:
        A `Shield`, to be used once in a ``with`` statement.
    """
    return Shield()
