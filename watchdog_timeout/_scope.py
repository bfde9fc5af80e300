"""``deadline()``: a scope that interrupts the current thread when its time is up.

Design notes
------------
States, as in ``asyncio.timeouts``: CREATED -> ACTIVE -> EXPIRING -> EXPIRED, or
-> FINISHED. EXPIRING means "the interrupt was sent, the block has not ended";
EXPIRED means the block ended because of this scope's interrupt.

Things that don't work:

- Checking "still active?" in the monitor and "leave active" in ``__exit__`` without
  a lock: the interrupt is sent after the block ends (measured: 4-20 in 100,000).
- A lock alone: an interrupt sent just before the exit takes the lock is still
  pending and raises after the block.
- Matching interrupts by class: an inner scope would convert an outer scope's.

Solution: the monitor checks the state and sends under ``monitor.lock``; ``__exit__``
takes the same lock and, as its first call there, withdraws any exception pending
on the thread, then leaves the active states. Withdrawing is per thread, so an
outer scope's interrupt withdrawn by an inner exit is sent again at once. Every
interrupt is tagged with its scope (see ``_delivery``) and only that scope turns
it into TimeoutExpired; an inner scope lets an outer one's interrupt pass. While
the scope stays open, the interrupt is sent again every ``REINJECT`` seconds
(level-triggered, as in trio), so that a bare ``except:`` cannot swallow it.

An interrupt can also arrive from elsewhere (KeyboardInterrupt, another
``async_raise``) at any point of ``__enter__``/``__exit__``: they register and arm
first and mark the state last, and roll back what they did if interrupted.
"""

from __future__ import annotations

import enum
import math
import sys
from types import CodeType, FrameType, TracebackType
from typing import Callable

from ._bytecode import is_generator
from ._delivery import deliver, stack_of
from ._errors import TimeoutExpired, _Interrupt, _LateTimeoutExpired, describe_stack
from ._frames import Marker, marker_at_enter, with_frame
from ._monitor import Alarm, Entry, logger, monitor
from ._registry import (
    ThreadState,
    current_state,
    existing_state,
    resend_expiring,
    retire_left,
    withdraw_pending,
)
from ._seconds import Seconds, check_seconds, check_when, clock
from ._sender import Patience, protect

__all__ = ("Deadline", "deadline", "deadline_at", "remaining")

#: How soon after ``on_expire`` returns the interrupt follows, in a thread other
#: than the main one: time for a call that ``on_expire`` unblocked to return.
ON_EXPIRE_GRACE = 0.01
#: How long the interrupt waits for ``on_expire`` to return before it is sent anyway.
ON_EXPIRE_WAIT = 1.0


class _State(enum.Enum):
    CREATED = "created"
    ACTIVE = "active"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    FINISHED = "finished"


_CREATED, _ACTIVE, _EXPIRING, _EXPIRED, _CANCELLED, _FINISHED = _State


#: Code of our own that enters a scope on its caller's behalf (Watchdog.__enter__).
PASS_THROUGH: set[CodeType] = set()


_COROUTINE_FLAGS = 0x80 | 0x100 | 0x200  # CO_COROUTINE, CO_ITERABLE_COROUTINE, CO_ASYNC_GENERATOR


def _refuse_coroutine(frame: FrameType | None) -> None:
    if frame is not None and frame.f_code.co_flags & _COROUTINE_FLAGS:
        raise RuntimeError(
            f"deadline() cannot limit a block of the coroutine {frame.f_code.co_name}(): "
            "across an `await` it would interrupt whatever the event loop runs meanwhile. "
            "Use `async with asyncio.timeout(seconds):` there, or decorate the coroutine "
            "function with @timeout(seconds)"
        )


def _insert_into_context(exc: BaseException, expired: TimeoutExpired) -> None:
    """Put ``expired`` into ``exc``'s context chain, in place of our interrupt if it is there."""
    link = exc
    for _ in range(100):  # bounded: chains can be cyclic
        context = link.__context__
        if context is None or isinstance(context, _Interrupt):
            expired.__cause__ = expired.__context__ = context
            link.__context__ = expired
            return
        link = context


