"""What a scope is to the monitor: its state, its entry in the schedule, and what
happens when its time comes.

Design notes
------------
States, as in ``asyncio.timeouts``: CREATED -> ACTIVE -> EXPIRING -> EXPIRED, or
-> FINISHED (or CANCELLED). EXPIRING means "the interrupt was sent, the block has
not ended"; EXPIRED means the block ended because of this scope's interrupt. The
monitor changes the state only under its lock; the scope's own thread enters and
leaves the block (``_scope.Deadline``).

RETIRED: frames showed the block left without its exit (an exception landed on the
exit's first instruction), so nothing is delivered to it any more. That is a
judgment from frames, and can be wrong where frames say too little: a thread that
the OS leaves unscheduled between its block and the call of its ``__exit__`` looks
exactly like one whose exit was skipped. The exit is the fact: one that runs after
all finds the state the scope was retired from (``Rare.retired_from``) and ends
the block as usual.

When the time comes (``alarm``, the lock held): ``on_expire`` first, in a thread of
its own, if it is due; then the interrupt, through ``_delivery.deliver``, again
every ``REINJECT`` seconds while the block runs (level-triggered, as in trio), so
that a bare ``except:`` cannot swallow it. A ``Watchdog`` renews its time lazily by
overriding ``_time_up``.
"""

from __future__ import annotations

import enum
import math
from types import FrameType
from typing import Callable

from ._delivery import deliver
from ._errors import _LateTimeoutExpired
from ._frames import Marker, may_come_back
from ._monitor import Alarm, Entry, logger, monitor
from ._registry import ThreadState
from ._seconds import clock
from ._sender import Patience, protect

__all__ = (
    "ACTIVE",
    "CANCELLED",
    "CREATED",
    "EXPIRED",
    "EXPIRING",
    "FINISHED",
    "RETIRED",
    "ArmedScope",
    "Rare",
    "State",
)

#: How soon after ``on_expire`` returns the interrupt follows, in a thread other
#: than the main one: time for a call that ``on_expire`` unblocked to return.
ON_EXPIRE_GRACE = 0.01
#: How long the interrupt waits for ``on_expire`` to return before it is sent anyway.
ON_EXPIRE_WAIT = 1.0


class State(enum.Enum):
    CREATED = "created"
    ACTIVE = "active"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    FINISHED = "finished"
    RETIRED = "retired"


CREATED, ACTIVE, EXPIRING, EXPIRED, CANCELLED, FINISHED, RETIRED = State


class Rare:
    """The fields few scopes need: kept apart, so that armed scopes stay small."""

    __slots__ = (
        "at",
        "began",
        "cancel_requested",
        "cancelled",
        "edges",
        "exception",
        "on_expire_due",
        "outside",
        "patience",
        "raised_at",
        "retired_from",
        "stack",
        "waiting",
    )

    def __init__(self) -> None:
        #: deadline_at(): the deadline on the monotonic clock, fixed before entering.
        self.at: float | None = None
        #: A block that began before its scope was entered (an ``@timeout`` call,
        #: whose limit is armed only once it has passed): the limit counts from then.
        self.began: float | None = None
        #: When the main thread's signal handler last raised the interrupt.
        self.raised_at = -math.inf
        #: cancel() was called before the block began / has taken effect.
        self.cancel_requested = False
        self.cancelled = False
        #: The class raised instead of TimeoutExpired (``exception=``).
        self.exception: type[BaseException] | None = None
        #: How often delivery waited for a loop's back-edge, or saw the frame past
        #: its block (_delivery, _wakeup).
        self.edges = 0
        self.outside = 0
        #: How long delivery waits for a safe landing point (see _sender.Patience).
        self.patience: Patience | None = None
        #: on_expire is to be called at the next expiry.
        self.on_expire_due = False
        #: The entry that sends the interrupt if on_expire has not returned in time.
        self.waiting: Entry | None = None
        #: The state a RETIRED scope was in when it was retired.
        self.retired_from: State | None = None
        #: For a Watchdog: where the thread was when it expired.
        self.stack: tuple[tuple[str, int, str], ...] | None = None


