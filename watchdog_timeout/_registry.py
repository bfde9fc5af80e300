"""Each thread's open scopes and shields: recorded, found from any thread, retired once left.

Design notes
------------
A scope limits its thread from its enter to its exit; frames only refine where in
that time an interrupt may land. So the record of what limits a thread is a list
per thread (``ThreadState.scopes``), which the monitor reads under its lock, and
the frames recorded with each scope (``_owner``, ``_lasti``, ``_marker``) tell
whether the block still runs.

Things that don't work:

- Trusting every exit to run: an exception from elsewhere (Ctrl-C, another
  library's ``async_raise``) can land on the first instruction of an ``__exit__``,
  before any of it runs, and the scope stays registered though its block is over.
- Deciding from frames whether a scope exists: a scope entered through a helper
  (``ExitStack.enter_context`` in a function that returned) has no frame of its
  own; it is bounded by its exit alone.
- Retiring a scope from a look at another thread (the monitor's): a thread that the
  OS has not scheduled between its block and the call of its ``__exit__`` shows the
  same frames as one whose exit was skipped, for as long as it waits. Counting the
  looks (20) did not help: on a loaded machine the exit then ran on a retired scope
  (``RuntimeError: ... it is finished``, one SIGINT storm in 35 on 3.9/3.10).
- Retiring from the main thread's signal handler, in the thread itself: on 3.9/3.10
  it can run while an interrupt is being built on its way into ``__exit__``, the
  block already popped; the retired scope then could not claim its own interrupt
  (a raw ``_Interrupt`` out of a fresh deadline, beside a CPU hog).

Solution: whatever uses the library next in the thread (a scope's enter,
``remaining()``, a delivery) first retires the innermost constructs whose block
was left (``retire_left``, ``live_shield``); a construct whose block is not known
from frames is alive until its exit. A look (the monitor's, the main thread's
signal handler) retires a scope only once its frame has returned. A retirement is
still a judgment: an exit that runs after it ends the block as usual
(``_armed.RETIRED``).
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from types import FrameType
from typing import Any, Protocol

from . import _async_raise, _bytecode
from ._errors import _LateTimeoutExpired
from ._frames import LAZY, OUTSIDE, Marker, Where, may_come_back, position, resolve_marker
from ._monitor import monitor
from ._seconds import clock
from ._sender import DEFER, DELIVER, GONE, Patience, locate, protect, send_when_safe

__all__ = (
    "Scope",
    "ThreadState",
    "current_state",
    "due_here",
    "earliest_when",
    "existing_state",
    "expiring",
    "expiring_scope",
    "expiring_scopes",
    "held_back",
    "live_shield",
    "marker_of",
    "resend_expiring",
    "retire_left",
    "send_guarded",
    "state_of",
    "withdraw_pending",
)


class Scope(Protocol):
    """What delivery needs from a scope (``_scope.Deadline``)."""

    _thread: ThreadState | None
    _owner: FrameType | None
    _rare: Any
    _lasti: int
    _marker: Marker

    def _is_expiring(self) -> bool: ...

    def _exit_late(self, cause: BaseException | None) -> BaseException: ...

    def _discard_locked(self) -> None: ...

    def _rearm(self, when: float) -> None: ...

    def _rarely(self) -> Any: ...

    def _is_open(self) -> bool: ...

    def _interrupts(self) -> bool: ...


class ThreadState:
    """Per-thread record: the thread's open scopes and how to reach the code it runs.

    Attributes:
        scopes: Open scopes, outermost first.
        sent: An asynchronous exception may be pending on this thread.
        parent: For a worker running a call: the caller's state, whose scopes also
            limit this thread.
        delegate: The worker whose call this thread is waiting for: interrupts
            for this thread's scopes go there.
        boundary: For a worker: the frame that runs the call.
        call_until: For a worker: when the call it runs is to end (its caller arms
            that limit only once it has passed: see ``_worker``).
        shields: The open ``shield()`` blocks, outermost first: each holds back
            the interrupts of the scopes entered before it (see ``held_back``).
        late: A late TimeoutExpired that a finalizer swallowed: raised again at
            the thread's next check point.
        wakeups: Wake-up signals sent since the main thread's handler last ran.
    """

    __slots__ = (
        "__weakref__",
        "boundary",
        "call_until",
        "delegate",
        "ident",
        "is_main",
        "late",
        "native_id",
        "parent",
        "scopes",
        "sent",
        "shields",
        "thread",
        "wakeups",
    )

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread
        self.ident: int = threading.get_ident()
        self.native_id: int | None = getattr(threading, "get_native_id", lambda: None)()
        self.wakeups = 0
        self.is_main = thread is threading.main_thread()
        self.scopes: list[Any] = []
        self.sent = False
        self.parent: ThreadState | None = None
        self.delegate: ThreadState | None = None
        self.boundary: FrameType | None = None
        self.call_until: float | None = None
        self.shields: list[Any] = []
        self.late: _LateTimeoutExpired | None = None


_local = threading.local()
#: Every thread's state, by ident, for code that watches another thread.
_states: weakref.WeakValueDictionary[int, ThreadState] = weakref.WeakValueDictionary()


@protect
def current_state() -> ThreadState:
    """The calling thread's state, created on first use."""
    try:
        return _local.state  # type: ignore[no-any-return]
    except AttributeError:
        # Each step idempotent, and the state published last: an exception from
        # elsewhere (Ctrl-C) that cuts this short leaves it all to be done again at
        # the next call, not a state without its wake-up handler or its entry.
        _async_raise.ensure_loaded()  # here, in a thread of the user's: see there
        _bytecode.load()  # (the same: never an import on the monitor)
        state = ThreadState(threading.current_thread())
        if state.is_main:
            from ._wakeup import install_wakeup  # noqa: PLC0415 (it builds on this module)

            install_wakeup()
        _states[state.ident] = state
        _local.state = state
        return state


