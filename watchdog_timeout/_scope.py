"""``Deadline``: a scope's ``with`` block, from the thread that runs it.

Design notes
------------
The states and the monitor's side are in ``_armed``; this is the scope's own
thread: entering the block, leaving it, and what leaves the ``with`` (nothing,
TimeoutExpired, or the block's own error with TimeoutExpired in its context).

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
it into TimeoutExpired; an inner scope lets an outer one's interrupt pass.

An interrupt can also arrive from elsewhere (KeyboardInterrupt, another
``async_raise``) at any point of ``__enter__``/``__exit__``: they register and arm
first and mark the state last, and roll back what they did if interrupted; what
an exception cut short is completed by the next exit attempt (``_finish`` is
idempotent) or retired where the thread next uses the library
(``_registry.retire_left``).
"""

from __future__ import annotations

import sys
from types import CodeType, FrameType, TracebackType
from typing import Callable

from ._armed import (
    ACTIVE,
    CANCELLED,
    CREATED,
    EXPIRED,
    EXPIRING,
    FINISHED,
    RETIRED,
    ArmedScope,
    State,
)
from ._errors import TimeoutExpired, _Interrupt, _LateTimeoutExpired
from ._frames import marker_at_enter, user_frame, with_frame
from ._monitor import monitor
from ._registry import (
    ThreadState,
    current_state,
    existing_state,
    resend_expiring,
    retire_left,
    withdraw_pending,
)
from ._seconds import Seconds, check_seconds, clock
from ._sender import protect

__all__ = ("PASS_THROUGH", "Deadline")


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


