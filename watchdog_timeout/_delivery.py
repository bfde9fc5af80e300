"""How an interrupt reaches the code that runs a scope's block, and only that code.

Design notes
------------
An asynchronous exception lands at the target's next "eval breaker" check: where
the thread is paused when it is sent, or, for a thread blocked in C, right after
the C call returns.

Things that don't work:

- Sending whenever the scope is active: the thread may be inside our own
  ``__enter__``/``__exit__`` bookkeeping, or past the end of its block.
- Trusting that the next check point is inside the block: a C call that *fails*
  (a socket timeout equal to ``remaining()``, a call unblocked by ``on_expire``)
  carries its error to the scope's exit with no check point on the way, so the
  pending interrupt lands at the entry of ``__exit__`` (3.11+) or in place of
  calling it (3.9/3.10); either way ``__exit__`` never runs.

Solution:

- The monitor sends only after looking at the target's stack (``_sender``: no
  frame of our bookkeeping, the scope's frame still inside its ``with`` block);
  otherwise it looks again shortly. The main thread gets a signal instead
  (``_wakeup``), whose handler makes the same checks in the main thread itself.
- When the interpreter builds an interrupt for a pending exception, the delivery
  hook (run in the target thread at the landing point) tags it with the scope it
  belongs to (the outermost expiring scope that is running, as in trio) or, if
  that scope's block has already ended, finishes the scope's exit itself and
  returns a TimeoutExpired instead (``_LateTimeoutExpired``).
- Interrupts that a finalizer swallowed: ``_late``.
"""

from __future__ import annotations

import sys
from types import FrameType

from . import _async_raise, _errors
from ._errors import _Interrupt
from ._frames import EDGE, OUTSIDE, may_come_back
from ._late import filter_unraisable
from ._registry import (
    Scope,
    existing_state,
    expiring,
    expiring_scopes,
    held_back,
    marker_of,
)
from ._sender import (
    DEFER,
    DELIVER,
    GONE,
    PROTECTED,
    REINJECT,
    RETRY,
    Patience,
    locate,
    outside_again,
    protect,
    send_unmoved,
)
from ._wakeup import wake_main

__all__ = ("deliver", "stack_of", "stack_of_thread")

#: The scope's frame is a suspended generator: look again this late.
POLL = 0.05
#: Look again at once (the monitor yields the GIL first): the target pauses where
#: it next notices the monitor's request, which is what the next look needs.
LOOK_AGAIN = 0.0


def deliver(scope: Scope, now: float) -> float | None:
    """Interrupt the code that runs ``scope``'s block; hold the monitor's lock.

    Returns the delay until the next attempt, or None when the scope can never be
    delivered to (its thread or frame is gone: the caller retires it).

    Raises:
        RuntimeError: The interpreter cannot raise in another thread.
    """
    if _async_raise.send_async_exc is None:
        raise RuntimeError(_async_raise._unsupported)
    filter_unraisable()
    state = scope._thread
    owner = scope._owner
    assert state is not None
    leaf = state
    while leaf.delegate is not None:
        leaf = leaf.delegate
    top = sys._current_frames().get(leaf.ident)
    if top is None:
        return None
    if held_back(leaf, scope, top):
        return REINJECT  # the shield's exit asks again at once
    if leaf is state:
        if leaf.is_main:
            # The signal handler decides in the main thread itself (see _wakeup).
            delay = wake_main(leaf, scope, now)
            if delay is not None:
                return delay
        boundary, marker, ours = owner, marker_of(scope), False
    else:
        assert leaf.boundary is not None
        boundary, marker, ours = leaf.boundary, None, True
    lasti = top.f_lasti
    where = locate(top, boundary, marker, ours, after_pause=True)
    if where is EDGE:
        # Only unsafe landing points: wait for the target to reach a safe one, as
        # long as it makes progress (see _sender.Patience); then send anyway (the
        # delivery hook repairs the scope's exit if it is skipped).
        rare = scope._rarely()
        if rare.patience is None:
            rare.patience = Patience(leaf.native_id)
        if not rare.patience.exhausted(top):
            return LOOK_AGAIN  # after the target has run a little: see Monitor._wait
        where = DELIVER
    if where is DELIVER:
        if send_unmoved(leaf.ident, top, lasti, _Interrupt) is None:
            return RETRY  # it moved while we looked
        leaf.sent = True
        rare = scope._rarely()
        rare.outside = 0
        if rare.patience is not None:
            rare.patience.reset()
        return REINJECT
    if where is DEFER:
        return RETRY
    if where is OUTSIDE:
        return outside_again(scope._rarely())
    return POLL if may_come_back(boundary) else None