@protect
def existing_state() -> ThreadState | None:
    """The calling thread's state if it has one."""
    return getattr(_local, "state", None)


def state_of(ident: int) -> ThreadState | None:
    """Another thread's state, if it has one."""
    return _states.get(ident)


@protect
def withdraw_pending(state: ThreadState) -> bool:
    """Withdraw an interrupt that may be pending on ``state``'s thread; hold the lock.

    Call it first thing under the monitor's lock (so nothing is sent meanwhile),
    within ``try: ... except _Interrupt:``: one can land at this function's entry,
    which spends it, the same outcome. Returns whether one may have been pending.
    """
    if not state.sent:
        return False
    state.sent = False
    withdraw = _async_raise.withdraw_async_exc
    if withdraw is not None:
        withdraw(state.ident, None)  # a C call: nothing lands between the test and this
    return True


# --- which scopes are due -----------------------------------------------------


@protect
def expiring_scopes(state: ThreadState) -> list[Scope]:
    """The expiring scopes limiting ``state``'s thread (its callers' too), outermost first."""
    chain = []
    link: ThreadState | None = state
    while link is not None:
        chain.append(link)
        link = link.parent
    return [
        scope for link in reversed(chain) for scope in tuple(link.scopes) if scope._is_expiring()
    ]


def expiring_scope(state: ThreadState) -> Scope | None:
    """The outermost expiring scope that limits ``state``'s thread, if any."""
    for scope in expiring_scopes(state):
        return scope
    return None


@protect
def expiring(state: ThreadState, top: FrameType, protected: bool) -> list[tuple[Scope, Where]]:
    """The expiring scopes limiting ``state``'s thread, outermost first, with where each is."""
    found: list[tuple[Scope, Where]] = []
    for scope in expiring_scopes(state):
        if scope._thread is not state:  # a caller's scope: this worker runs its call
            assert state.boundary is not None
            where = locate(top, state.boundary, None, True, protected=protected)
        else:
            where = locate(top, scope._owner, marker_of(scope), False, protected=protected)
        found.append((scope, where))
    return found


@protect
def earliest_when(state: ThreadState, *, interrupting_only: bool = False) -> float | None:
    """The earliest deadline limiting ``state``'s thread: its open scopes, its callers'
    scopes and the calls it runs for them (``call_until``), on the monitor's clock.

    ``interrupting_only``: leave out scopes whose expiry only reports (a Watchdog's).
    """
    earliest: float | None = None
    link: ThreadState | None = state
    while link is not None:
        for scope in tuple(link.scopes):
            when = scope._when
            if (
                when is not None
                and scope._is_open()
                and (not interrupting_only or scope._interrupts())
                and (earliest is None or when < earliest)
            ):
                earliest = when
        until = link.call_until
        if until is not None and (earliest is None or until < earliest):
            earliest = until
        link = link.parent
    return earliest


@protect
def due_here(state: ThreadState, top: FrameType) -> Scope | None:
    """The outermost expiring scope whose block the thread (innermost frame ``top``) runs."""
    for scope, where in expiring(state, top, protected=False):
        if where is DELIVER:
            return scope
    return None