class ArmedScope(Alarm):
    """A scope's state and its monitor side; ``_scope.Deadline`` adds the ``with`` block."""

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
        label: str | None,
        suppress: bool,
        on_expire: Callable[[], object] | None,
        exception: type[BaseException] | None,
    ) -> None:
        self._seconds = seconds
        self._when: float | None = None
        self.label = label
        self.suppress = suppress
        self._on_expire = on_expire
        self._state = CREATED
        self._thread: ThreadState | None = None
        self._owner: FrameType | None = None
        self._lasti = -1
        self._marker: Marker = None
        self._entry: Entry | None = None
        # Set only without a limit: otherwise the start is when - seconds, and
        # one float less per armed scope keeps 10,000 of them under 300 bytes.
        self._started: float | None = None
        self._ended: float | None = None
        self._exit_found: State | None = None
        # What few scopes need lives apart, to keep armed scopes small.
        self._rare: Rare | None = None
        if on_expire is not None:
            self._rarely().on_expire_due = True
        if exception is not None:
            self._rarely().exception = exception

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
                if not may_come_back(inner._owner):
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
        if self._state is ACTIVE or self._state is EXPIRING:
            self._rarely().retired_from = self._state
            self._state = RETIRED
            self._ended = clock()
        if self._entry is not None:
            monitor.cancel(self._entry)
            self._entry = None
        if self in state.scopes:
            state.scopes.remove(self)

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

    def _rarely(self) -> Rare:
        rare = self._rare
        if rare is None:
            rare = self._rare = Rare()
        return rare

    def _is_expiring(self) -> bool:
        return self._state is EXPIRING

    def _is_open(self) -> bool:
        return self._state is ACTIVE or self._state is EXPIRING

    def alarm(self, now: float) -> Callable[[], None] | None:
        """Called by the monitor, with its lock held, when the entry's time comes."""
        self._entry = None
        if self._state is ACTIVE:
            return self._time_up(now)
        if self._state is EXPIRING:
            self._send(now)
        elif self._thread is not None and self in self._thread.scopes:
            self._thread.scopes.remove(self)  # an exit cut short by an exception
        return None

    def _time_up(self, now: float) -> Callable[[], None] | None:
        """The time is up: on_expire first, if it is due, else the interrupt."""
        rare = self._rare
        if rare is not None and rare.on_expire_due:
            rare.on_expire_due = False
            # on_expire runs in a thread of its own; the interrupt follows when it
            # returns, or at this entry if it has not by then.
            self._entry = rare.waiting = monitor.schedule(now + ON_EXPIRE_WAIT, self)
            return self._run_on_expire
        self._state = EXPIRING
        self._send(now)
        return None

    def _send(self, now: float) -> None:
        delay = deliver(self, now)
        if delay is None:
            if self._thread is not None:
                self._forget(self._thread)
        else:
            self._entry = monitor.schedule(now + delay, self)

    def _run_on_expire(self) -> None:
        # In a callback thread, without the lock: the user's callback, then the
        # interrupt, unless the scope was rescheduled or ended meanwhile.
        self._call_on_expire()
        with monitor.lock:
            waiting = self._rarely().waiting
            if self._state is not ACTIVE or self._entry is not waiting or waiting is None:
                return  # rescheduled or ended meanwhile, or the wait ran out
            monitor.cancel(waiting)
            self._entry = self._rarely().waiting = None
            self._after_on_expire()

    def _after_on_expire(self) -> None:
        """on_expire has returned: the interrupt follows (the lock is held)."""
        self._state = EXPIRING
        state = self._thread
        grace = 0.0 if state is not None and state.is_main else ON_EXPIRE_GRACE
        self._entry = monitor.schedule(clock() + grace, self)

    def _interrupts(self) -> bool:
        """Whether expiry interrupts the block (a reporting Watchdog's does not)."""
        return True

    def _call_on_expire(self) -> None:
        """Call on_expire, if any, in the monitor thread; log what it raises."""
        if self._on_expire is not None:
            try:
                self._on_expire()
            except BaseException:
                logger.exception("watchdog_timeout: on_expire of %r raised", self)

    def _name(self) -> str:
        return self.label if self.label is not None else "deadline()"

    def _cancel_locked(self) -> None:
        rare = self._rarely()
        rare.cancelled = True
        rare.on_expire_due = False
        self._state = EXPIRING
        self._rearm(clock())

    @protect
    def _expire_now(self) -> None:
        """Send the interrupt now, as if the time were up (a caller's Ctrl-C)."""
        with monitor.lock:
            if self._state is ACTIVE:
                self._state = EXPIRING
                if self._rare is not None:
                    self._rare.on_expire_due = False
                self._rearm(clock())

    def _elapsed(self) -> float:
        if self._state is CREATED:
            return 0.0
        end = self._ended if self._ended is not None else clock()
        return end - self._start_time()

    @protect
    def _exit_late(self, cause: BaseException | None) -> BaseException:
        """Finish the exit for an interrupt that landed after the block ended.

        Runs in the scope's own thread from the delivery hook: ``__exit__`` will not
        run. Returns the exception to raise in place of the interrupt.
        """
        state = self._thread

        def finish() -> None:
            if self._state is EXPIRING:
                self._state = EXPIRED
                self._ended = clock()
                self._leave(state)

        # Bounded: never wait for a lock this thread might hold.
        if not monitor.if_free(finish, timeout=0.1) and self._state is EXPIRING:
            # This thread holds the lock (the hook ran inside our bookkeeping): the
            # monitor's next look at an expired scope takes it off the thread.
            self._state = EXPIRED
            self._ended = clock()
        late = _LateTimeoutExpired(
            self._seconds, elapsed=self._elapsed(), name=self._name(), stopped=True
        )
        late.__cause__ = cause
        late.finished = self
        return late