def stack_of(scope: Scope, limit: int = 8) -> tuple[tuple[str, int, str], ...] | None:
    """Where the thread that runs ``scope``'s block is now: innermost frame first.

    Hold the monitor's lock (the thread then cannot move: the caller holds the GIL).
    """
    leaf = scope._thread
    if leaf is None:
        return None
    while leaf.delegate is not None:
        leaf = leaf.delegate
    return stack_of_thread(leaf.ident, limit)


def stack_of_thread(ident: int, limit: int = 8) -> tuple[tuple[str, int, str], ...]:
    """Where thread ``ident`` is now, innermost frame first, without our own frames."""
    frame: FrameType | None = sys._current_frames().get(ident)
    stack: list[tuple[str, int, str]] = []
    while frame is not None and len(stack) < limit:
        code = frame.f_code
        if code not in PROTECTED:  # our own frames say nothing about the code
            stack.append((code.co_filename, frame.f_lineno, code.co_name))
        frame = frame.f_back
    return tuple(stack)


@protect
def _on_interpreter_delivery() -> object:
    """The delivery hook: tag an interrupt built by the interpreter, or repair it."""
    state = existing_state()
    if state is None:
        return None
    state.sent = False  # it is being delivered: nothing pending any more
    late = state.late
    if late is not None:  # a finalizer swallowed it: this is the next check point
        state.late = None
        return late
    try:
        landing: FrameType | None = sys._getframe(2)  # 0: this hook, 1: _Interrupt.__new__
    except ValueError:  # built after it left every frame (3.9-3.11 build it lazily)
        landing = None
    found = (
        expiring(state, landing, protected=False)
        if landing is not None
        else [(scope, GONE) for scope in expiring_scopes(state)]
    )
    for scope, where in found:
        if landing is not None and held_back(state, scope, landing):
            continue  # a shield holds it back: an inner scope sent this one (trio's rule)
        if where is DELIVER or (where is OUTSIDE and _unwinding_into(scope)):
            return scope
        if where is OUTSIDE or where is EDGE or (where is GONE and not may_come_back(scope._owner)):
            # The block ended (a failing C call carried its error past the last
            # check point), or the interrupt landed where CPython lets it escape
            # the block, or its frame: __exit__ will not run, so finish it here.
            return scope._exit_late(sys.exc_info()[1])
    return None


@protect
def _unwinding_into(scope: Scope) -> bool:
    """3.9/3.10: whether the interrupt is being normalized on its way into the scope's exit.

    There the interpreter builds the exception object lazily, after it has popped
    the scope's block to run its handler; an interrupt that landed late instead
    replaces the exception the handler was given, whose traceback ends at the
    frame's current instruction.
    """
    owner = scope._owner
    if sys.version_info >= (3, 11) or owner is None:
        return False
    handled = sys.exc_info()[1]
    tb = handled.__traceback__ if handled is not None else None
    while tb is not None:
        if tb.tb_frame is owner and tb.tb_lasti == owner.f_lasti:
            return False
        tb = tb.tb_next
    return True


_errors._delivery_hook = _on_interpreter_delivery