class _Rare:
    """The fields few scopes need: kept apart, so that armed scopes stay small."""

    __slots__ = (
        "at",
        "cancel_requested",
        "cancelled",
        "edges",
        "exception",
        "exits",
        "on_expire_due",
        "patience",
        "raised_at",
        "renew",
        "report_only",
        "stack",
        "waiting",
    )

    def __init__(self) -> None:
        #: deadline_at(): the deadline on the monotonic clock, fixed before entering.
        self.at: float | None = None
        #: When the main thread's signal handler last raised the interrupt.
        self.raised_at = -math.inf
        #: cancel() was called before the block began / has taken effect.
        self.cancel_requested = False
        self.cancelled = False
        #: The class raised instead of TimeoutExpired (``exception=``).
        self.exception: type[BaseException] | None = None
        #: How often delivery waited for a loop's back-edge, or for an exit (_delivery).
        self.edges = 0
        self.exits = 0
        #: How long delivery waits for a safe landing point (see _sender.Patience).
        self.patience: Patience | None = None
        #: on_expire is to be called at the next expiry.
        self.on_expire_due = False
        #: The entry that sends the interrupt if on_expire has not returned in time.
        self.waiting: Entry | None = None
        #: For a Watchdog: the deadline after the last kick (kicks only store a time;
        #: the monitor looks when the entry comes due), whether expiry only reports,
        #: and where the thread was when it expired.
        self.renew: Callable[[], float] | None = None
        self.report_only = False
        self.stack: tuple[tuple[str, int, str], ...] | None = None