@protect
def resend_expiring(state: ThreadState) -> None:
    """Ask the monitor to send now the interrupt of the outermost expiring scope.

    For an interrupt that was withdrawn or held back (an inner exit, a shield):
    the scope is still open. Hold the monitor's lock.
    """
    scope = expiring_scope(state)
    if scope is not None:
        scope._rearm(clock())


@protect
def marker_of(scope: Any) -> Marker:
    """The block marker of a scope or shield, resolved on first use."""
    marker: Marker = scope._marker
    if marker == LAZY and scope._owner is not None:
        marker = scope._marker = resolve_marker(scope._owner.f_code, scope._lasti)
    return marker


# --- constructs whose block was left -------------------------------------------


@protect
def _alive(construct: Any, top: FrameType, entering: bool = False) -> bool:
    """Whether a construct's ``with`` block still runs on the stack that ``top`` heads.

    False when its frame has left the stack (and is not a suspended generator) or
    has left its block: its exit never ran (an exception landed on its first
    instruction). A construct whose block is not known from frames is alive.
    """
    owner = construct._owner
    if owner is None:
        return True
    frame: FrameType | None = top
    while frame is not None:
        if frame is owner:
            if frame.f_lasti == construct._lasti:
                # At its with-entry: its block is about to begin (its __enter__ just
                # returned), unless a new construct is being entered there now: the
                # same with statement again, after an exit that never ran.
                return not (entering and frame is top)
            return position(frame, marker_of(construct)) is not OUTSIDE
        frame = frame.f_back
    return may_come_back(owner)


@protect
def retire_left(state: ThreadState, top: FrameType, entering: bool = False) -> None:
    """Retire the thread's innermost scopes whose block was left without their exit.

    Scopes nest, so only the innermost need looking at. ``top``: the thread's
    innermost frame (the caller's own, for the current thread); ``entering``:
    ``top`` is entering a new scope's ``with``. Takes the monitor's lock only when
    one is found.
    """
    scopes = state.scopes
    while scopes:
        scope = scopes[-1]
        if not scope._is_open():
            with monitor.lock:  # left behind by an exit that an exception cut short
                if scopes and scopes[-1] is scope:
                    scopes.pop()
            continue
        if _alive(scope, top, entering):
            return
        with monitor.lock:
            scope._discard_locked()


@protect
def live_shield(state: ThreadState, top: FrameType) -> Any:
    """The innermost open shield of ``state``'s thread, retiring shields whose exit never ran."""
    shields = state.shields
    while shields:
        shield = shields[-1]
        if _alive(shield, top):
            return shield
        shields.pop()
    return None


@protect
def held_back(leaf: ThreadState, scope: Scope, top: FrameType) -> bool:
    """Whether a shield in ``leaf``'s thread holds the interrupt of ``scope`` back.

    A shield holds back the scopes entered before it (and a caller's scopes, for a
    worker); a scope entered inside a shield is delivered as usual (trio's rule).
    """
    shield = live_shield(leaf, top)
    if shield is None:
        return False
    if scope._thread is not leaf:
        return True
    try:
        index = leaf.scopes.index(scope)
    except ValueError:
        return True
    depth: int = shield._depth
    return index < depth


def send_guarded(
    target: ThreadState | int,
    exc_type: type[BaseException],
    patience: Patience,
    *,
    boundary: FrameType | None = None,
) -> Where:
    """Send ``exc_type`` to a thread unless a shield holds it back (``_sender.send_when_safe``).

    Hold the monitor's lock (no shield begins meanwhile). DELIVER when sent.
    """
    state = _states.get(target) if isinstance(target, int) else target
    ident = target if isinstance(target, int) else target.ident
    if state is not None:
        top = sys._current_frames().get(ident)
        if top is None:
            return GONE
        if live_shield(state, top) is not None:
            return DEFER
    return send_when_safe(ident, exc_type, patience, boundary=boundary)


def _after_fork_in_child() -> None:
    # Only the forking thread exists in the child: forget the others' states (their
    # idents will be reused) and the delegations to and from them.
    state = existing_state()
    _states.clear()
    if state is not None:
        state.ident = threading.get_ident()
        state.native_id = threading.get_native_id()
        state.is_main = state.thread is threading.main_thread()
        state.delegate = None
        state.parent = None
        state.boundary = None
        state.call_until = None
        state.sent = False
        state.late = None
        _states[state.ident] = state


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