class Deadline(ArmedScope):
    """A time limit on a block of code in the current thread; made by `deadline`.

    Attributes:
        label: The name reported in TimeoutExpired, or None.
        suppress: Whether the block ends quietly when its time runs out.
    """

    __slots__ = ()

    def __init__(
        self,
        seconds: float | None,
        *,
        suppress: bool = False,
        label: str | None = None,
        on_expire: Callable[[], object] | None = None,
        exception: type[BaseException] | None = None,
    ) -> None:
        super().__init__(seconds, label, suppress, on_expire, exception)

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
        return self._state is EXPIRED

    @property
    def cancelled(self) -> bool:
        """Whether `cancel` took effect (before the block ended)."""
        return self._rare is not None and self._rare.cancelled

    @property
    def remaining(self) -> float | None:
        """Seconds left (0.0 once passed), or None without a limit."""
        if self._state is CREATED:
            return self._seconds
        if self._when is None:
            return None
        return max(0.0, self._when - clock())

    @property
    def elapsed(self) -> float:
        """Seconds since the block was entered (until it ended); 0.0 before."""
        return self._elapsed()

    @property
    def owner_ident(self) -> int | None:
        """The ident of the thread that entered the scope (for the monitor's fork handling)."""
        return None if self._thread is None else self._thread.ident

    def __repr__(self) -> str:
        parts = [f"<Deadline [{self._state.value}]", f"seconds={self.seconds!r}"]
        if self._state in (ACTIVE, EXPIRING):
            left = self.remaining
            parts.append(f"remaining={left:.4g}" if left is not None else "remaining=None")
        if self.label is not None:
            parts.append(f"label={self.label!r}")
        return " ".join(parts) + ">"

    # --- the with-statement -----------------------------------------------------

    @protect
    def __enter__(self) -> Deadline:
        if self._state is not CREATED:
            raise RuntimeError(f"Deadline cannot be entered twice: it is {self._state.value}")
        monitor.release_leaked()  # (an exception from elsewhere, on 3.9)
        caller = sys._getframe(1)
        owner = with_frame(caller, PASS_THROUGH)
        _refuse_coroutine(owner or user_frame(caller, PASS_THROUGH))
        state = current_state()
        retire_left(state, caller, entering=True)  # scopes whose exit was skipped
        state.wakeups = 0  # it runs Python: signals sent before were answered, or moot
        self._thread = state
        self._owner = owner
        if owner is not None:
            self._lasti = owner.f_lasti
            self._marker = marker_at_enter(owner)
        now = clock()
        rare = self._rare
        at = rare.at if rare is not None else None
        if rare is not None and rare.began is not None and self._seconds is not None:
            self._when = rare.began + self._seconds  # its start: when - seconds
        elif at is not None:  # deadline_at(): the limit is what is left of it now
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
                while scopes and scopes[-1]._state is FINISHED:
                    scopes.pop()  # left behind by an exit that an exception cut short
                scopes.append(self)
                self._state = ACTIVE
                if self._rare is not None and self._rare.cancel_requested:
                    self._cancel_locked()  # cancelled before it began: ends at once
        except BaseException:
            self._discard()
            self._state = CREATED
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
        if before is EXPIRED:
            late = self._late_exit(exc)
            if late is not None:
                if self.suppress:
                    return True
                if late is exc:
                    return False
                raise late
        if before is not ACTIVE and before is not EXPIRING:
            raise RuntimeError(f"Deadline cannot be exited: it is {before.value}")
        if isinstance(exc, _Interrupt):
            tagged = exc.scope
            if tagged is not self:
                if isinstance(tagged, Deadline) and tagged._died_inside(self._thread):
                    if tagged.cancelled:
                        return True  # its block, inside this one, ended: quietly
                    tagged._raise_expired(exc, stopped=getattr(exc, "stopped", True))
                return False  # an outer scope's (or another thread's) interrupt
            if before is EXPIRING:
                return self._expire_with(exc)
            return False
        if self.cancelled:
            self._state = CANCELLED
            return False  # ended before the cancellation landed, or with its own error
        on_expire_ran = self._on_expire is not None and not self._rarely().on_expire_due
        if exc is None:
            # Ended before the interrupt landed: no timeout, unless on_expire acted
            # on the block (it ended because its call was unblocked).
            return self._expire_with(None) if on_expire_ran else False
        if before is EXPIRING or on_expire_ran:
            # The limit ran out and the block ended with its own error (cleanup that
            # raised, a C call unblocked by on_expire failing): that error goes on,
            # with the TimeoutExpired in its context chain (as asyncio.timeout does).
            self._state = EXPIRED
            _insert_into_context(exc, self._timeout_expired())
        return False

    def _expire_with(self, cause: BaseException | None) -> bool:
        """End the block as expired: TimeoutExpired from ``cause``, or nothing if suppressed.

        A cancelled scope ends quietly.
        """
        if self.cancelled:
            self._state = CANCELLED
            return True
        self._state = EXPIRED
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
    def _finish(self, landed: _Interrupt | None) -> State:
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
                if before is RETIRED:  # judged left, wrongly: the exit is the fact
                    before = self._rarely().retired_from or FINISHED
                if before is ACTIVE or before is EXPIRING:
                    if state is not existing_state():
                        raise RuntimeError(
                            "Deadline must be exited in the thread that entered it "
                            f"({state.thread.name if state else None!r})"
                        )
                    self._exit_found = before
                    self._state = FINISHED
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

    def _died_inside(self, state: ThreadState | None) -> bool:
        """Whether this scope was skipped by its own interrupt inside ``state``'s thread."""
        if self._thread is not state or self._state is EXPIRED or self._state is CANCELLED:
            return False
        if state is not None and self in state.scopes:
            return False  # still open: an outer scope of the one exiting
        self._state = CANCELLED if self.cancelled else EXPIRED
        return True

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
        no exception leaves the ``with`` and `cancelled` is True. Called before
        the block begins, the block ends as soon as it begins; after it ended, or
        twice, nothing happens (trio's ``CancelScope.cancel()``).
        """
        with monitor.lock:
            if self._state is CREATED:
                self._rarely().cancel_requested = True
            elif self._state is ACTIVE:
                self._cancel_locked()

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
            if state is CREATED:
                self._seconds = checked
                return
            if state is not ACTIVE:
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
