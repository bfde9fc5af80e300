"""How an interrupt reaches a thread, and only while it runs the code it is meant for.

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
- Raising into a blocked main thread: it stays blocked until its syscall returns.

Solution:

- The monitor sends only after looking at the target's stack (the target cannot
  move while the monitor holds the GIL): no frame of our own bookkeeping on top
  (``protect()`` registers it), the scope's frame on the stack and still inside
  its ``with`` block (``_frames``). Otherwise it looks again shortly.
- The main thread gets a signal instead, whose Python-level handler makes the same
  checks *in* the main thread at the moment it would raise: a blocked syscall
  returns with EINTR, runs the handler, and the handler raises or declines.
- When the interpreter builds an interrupt for a pending exception, the delivery
  hook (run in the target thread at the landing point) tags it with the scope it
  belongs to (the outermost expiring scope that is running, as in trio) or, if
  that scope's block has already ended, finishes the scope's exit itself and
  returns a TimeoutExpired instead (``_LateTimeoutExpired``).
- An interrupt can land in a ``__del__`` or a weakref callback run by a
  deallocation inside the block; the interpreter swallows it there and reports it
  to ``sys.unraisablehook``. Our filter on that hook keeps it quiet and asks for
  it again at once (a late TimeoutExpired is raised again at the thread's next
  check point), instead of waiting for the level-triggered re-send.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import weakref
from types import CodeType, FrameType
from typing import Any, Callable, Protocol

from . import _async_raise, _errors
from ._errors import _Interrupt, _LateTimeoutExpired
from ._frames import (
    EDGE,
    LAZY,
    OUTSIDE,
    Marker,
    Where,
    edge_is_the_only_check_point,
    may_be_exiting,
    position,
    resolve_marker,
)
from ._monitor import Alarm, monitor
from ._seconds import clock
from ._sender import (
    DEFER,
    DELIVER,
    GONE,
    PROTECTED,
    Patience,
    locate,
    protect,
    send_unmoved,
    send_when_safe,
)

__all__ = (
    "DEFER",
    "DELIVER",
    "GONE",
    "RESENT",
    "RETRY",
    "stack_of",
    "stack_of_thread",
    "REINJECT",
    "ThreadState",
    "current_state",
    "deliver",
    "due_here",
    "held_back",
    "live_shield",
    "retire_left",
    "existing_state",
    "is_generator",
    "expiring_scope",
    "filter_unraisable",
    "send_guarded",
    "resend_expiring",
    "state_of",
    "withdraw_pending",
    "protect",
)

#: Level-triggered: how often an interrupt is sent again while its scope is open.
REINJECT = 0.05
#: Our own bookkeeping was running in the target: look again this soon.
RETRY = 0.001
#: The scope's frame is a suspended generator: look again this late.
POLL = 0.05
#: How many times to wait for a loop to leave a back-edge that CPython's exception
#: table misses (see ``_frames``) before interrupting there anyway; and for a frame
#: seen at a call just past its block (about to run ``__exit__``, whose frame
#: ``sys._current_frames()`` does not show yet) before deciding the block was left.
PATIENCE = 20
#: Look again at once (the monitor yields the GIL first): the target pauses where
#: it next notices the monitor's request, which is what the next look needs.
LOOK_AGAIN = 0.0
#: Runs of the main thread's signal handler at unsafe landing points before it
#: raises anyway (about a millisecond apart; a loop of one call shows its back-edge
#: to the handler seven times in eight on 3.13).
HANDLER_PATIENCE = 200
#: Wake-up signals to the main thread left unanswered (blocked) before a direct send.
UNANSWERED = 2
#: How soon to look again after a wake-up signal.
WAKEUP_AGAIN = 0.02

_GENERATOR_FLAGS = 0x20 | 0x80 | 0x100 | 0x200  # CO_GENERATOR, CO_COROUTINE, ...


def is_generator(code: CodeType) -> bool:
    """Whether frames of ``code`` can be suspended (generators, coroutines)."""
    return bool(code.co_flags & _GENERATOR_FLAGS)


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
        shields: The open ``shield()`` blocks, outermost first: each holds back
            the interrupts of the scopes entered before it (see ``held_back``).
        late: A late TimeoutExpired that a finalizer swallowed: raised again at
            the thread's next check point.
    """

    __slots__ = (
        "__weakref__",
        "boundary",
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
        #: Wake-up signals sent since the main thread's handler last ran.
        self.wakeups = 0
        self.is_main = thread is threading.main_thread()
        self.scopes: list[Any] = []
        self.sent = False
        self.parent: ThreadState | None = None
        self.delegate: ThreadState | None = None
        self.boundary: FrameType | None = None
        self.shields: list[Any] = []
        self.late: _LateTimeoutExpired | None = None


_local = threading.local()
#: Every thread's state, by ident, for code that watches another thread.
_states: weakref.WeakValueDictionary[int, ThreadState] = weakref.WeakValueDictionary()


def current_state() -> ThreadState:
    """The calling thread's state, created on first use."""
    try:
        return _local.state  # type: ignore[no-any-return]
    except AttributeError:
        _async_raise.ensure_loaded()  # here, in a thread of the user's: see there
        state = _local.state = ThreadState(threading.current_thread())
        _states[state.ident] = state
        if state.is_main:
            _install_wakeup(state)
        return state


def existing_state() -> ThreadState | None:
    """The calling thread's state if it has one."""
    return getattr(_local, "state", None)


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


def state_of(ident: int) -> ThreadState | None:
    """Another thread's state, if it has one."""
    return _states.get(ident)


def expiring_scope(state: ThreadState) -> Scope | None:
    """The outermost expiring scope that limits ``state``'s thread, if any."""
    for scope in _expiring_scopes(state):
        return scope
    return None


def due_here(state: ThreadState, top: FrameType) -> Scope | None:
    """The outermost expiring scope whose block the thread (innermost frame ``top``) runs."""
    for scope, where in _expiring(state, top, protected=False):
        if where is DELIVER:
            return scope
    return None


def resend_expiring(state: ThreadState) -> None:
    """Ask the monitor to send now the interrupt of the outermost expiring scope.

    For an interrupt that was withdrawn or held back (an inner exit, a shield):
    the scope is still open. Hold the monitor's lock.
    """
    scope = expiring_scope(state)
    if scope is not None:
        scope._rearm(clock())


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
    return is_generator(owner.f_code)


def retire_left(state: ThreadState, top: FrameType, entering: bool = False) -> None:
    """Retire the thread's innermost scopes whose block was left without their exit.

    An exception from elsewhere (Ctrl-C, another library's ``async_raise``) can land
    on the first instruction of an ``__exit__``, before any of it runs: the scope
    stays registered though its block is over. Scopes nest, so only the innermost
    need looking at. ``top``: the thread's innermost frame (the caller's own, for
    the current thread); ``entering``: ``top`` is entering a new scope's ``with``.
    Takes the monitor's lock only when one is found.
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


def live_shield(state: ThreadState, top: FrameType) -> Any:
    """The innermost open shield of ``state``'s thread, retiring shields whose exit never ran."""
    shields = state.shields
    while shields:
        shield = shields[-1]
        if _alive(shield, top):
            return shield
        shields.pop()
    return None


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
        depth: int = shield._depth
        return leaf.scopes.index(scope) < depth
    except ValueError:
        return True


def marker_of(scope: Any) -> Marker:
    """The block marker of a scope or shield, resolved on first use."""
    marker: Marker = scope._marker
    if marker == LAZY and scope._owner is not None:
        marker = scope._marker = resolve_marker(scope._owner.f_code, scope._lasti)
    return marker


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


def _gone_delay(boundary: FrameType | None) -> float | None:
    # A suspended generator comes back; any other frame that left the stack is done.
    return POLL if boundary is not None and is_generator(boundary.f_code) else None


def deliver(scope: Scope, now: float) -> float | None:
    """Interrupt the code that runs ``scope``'s block; hold the monitor's lock.

    Returns the delay until the next attempt, or None when the scope can never be
    delivered to (its thread or frame is gone: the caller discards it).

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
        if leaf.is_main and _wakeup_ready():
            # The handler decides in the main thread itself (see _on_wakeup_signal);
            # unanswered twice (the signal is blocked), the direct send below too,
            # and the signal still, to wake a blocking call once the mask is lifted.
            if leaf.wakeups < UNANSWERED:
                raised_at = scope._rare.raised_at if scope._rare is not None else -math.inf
                if leaf.wakeups == 0 and now < raised_at + REINJECT:
                    return raised_at + REINJECT - now  # raised: again after REINJECT
                leaf.wakeups += 1
                signal.pthread_kill(leaf.ident, _wakeup_signal)
                return WAKEUP_AGAIN
            signal.pthread_kill(leaf.ident, _wakeup_signal)
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
    elif where is OUTSIDE and boundary is not None and may_be_exiting(boundary):
        rare = scope._rarely()
        rare.exits += 1  # maybe on its way into __exit__, whose frame is not shown yet
        if rare.exits <= PATIENCE:
            where = DEFER
    if where is DELIVER:
        if send_unmoved(leaf.ident, top, lasti, _Interrupt) is None:
            return RETRY  # it moved while we looked
        leaf.sent = True
        patience = scope._rarely().patience
        if patience is not None:
            patience.reset()
        return REINJECT
    if where is DEFER:
        return RETRY
    if where is OUTSIDE:
        return None  # the block was left without its __exit__: nothing to interrupt
    return _gone_delay(boundary)


def _expiring_scopes(state: ThreadState) -> list[Scope]:
    """The expiring scopes limiting ``state``'s thread (its callers' too), outermost first."""
    chain = []
    link: ThreadState | None = state
    while link is not None:
        chain.append(link)
        link = link.parent
    return [
        scope for link in reversed(chain) for scope in tuple(link.scopes) if scope._is_expiring()
    ]


def _expiring(state: ThreadState, top: FrameType, protected: bool) -> list[tuple[Scope, Where]]:
    """The expiring scopes limiting ``state``'s thread, outermost first, with where each is."""
    found: list[tuple[Scope, Where]] = []
    for scope in _expiring_scopes(state):
        if scope._thread is not state:  # a caller's scope: this worker runs its call
            assert state.boundary is not None
            where = locate(top, state.boundary, None, True, protected=protected)
        else:
            where = locate(top, scope._owner, marker_of(scope), False, protected=protected)
        found.append((scope, where))
    return found


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
        _expiring(state, landing, protected=False)
        if landing is not None
        else [(scope, GONE) for scope in _expiring_scopes(state)]
    )
    for scope, where in found:
        if where is DELIVER or (where is OUTSIDE and _unwinding_into(scope)):
            return scope
        if (
            where is OUTSIDE
            or where is EDGE
            or (where is GONE and _gone_delay(scope._owner) is None)
        ):
            # The block ended (a failing C call carried its error past the last
            # check point), or the interrupt landed where CPython lets it escape
            # the block, or its frame: __exit__ will not run, so finish it here.
            return scope._exit_late(sys.exc_info()[1])
    return None


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