class Deadline(Alarm):
    """A time limit on a block of code in the current thread; made by :func:`deadline`.

    Attributes:
        label: The name reported in TimeoutExpired, or None.
        suppress: Whether the block ends quietly when its time runs out.
    """

    __slots__ = (
        "_ended",
        "_entry",
        "_exit_found",
        "_lasti",
        "_marker",
        "_on_expire",
        "_owner",
        "_rare",
        "_seconds",
        "_started",
        "_state",
        "_thread",
        "_when",
        "label",
        "suppress",
    )

    def __init__(
        self,
        seconds: float | None,
        *,
        suppress: bool = False,
        label: str | None = None,
        on_expire: Callable[[], object] | None = None,
        exception: type[BaseException] | None = None,
    ) -> None:
        self._seconds = seconds
        self._when: float | None = None
        self.label = label
        self.suppress = suppress
        self._on_expire = on_expire
        self._state = _CREATED
        self._thread: ThreadState | None = None
        self._owner: FrameType | None = None
        self._lasti = -1
        self._marker: Marker = None
        self._entry: Entry | None = None
        # Set only without a limit: otherwise the start is when - seconds, and
        # one float less per armed scope keeps 10,000 of them under 300 bytes.
        self._started: float | None = None
        self._ended: float | None = None
        self._exit_found: _State | None = None
        # What few scopes need lives apart, to keep armed scopes small.
        self._rare: _Rare | None = None
        if on_expire is not None:
            self._rarely().on_expire_due = True
        if exception is not None:
            self._rarely().exception = exception

    # --- public view --------------------------------------------------------

    @property
    def seconds(self) -> float | None:
        """The limit in seconds from entering the block, or None for no limit."""
        return self._seconds

    @property
    def when(self) -> float | None:
        """The deadline on the ``time.monotonic()`` clock, or None (also before entering)."""
        return self._when

    @property
    def expired(self) -> bool:
        """Whether the block was ended by this deadline (TimeoutExpired raised or suppressed)."""
        return self._state is _EXPIRED

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` took effect (before the block ended)."""
        return self._rare is not None and self._rare.cancelled

    @property
    def remaining(self) -> float | None:
        """Seconds left (0.0 once passed), or None without a limit."""
        if self._state is _CREATED:
            return self._seconds
        if self._when is None:
            return None
        return max(0.0, self._when - clock())

    @property
    def elapsed(self) -> float:
        """Seconds since the block was entered (until it ended); 0.0 before."""
        if self._state is _CREATED:
            return 0.0
        end = self._ended if self._ended is not None else clock()
        return end - self._start_time()

    @property
    def owner_ident(self) -> int | None:
        """The ident of the thread that entered the scope (for the monitor's fork handling)."""
        return None if self._thread is None else self._thread.ident

    def __repr__(self) -> str:
        parts = [f"<Deadline [{self._state.value}]", f"seconds={self.seconds!r}"]
        if self._state in (_ACTIVE, _EXPIRING):
            left = self.remaining
            parts.append(f"remaining={left:.4g}" if left is not None else "remaining=None")
        if self.label is not None:
            parts.append(f"label={self.label!r}")
        return " ".join(parts) + ">"

    # --- the with-statement -----------------------------------------------------

    @protect
    def __enter__(self) -> Deadline:
        if self._state is not _CREATED:
            raise RuntimeError(f"Deadline cannot be entered twice: it is {self._state.value}")
        caller = sys._getframe(1)
        owner = with_frame(caller, PASS_THROUGH)
        _refuse_coroutine(owner or caller)
        state = current_state()
        retire_left(state, caller, entering=True)  # scopes whose exit was skipped
        self._thread = state
        self._owner = owner
        if owner is not None:
            self._lasti = owner.f_lasti
            self._marker = marker_at_enter(owner)
        now = clock()
        at = self._rare.at if self._rare is not None else None
        if at is not None:  # deadline_at(): the limit is what is left of it now
            self._when = at
            self._seconds = max(0.0, at - now)
            if at < now:
                self._started = now
        elif self._seconds is not None:
            self._when = now + self._seconds
        else:
            self._started = now
        try:
            with monitor.lock:
                if self._when is not None:
                    self._entry = monitor.schedule(self._when, self)
                scopes = state.scopes
                while scopes and scopes[-1]._state is _FINISHED:
                    scopes.pop()  # left behind by an exit that an exception cut short
                scopes.append(self)
                self._state = _ACTIVE
                if self._rare is not None and self._rare.cancel_requested:
                    self._cancel_locked()  # cancelled before it began: ends at once
        except BaseException:
            self._discard()
            self._state = _CREATED
            raise
        return self

    @protect
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        try:  # first: 3.9/3.10 never deliver an interrupt just before a try
            before = self._finish(None)
        except _Interrupt as landed:
            # Sent as the block ended and delivered here, in the exit itself (on
            # 3.9 the monitor can lose the GIL between looking and sending): it is
            # spent, and an outer scope's interrupt is sent again.
            before = self._finish(landed)
        if before is _EXPIRED:
            late = self._late_exit(exc)
            if late is not None:
                if self.suppress:
                    return True
                if late is exc:
                    return False
                raise late
        if before is not _ACTIVE and before is not _EXPIRING:
            raise RuntimeError(f"Deadline cannot be exited: it is {before.value}")
        if isinstance(exc, _Interrupt):
            tagged = exc.scope
            if tagged is not self:
                if isinstance(tagged, Deadline) and tagged._died_inside(self._thread):
                    if tagged.cancelled:
                        return True  # its block, inside this one, ended: quietly
                    tagged._raise_expired(exc, stopped=getattr(exc, "stopped", True))
                return False  # an outer scope's (or another thread's) interrupt
            if before is _EXPIRING:
                return self._expire_with(exc)
            return False
        if self.cancelled:
            self._state = _CANCELLED
            return False  # ended before the cancellation landed, or with its own error
        on_expire_ran = self._on_expire is not None and not self._rarely().on_expire_due
        if exc is None:
            # Ended before the interrupt landed: no timeout, unless on_expire acted
            # on the block (it ended because its call was unblocked).
            return self._expire_with(None) if on_expire_ran else False
        if before is _EXPIRING or on_expire_ran:
            # The limit ran out and the block ended with its own error (cleanup that
            # raised, a C call unblocked by on_expire failing): that error goes on,
            # with the TimeoutExpired in its context chain (as asyncio.timeout does).
            self._state = _EXPIRED
            _insert_into_context(exc, self._timeout_expired())
        return False

    def _expire_with(self, cause: BaseException | None) -> bool:
        """End the block as expired: TimeoutExpired from ``cause``, or nothing if suppressed.

        A cancelled scope ends quietly.
        """
        if self.cancelled:
            self._state = _CANCELLED
            return True
        self._state = _EXPIRED
        if self.suppress:
            return True
        self._raise_expired(cause, stopped=getattr(cause, "stopped", True))
        return False  # not reached

    def _raise_expired(self, cause: BaseException | None, stopped: bool = True) -> None:
        """Raise TimeoutExpired from ``cause``, or the chosen ``exception=`` from it."""
        expired = self._timeout_expired(stopped)
        chosen = self._rare.exception if self._rare is not None else None
        if chosen is None:
            raise expired from cause
        expired.__cause__ = cause
        expired.__suppress_context__ = True
        raise chosen(str(expired)) from expired

    # --- bookkeeping (monitor.lock held unless said otherwise) -----------------

    @protect
    def _finish(self, landed: _Interrupt | None) -> _State:
        """Leave the active states, once; return the state the exit found.

        Takes the lock itself. ``landed``: an interrupt that landed in a first
        attempt, which this one completes.
        """
        state = self._thread
        with monitor.lock:
            # First, before any check point can let a pending interrupt through.
            try:
                withdrawn = state is not None and withdraw_pending(state)
            except _Interrupt:
                withdrawn = True  # it landed an instant before: the same outcome
            before = self._exit_found
            if before is None or landed is None:
                before = self._state
                if before is _ACTIVE or before is _EXPIRING:
                    if state is not existing_state():
                        raise RuntimeError(
                            "Deadline must be exited in the thread that entered it "
                            f"({state.thread.name if state else None!r})"
                        )
                    self._exit_found = before
                    self._state = _FINISHED
                    try:
                        self._ended = clock()
                    finally:  # an exception from elsewhere must not leave it registered
                        self._leave(state)
            else:
                self._leave(state)  # idempotent: complete what the first attempt began
            if state is not None and (
                withdrawn or (landed is not None and landed.scope is not self)
            ):
                resend_expiring(state)
        return before

    def _leave(self, state: ThreadState | None) -> None:
        if self._entry is not None:
            monitor.cancel(self._entry)
            self._entry = None
        if state is None:
            return
        scopes = state.scopes
        if scopes and scopes[-1] is self:  # the innermost: the common case, O(1)
            index = len(scopes) - 1
            scopes.pop()
        elif self in scopes:
            # Scopes entered after this one are still open: their exit never ran
            # (an interrupt skipped it) unless a suspended generator holds them.
            index = scopes.index(self)
            for inner in scopes[index + 1 :]:
                owner = inner._owner
                if owner is None or not is_generator(owner.f_code):
                    inner._forget(state)
            scopes.remove(self)
        else:
            return
        # Shields entered inside the block and never exited (an exception landed on
        # their exit's first instruction) are retired with it.
        shields = state.shields
        while shields and shields[-1]._depth > index:
            shields.pop()

    def _forget(self, state: ThreadState) -> None:
        # A scope whose block was left without its exit: never deliver to it.
        if self._state is _ACTIVE or self._state is _EXPIRING:
            self._state = _FINISHED
            self._ended = clock()
        if self._entry is not None:
            monitor.cancel(self._entry)
            self._entry = None
        if self in state.scopes:
            state.scopes.remove(self)

    def _died_inside(self, state: ThreadState | None) -> bool:
        """Whether this scope was skipped by its own interrupt inside ``state``'s thread."""
        if self._thread is not state or self._state is _EXPIRED or self._state is _CANCELLED:
            return False
        if state is not None and self in state.scopes:
            return False  # still open: an outer scope of the one exiting
        self._state = _CANCELLED if self.cancelled else _EXPIRED
        return True

    def _rearm(self, when: float) -> None:
        if self._entry is not None:
            monitor.cancel(self._entry)
        self._entry = monitor.schedule(when, self)

    @protect
    def _discard(self) -> None:
        """Forget a scope that can never be delivered to (its block was left)."""
        with monitor.lock:
            self._discard_locked()

    @protect
    def _discard_locked(self) -> None:
        if self._thread is not None:
            self._forget(self._thread)

    def _start_time(self) -> float:
        """When the block was entered (on the monitor's clock)."""
        if self._started is not None:
            return self._started
        assert self._when is not None
        assert self._seconds is not None
        return self._when - self._seconds

    def _rarely(self) -> _Rare:
        rare = self._rare
        if rare is None:
            rare = self._rare = _Rare()
        return rare

    def _is_expiring(self) -> bool:
        return self._state is _EXPIRING

    def _is_open(self) -> bool:
        return self._state is _ACTIVE or self._state is _EXPIRING

    def alarm(self, now: float) -> Callable[[], None] | None:
        """Called by the monitor, with its lock held, when the entry's time comes."""
        self._entry = None
        if self._state is _FINISHED or self._state is _EXPIRED or self._state is _CANCELLED:
            if self._thread is not None and self in self._thread.scopes:
                self._thread.scopes.remove(self)  # an exit cut short by an exception
            return None
        if self._state is _ACTIVE:
            rare = self._rare
            if rare is not None:
                if rare.renew is not None:
                    when = rare.renew()
                    if when > now:  # kicked meanwhile: wait for the new deadline
                        self._entry = monitor.schedule(when, self)
                        return None
                    rare.stack = stack_of(self)
                if rare.report_only:
                    return self._report
                if rare.on_expire_due:
                    rare.on_expire_due = False
                    # on_expire runs in a thread of its own; the interrupt follows
                    # when it returns, or at this entry if it has not by then.
                    self._entry = rare.waiting = monitor.schedule(now + ON_EXPIRE_WAIT, self)
                    return self._run_on_expire
            self._state = _EXPIRING
        elif self._state is not _EXPIRING:
            return None
        delay = deliver(self, now)
        if delay is None:
            if self._thread is not None:
                self._forget(self._thread)
        else:
            self._entry = monitor.schedule(now + delay, self)
        return None

    def _run_on_expire(self) -> None:
        # In the monitor thread, without the lock: the user's callback, then the
        # interrupt, unless the scope was rescheduled or ended meanwhile.
        self._call_on_expire()
        with monitor.lock:
            waiting = self._rarely().waiting
            if self._state is not _ACTIVE or self._entry is not waiting or waiting is None:
                return  # rescheduled or ended meanwhile, or the wait ran out
            monitor.cancel(waiting)
            self._entry = self._rarely().waiting = None
            renew = self._rarely().renew
            if renew is not None and renew() > clock():
                self._entry = monitor.schedule(renew(), self)  # kicked in time
                self._rarely().on_expire_due = True
                return
            self._state = _EXPIRING
            state = self._thread
            grace = 0.0 if state is not None and state.is_main else ON_EXPIRE_GRACE
            self._entry = monitor.schedule(clock() + grace, self)

    def _call_on_expire(self) -> None:
        """Call on_expire, if any, in the monitor thread; log what it raises."""
        if self._on_expire is not None:
            try:
                self._on_expire()
            except BaseException:
                logger.exception("watchdog_timeout: on_expire of %r raised", self)

    def _report_stuck(self) -> None:
        """Report-only expiry, in the monitor thread: log where the thread is, call on_expire."""
        stack = self._rarely().stack
        where = describe_stack(stack) if stack else "an unknown place"
        logger.warning(
            "watchdog_timeout: %s not kicked for %s seconds; the thread is in %s",
            self._name(),
            f"{self._seconds:g}" if self._seconds is not None else "?",
            where,
        )
        self._call_on_expire()

    def _report(self) -> None:
        # Report, then look again one period later.
        self._report_stuck()
        with monitor.lock:
            if self._state is _ACTIVE and self._entry is None and self._seconds is not None:
                self._entry = monitor.schedule(clock() + self._seconds, self)

    @protect
    def _exit_late(self, cause: BaseException | None) -> BaseException:
        """Finish the exit for an interrupt that landed after the block ended.

        Runs in the scope's own thread from the delivery hook: ``__exit__`` will not
        run. Returns the exception to raise in place of the interrupt.
        """
        state = self._thread

        def finish() -> None:
            if self._state is _EXPIRING:
                self._state = _EXPIRED
                self._ended = clock()
                self._leave(state)

        # Bounded: never wait for a lock this thread might hold.
        if not monitor.if_free(finish, timeout=0.1) and self._state is _EXPIRING:
            # This thread holds the lock (the hook ran inside our bookkeeping): the
            # monitor's next look at an expired scope takes it off the thread.
            self._state = _EXPIRED
            self._ended = clock()
        late = _LateTimeoutExpired(
            self.seconds, elapsed=self.elapsed, name=self._name(), stopped=True
        )
        late.__cause__ = cause
        late.finished = self
        return late

    @protect
    def _late_exit(self, exc: BaseException | None) -> BaseException | None:
        """The late TimeoutExpired of this scope, if a finalizer swallowed it.

        Then ``_exit_late`` finished the scope, but the block went on: its exit runs
        after all, with that exception on its way (raised again at the next check
        point) or still pending.
        """
        state = self._thread
        late = exc if isinstance(exc, _LateTimeoutExpired) else None
        if late is None and state is not None:
            late = state.late
        if late is None or late.finished is not self:
            return None
        if state is not None and state.late is late:
            state.late = None
        return late

    def _name(self) -> str:
        return self.label if self.label is not None else "deadline()"

    def _timeout_expired(self, stopped: bool = True) -> TimeoutExpired:
        return TimeoutExpired(
            self.seconds,
            elapsed=self.elapsed,
            name=self._name(),
            stopped=stopped,
            stack=self._rare.stack if self._rare is not None else None,
        )

    def cancel(self) -> None:
        """Interrupt the block now and end it quietly at its scope; from any thread.

        The interrupt follows the same rules as an expiry (never into this library's
        own bookkeeping, again every 50 ms while the block runs); where the block ends,
        no exception leaves the ``with`` and :attr:`cancelled` is True. Called before
        the block begins, the block ends as soon as it begins; after it ended, or
        twice, nothing happens (trio's ``CancelScope.cancel()``).
        """
        with monitor.lock:
            if self._state is _CREATED:
                self._rarely().cancel_requested = True
            elif self._state is _ACTIVE:
                self._cancel_locked()

    def _cancel_locked(self) -> None:
        rare = self._rarely()
        rare.cancelled = True
        rare.on_expire_due = False
        self._state = _EXPIRING
        self._rearm(clock())

    @protect
    def _expire_now(self) -> None:
        """Send the interrupt now, as if the time were up (a caller's Ctrl-C)."""
        with monitor.lock:
            if self._state is _ACTIVE:
                self._state = _EXPIRING
                if self._rare is not None:
                    self._rare.on_expire_due = False
                self._rearm(clock())

    # --- rescheduling ----------------------------------------------------------

    @protect
    def reschedule(self, seconds: Seconds) -> None:
        """Move the deadline to ``seconds`` from now (None: no limit).

        Allowed before the block is entered and while it runs, until the interrupt
        has been sent.

        Raises:
            RuntimeError: The deadline has expired or its block has ended.
        """
        checked = check_seconds(seconds)
        with monitor.lock:
            state = self._state
            if state is _CREATED:
                self._seconds = checked
                return
            if state is not _ACTIVE:
                raise RuntimeError(f"Deadline cannot be rescheduled: it is {state.value}")
            if self._entry is not None:
                monitor.cancel(self._entry)
                self._entry = None
            if self._on_expire is not None:
                self._rarely().on_expire_due = True
            started = self._start_time()
            if checked is None:
                self._started = started
                self._when = self._seconds = None
            else:
                now = clock()
                self._started = None
                self._when = now + checked
                self._seconds = (now - started) + checked
                self._entry = monitor.schedule(self._when, self)


def deadline(
    seconds: Seconds,
    *,
    suppress: bool = False,
    label: str | None = None,
    on_expire: Callable[[], object] | None = None,
    exception: type[BaseException] | None = None,
) -> Deadline:
    """Interrupt the current thread if the ``with`` block takes longer than ``seconds``.

    The interrupt is a private ``BaseException`` (``except Exception:`` cannot
    swallow it), sent again every 50 ms while the block runs; where the block ends
    it becomes :class:`TimeoutExpired` (or nothing, with ``suppress=True``).
    Nested deadlines compose: the earliest wins and the one whose time ran out
    reports. A ``Deadline`` can be entered once.

    What can be interrupted: Python code, in any thread. In the main thread also
    blocking calls that a signal interrupts (``time.sleep``, ``Event.wait``,
    ``Lock.acquire``, ``queue.get``, sockets, ``select``): the monitor sends the
    main thread a real-time signal (``SIGRTMAX - 2``; ``WATCHDOG_TIMEOUT_SIGNAL``
    chooses another, ``0`` none) if the application has not claimed it. In other
    threads a blocking call ends only when it returns (then the interrupt is
    raised); pass ``on_expire`` to unblock it, or a native timeout from
    :func:`remaining`. C code that never returns to Python cannot be interrupted
    in any thread: use ``@timeout(isolation="process")``.

    Example:
        >>> with deadline(0.5, label="fetch") as scope:  # doctest: +SKIP
        ...     fetch_all()

    Args:
        seconds: The limit, from entering the block: a non-negative number; 0
            expires at once; None or ``inf`` means no limit.
        suppress: End the block quietly on expiry instead of raising; then
            ``scope.expired`` tells.
        label: A name for the block, used in TimeoutExpired.
        on_expire: Called once, without arguments, in a thread of its own when the
            time is up, before the interrupt is sent (which follows when it returns,
            or a second later); for unblocking C calls
            (``conn.interrupt`` for sqlite3, ``sock.close``, ``proc.kill``). If
            the block then fails with its own error, that error goes on, with a
            TimeoutExpired in its context chain (as under ``asyncio.timeout``).
        exception: An exception class raised instead of TimeoutExpired, with the
            same message and ``from`` the TimeoutExpired (whose fields stay
            reachable as ``__cause__``).

    Returns:
        The :class:`Deadline`, for ``with ... as scope``.

    Raises:
        TypeError: ``seconds`` is not a number (``bool`` and ``str`` included), or
            ``on_expire`` is not callable.
        ValueError: ``seconds`` is negative or NaN.
    """
    check_callback(on_expire)
    return Deadline(
        check_seconds(seconds),
        suppress=suppress,
        label=label,
        on_expire=on_expire,
        exception=check_exception_class(exception),
    )


def deadline_at(
    when: Seconds,
    *,
    suppress: bool = False,
    label: str | None = None,
    on_expire: Callable[[], object] | None = None,
    exception: type[BaseException] | None = None,
) -> Deadline:
    """As :func:`deadline`, with an absolute deadline on the ``time.monotonic()`` clock.

    For one deadline shared by several steps (asyncio's ``timeout_at``, trio's
    ``fail_at``): ``scope.when`` is ``when``; ``scope.seconds`` is what was left of
    it when the block began (0 if it had passed: the block is then interrupted at
    once).

    Example:
        >>> end = time.monotonic() + 5.0  # doctest: +SKIP
        >>> with deadline_at(end):  # doctest: +SKIP
        ...     step_one()
        >>> with deadline_at(end):  # doctest: +SKIP
        ...     step_two()  # the time step_one() left

    Args:
        when: A time on the ``time.monotonic()`` clock; None or ``inf``: no limit.
        suppress: As for :func:`deadline`.
        label: As for :func:`deadline`.
        on_expire: As for :func:`deadline`.
        exception: As for :func:`deadline`.

    Returns:
        The :class:`Deadline`, for ``with ... as scope``.

    Raises:
        TypeError: ``when`` is not a number, ``on_expire`` is not callable, or
            ``exception`` is not an exception class.
        ValueError: ``when`` is NaN.
    """
    check_callback(on_expire)
    scope = Deadline(
        None,
        suppress=suppress,
        label=label,
        on_expire=on_expire,
        exception=check_exception_class(exception),
    )
    at = check_when(when)
    if at is not None:
        scope._rarely().at = at
        scope._seconds = max(0.0, at - clock())  # for repr and remaining before entering
    return scope


def check_callback(on_expire: object) -> None:
    """Refuse an ``on_expire`` that is not callable, naming it."""
    if on_expire is not None and not callable(on_expire):
        raise TypeError(f"`on_expire` must be callable or None, got {on_expire!r}")


def check_exception_class(exception: object) -> type[BaseException] | None:
    """Return ``exception`` if it is an exception class (or None); else TypeError naming it."""
    if exception is None or (isinstance(exception, type) and issubclass(exception, BaseException)):
        return exception
    hint = (
        f": pass {type(exception).__name__} itself" if isinstance(exception, BaseException) else ""
    )
    raise TypeError(f"`exception` must be an exception class, got {exception!r}{hint}")


def remaining() -> float | None:
    """Seconds left before the innermost effective deadline of the current thread.

    The minimum over the thread's open deadlines (and, in ``@timeout`` workers,
    those of the caller), 0.0 once passed, or None when none has a limit. For
    handing a native timeout to a blocking call: ``sock.settimeout(remaining())``.
    """
    link = existing_state()
    if link is not None:
        retire_left(link, sys._getframe(1))
    earliest: float | None = None
    while link is not None:
        for scope in tuple(link.scopes):
            when = scope._when
            if scope._state is not _ACTIVE and scope._state is not _EXPIRING:
                continue
            if when is not None and (earliest is None or when < earliest):
                earliest = when
        link = link.parent
    if earliest is None:
        return None
    return max(0.0, earliest - clock())
