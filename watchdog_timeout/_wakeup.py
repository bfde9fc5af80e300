"""The main thread's interrupt: a signal whose handler decides in the main thread itself.

Design notes
------------
Things that don't work:

- Raising into a blocked main thread with ``PyThreadState_SetAsyncExc``: it stays
  blocked until its syscall returns.
- Relying on the signal alone: a program that blocks every signal in its main
  thread (the ``sigwait`` daemon pattern) never runs the handler.

Solution: the monitor sends the main thread a real-time signal (``SIGRTMAX - 2``;
``WATCHDOG_TIMEOUT_SIGNAL`` chooses another, ``0`` none) if the application has
not claimed it. A blocked syscall returns with EINTR and runs the handler, which
makes the sender's checks at the very instruction where it would raise
(``_registry.expiring``) and raises the interrupt or declines. After
``UNANSWERED`` signals without a run of the handler, the monitor sends the
interrupt directly too (``_delivery.deliver``), and the signal still, to wake a
blocking call once the mask is lifted.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import sys
import threading
from types import FrameType
from typing import Callable

from ._errors import _Interrupt
from ._frames import EDGE, OUTSIDE, edge_is_the_only_check_point, may_come_back
from ._monitor import monitor
from ._registry import Scope, ThreadState, existing_state, expiring, held_back
from ._seconds import clock
from ._sender import DEFER, DELIVER, GONE, REINJECT, RETRY, outside_again, protect

__all__ = ("HANDLER_PATIENCE", "install_wakeup", "wake_main")

#: Runs of the handler at unsafe landing points before it raises anyway (about a
#: millisecond apart; a loop of one call shows its back-edge to the handler seven
#: times in eight on 3.13).
HANDLER_PATIENCE = 200
#: Wake-up signals left unanswered (blocked) before a direct send.
UNANSWERED = 2
#: How soon to look again after a wake-up signal.
WAKEUP_AGAIN = 0.02


def _choose_signal() -> int:
    configured = os.environ.get("WATCHDOG_TIMEOUT_SIGNAL", "").strip()
    if configured:
        if configured.lower() in ("0", "none", "off"):
            return 0
        if configured.isdigit():
            return int(configured)
        return int(getattr(signal, configured.upper(), 0))
    return int(getattr(signal, "SIGRTMAX", 2)) - 2 if hasattr(signal, "SIGRTMAX") else 0


#: The signal sent to wake the main thread (0: none; WATCHDOG_TIMEOUT_SIGNAL overrides).
_wakeup_signal = _choose_signal()


def install_wakeup() -> None:
    """Install our handler for the wake-up signal, unless someone else uses it.

    Called in the main thread, when its state is created.
    """
    if not _wakeup_signal or not hasattr(signal, "pthread_kill"):
        return
    try:
        if signal.getsignal(_wakeup_signal) in (signal.SIG_DFL, None):
            signal.signal(_wakeup_signal, _on_wakeup_signal)
    except (ValueError, OSError):  # not the main interpreter, or an invalid signal
        return
    if _wakeup_ready():  # (installed now, or by a call that was cut short after it)
        monitor.ask_main_to_give_back = _ask_main_to_give_back


def _ask_main_to_give_back(owner: int | None) -> None:
    # Called while the monitor's lock stays busy, held by ``owner``: the handler gives
    # back a hold that the main thread leaked (Monitor.release_leaked). Only then:
    # a main thread slow in our code (a tracer) must not be signalled again and again.
    if owner is None or owner != threading.main_thread().ident or not _wakeup_ready():
        return
    if _library_on_stack(sys._current_frames().get(owner)):
        return  # held by our code there, not leaked
    signal.pthread_kill(owner, _wakeup_signal)


def _wakeup_ready() -> bool:
    return bool(_wakeup_signal) and signal.getsignal(_wakeup_signal) is _on_wakeup_signal


def wake_main(leaf: ThreadState, scope: Scope, now: float) -> float | None:
    """Signal the main thread for ``scope``; hold the monitor's lock.

    Returns the delay until the next look, or None when the direct send is due too
    (no handler of ours, or the signal went unanswered).
    """
    if not _wakeup_ready():
        return None
    if leaf.wakeups < UNANSWERED:
        raised_at = scope._rare.raised_at if scope._rare is not None else -math.inf
        if leaf.wakeups == 0 and now < raised_at + REINJECT:
            return raised_at + REINJECT - now  # raised: again after REINJECT
        leaf.wakeups += 1
        signal.pthread_kill(leaf.ident, _wakeup_signal)
        return WAKEUP_AGAIN
    signal.pthread_kill(leaf.ident, _wakeup_signal)
    return None


@protect
def _on_wakeup_signal(signum: int, frame: FrameType | None) -> None:
    """Raise the interrupt in the main thread, if it runs the block it is meant for.

    First gives back the monitor's lock if the main thread holds it outside our
    code: a hold leaked on 3.9 (Ctrl-C; ``Monitor.release_leaked``), that the
    monitor asks for with this signal while the lock stays busy.
    """
    held = monitor.lock._is_owned()  # type: ignore[attr-defined]
    if held and not _library_on_stack(frame):
        monitor.give_back()
    state = existing_state()  # signal handlers run in the main thread
    if state is None or frame is None:
        return
    state.wakeups = 0
    for scope, seen in expiring(state, frame, protected=True):
        where = seen
        if held_back(state, scope, frame):
            continue  # the shield's exit delivers it
        if where is EDGE:
            rare = scope._rarely()
            rare.edges += 1  # each run of the handler: the thread has moved on
            futile = edge_is_the_only_check_point(frame.f_code, frame.f_lasti)
            if rare.edges <= HANDLER_PATIENCE and not futile:
                where = DEFER
            elif frame is scope._owner:
                # The block's own loop has no other check point: raising here skips
                # __exit__, so finish the scope here.
                raise scope._exit_late(None)
            else:
                where = DELIVER  # a callee's loop: its handler is skipped (CPython bug)
        if where is DELIVER:
            scope._rarely().raised_at = clock()
            raise _Interrupt(scope=scope)
        if where is DEFER:
            _without_waiting(functools.partial(scope._rearm, clock() + RETRY))
            return
        if where is OUTSIDE:
            # Never delivered there, nor retired: 3.9/3.10 pop the block before they
            # build the exception on its way into __exit__, and this handler can run
            # then, inside _Interrupt.__new__ (see _sender.outside_again).
            again = clock() + outside_again(scope._rarely())
            _without_waiting(functools.partial(scope._rearm, again))
        elif where is GONE and not may_come_back(scope._owner):
            # Its frame returned without the exit: never deliver. (If the lock is
            # busy, the monitor finds the same at its next look.)
            _without_waiting(scope._discard_locked)


def _library_on_stack(frame: FrameType | None) -> bool:
    # Whether code of this package runs in the frame or under it: only there can the
    # thread hold the monitor's lock without having leaked it.
    while frame is not None:
        if frame.f_globals.get("__name__", "").partition(".")[0] == _PACKAGE:
            return True
        frame = frame.f_back
    return False


_PACKAGE = __name__.partition(".")[0]


@protect
def _without_waiting(action: Callable[[], None]) -> None:
    """Run ``action`` under the monitor's lock if it is free at once.

    For code that runs in a signal handler: our bookkeeping may hold the lock in
    this very thread.
    """
    monitor.if_free(action)