# --- interrupts swallowed by finalizers ----------------------------------------

#: Exceptions sent again and again until they stop their thread (besides
#: _Interrupt): one a finalizer swallowed is dropped quietly.
RESENT: set[type[BaseException]] = set()


class _UnraisableFilter:
    """A ``sys.unraisablehook`` that drops interrupts swallowed by finalizers.

    Installed (around the hook in place) when the first interrupt is sent. Every
    other report goes to the previous hook.
    """

    __slots__ = ("previous",)

    def __init__(self, previous: Callable[[Any], object]) -> None:
        self.previous = previous

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


def _send_again(exc: _Interrupt) -> None:
    """Deliver again, in this thread, an interrupt that a finalizer swallowed."""
    state = existing_state()
    if state is None:
        return
    if not isinstance(exc, _LateTimeoutExpired):
        # Its scope is still open and sends it again after REINJECT anyway: ask for
        # it now, unless the lock is taken.
        _without_waiting(lambda: resend_expiring(state))
        return
    # Its scope is finished and sends nothing. The scope's exit raises it if that
    # comes first; otherwise the monitor raises it at the thread's next check point
    # (sending it from here would land in this very hook, inside the finalizer).
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
_main_state: ThreadState | None = None


def _install_wakeup(state: ThreadState) -> None:
    """Install our handler for the wake-up signal, unless someone else uses it."""
    global _main_state
    _main_state = state
    if not _wakeup_signal or not hasattr(signal, "pthread_kill"):
        return
    try:
        if signal.getsignal(_wakeup_signal) in (signal.SIG_DFL, None):
            signal.signal(_wakeup_signal, _on_wakeup_signal)
    except (ValueError, OSError):  # not the main interpreter, or an invalid signal
        pass


def _wakeup_ready() -> bool:
    return bool(_wakeup_signal) and signal.getsignal(_wakeup_signal) is _on_wakeup_signal


def _on_wakeup_signal(signum: int, frame: FrameType | None) -> None:
    """Raise the interrupt in the main thread, if it runs the block it is meant for."""
    state = _main_state
    if state is None or frame is None:
        return
    state.wakeups = 0
    for scope, seen in _expiring(state, frame, protected=True):
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
        elif where is OUTSIDE and scope._owner is not None and may_be_exiting(scope._owner):
            rare = scope._rarely()
            rare.exits += 1  # maybe on its way into __exit__ (3.9/3.10 pop the block first)
            if rare.exits <= PATIENCE:
                where = DEFER
        if where is DELIVER:
            scope._rarely().raised_at = clock()
            raise _Interrupt(scope=scope)
        if where is DEFER:
            _retry_soon(scope)
            return
        if where is OUTSIDE or (where is GONE and _gone_delay(scope._owner) is None):
            # Its block was left without its exit: never deliver. (If the lock is
            # busy, the monitor finds the same at its next look.)
            _without_waiting(scope._discard_locked)


def _retry_soon(scope: Scope) -> None:
    _without_waiting(lambda: scope._rearm(clock() + RETRY))


def _without_waiting(action: Callable[[], None]) -> None:
    """Run ``action`` under the monitor's lock if it is free at once.

    For code that runs in a signal handler or a finalizer: our bookkeeping may
    hold the lock in this very thread.
    """
    monitor.if_free(action)


def _after_fork_in_child() -> None:
    # Only the forking thread exists in the child: forget the others' states (their
    # idents will be reused) and the delegations to and from them.
    global _main_state
    state = existing_state()
    _states.clear()
    if state is not None:
        state.ident = threading.get_ident()
        state.native_id = threading.get_native_id()
        state.is_main = state.thread is threading.main_thread()
        state.delegate = None
        state.parent = None
        state.boundary = None
        state.sent = False
        state.late = None
        _states[state.ident] = state
        if state.is_main:
            _main_state = state


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

protect(
    current_state,
    existing_state,
    marker_of,
    locate,
    _expiring,
    _expiring_scopes,
    resend_expiring,
    withdraw_pending,
    _on_interpreter_delivery,
    _UnraisableFilter.__call__,
    _send_again,
    _unwinding_into,
    _retry_soon,
    _without_waiting,
    _on_wakeup_signal,
    due_here,
    _alive,
    retire_left,
    live_shield,
    held_back,
)
