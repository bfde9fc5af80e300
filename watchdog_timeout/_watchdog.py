"""``Watchdog``: interrupt (or report) a thread that stops making progress.

Design notes
------------
Things that don't work:

- Rescheduling a deadline on every kick: a lock, a heap push and an allocation
  per iteration of the loop being watched.
- ``faulthandler.dump_traceback_later``: it prints where every thread is, but
  gives the program nothing to handle.

Solution: a ``Watchdog`` is a ``Deadline`` whose time is renewed lazily: a kick
only stores the time (no lock, no allocation); when the monitor's entry comes
due it compares with the last kick and, if there was one, waits again until
``last kick + seconds``. At expiry the monitor records where the thread is (the
innermost frames) and the ``TimeoutExpired`` carries it (``stack``, and in its
message). ``on_expire`` runs first; a kick during it saves the thread. With
``interrupt=False`` the watchdog only reports: a warning on the
``watchdog_timeout`` logger and ``on_expire``, every ``seconds`` while no kick
comes.

``start()``/``stop()`` watch a thread without a ``with`` block, any thread. There
is no block to turn the interrupt into ``TimeoutExpired``, so the thread is sent
``TimeoutExpired`` itself (a private subclass built without arguments, which
reads the details the monitor recorded for its thread), every 50 ms until a
kick or ``stop()``, never into our bookkeeping nor inside ``shield()``.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, TypeVar

from ._armed import ACTIVE, CREATED, EXPIRING, FINISHED
from ._async_raise import clear_async_exc
from ._bytecode import function_kind
from ._delivery import stack_of, stack_of_thread
from ._errors import TimeoutExpired, describe_stack
from ._late import RESENT, filter_unraisable
from ._monitor import Alarm, logger, monitor
from ._registry import current_state, existing_state, send_guarded
from ._scope import PASS_THROUGH, Deadline
from ._seconds import Seconds, check_seconds, clock
from ._sender import DELIVER, REINJECT, RETRY, Patience, protect

__all__ = ("Watchdog",)

F = TypeVar("F", bound=Callable[..., Any])

#: The watchdog whose expiry a thread is being sent, by thread ident.
_sending: dict[int, Watchdog] = {}


class Watchdog(Deadline):
    """A heartbeat timer: the watched thread is interrupted when ``seconds`` pass without a kick.

    Use it as a ``with`` block around a loop that calls `kick` (the usual
    way), as a decorator (each call is watched; inside, `current` gives the
    watchdog), or with `start` and `stop` to watch any thread.

    Examples:
        >>> with Watchdog(10, label="ingest") as dog:  # doctest: +SKIP
        ...     for item in items:
        ...         process(item)
        ...         dog.kick()

    Args:
        seconds: The longest time allowed between kicks (and before the first).
        on_expire: Called once per expiry, without arguments, in the monitor
            thread, before the interrupt; a kick meanwhile saves the thread.
        label: The name reported in TimeoutExpired and in reports.
        interrupt: False: never interrupt, only report (a warning on the
            ``watchdog_timeout`` logger, and ``on_expire``), for monitoring.

    Attributes:
        kicks: How many times it was kicked.
        longest_gap: The longest time between kicks so far (from the start).
    """

    __slots__ = ("_interrupt", "_last", "_period", "_watch", "kicks", "longest_gap")

    def __init__(
        self,
        seconds: Seconds,
        *,
        on_expire: Callable[[], object] | None = None,
        label: str | None = None,
        interrupt: bool = True,
    ) -> None:
        period = check_seconds(seconds)
        if period is None:
            raise ValueError(f"`seconds` must be a finite number of seconds, got {seconds!r}")
        if on_expire is not None and not callable(on_expire):
            raise TypeError(f"`on_expire` must be callable or None, got {on_expire!r}")
        super().__init__(period, label=label or "watchdog", on_expire=on_expire)
        self._period = period
        self._interrupt = interrupt
        self._last = 0.0
        self._watch: _ThreadWatch | None = None
        self.kicks = 0
        self.longest_gap = 0.0

    def _renewed_until(self) -> float:
        return self._last + self._period

    # --- the monitor's side (its lock held unless said otherwise) ---------------

    def _time_up(self, now: float) -> Callable[[], None] | None:
        when = self._renewed_until()
        if when > now:  # kicked meanwhile: wait for the new deadline
            self._entry = monitor.schedule(when, self)
            return None
        self._rarely().stack = stack_of(self)
        if not self._interrupt:
            return self._report
        return super()._time_up(now)

    def _after_on_expire(self) -> None:
        when = self._renewed_until()
        if when > clock():  # kicked while on_expire ran: the thread is saved
            self._entry = monitor.schedule(when, self)
            self._rarely().on_expire_due = True
            return
        super()._after_on_expire()

    def _interrupts(self) -> bool:
        return self._interrupt

    def _report(self) -> None:
        # In a callback thread: report, then look again one period later.
        self._report_stuck()
        with monitor.lock:
            if self._state is ACTIVE and self._entry is None:
                self._entry = monitor.schedule(clock() + self._period, self)

    def _report_stuck(self) -> None:
        """Report-only expiry: log where the thread is, call on_expire."""
        stack = self._rarely().stack
        where = describe_stack(stack) if stack else "an unknown place"
        logger.warning(
            "watchdog_timeout: %s not kicked for %s seconds; the thread is in %s",
            self._name(),
            f"{self._period:g}",
            where,
        )
        self._call_on_expire()

    @protect
    def __enter__(self) -> Watchdog:
        self._last = clock()
        super().__enter__()
        return self

    def kick(self) -> None:
        """Record progress: the thread has ``seconds`` more from now. Cheap: no lock."""
        state = self._state
        if state is not ACTIVE and state is not EXPIRING:
            raise RuntimeError(f"Watchdog cannot be kicked: it is {state.value}")
        now = clock()
        gap = now - self._last
        self.longest_gap = max(self.longest_gap, gap)
        self._last = now
        self._when = now + self._period  # for remaining(); the monitor renews lazily
        self.kicks += 1

    @classmethod
    def current(cls) -> Watchdog:
        """The innermost watchdog open in the current thread (for decorated functions).

        Raises:
            LookupError: No watchdog watches this thread.
        """
        link = existing_state()
        while link is not None:  # in an @timeout worker, the caller's watchdogs too
            for scope in reversed(link.scopes):
                if isinstance(scope, Watchdog) and scope._is_open():
                    return scope
            link = link.parent
        raise LookupError("no Watchdog watches the current thread")

    def __call__(self, function: F) -> F:
        """Watch every call of ``function`` with a new watchdog of these settings."""
        if function_kind(function) != "plain":
            raise TypeError(
                f"Watchdog cannot watch {function!r}: its body runs later, piece by "
                "piece; use `with Watchdog(...)` around the loop that drives it"
            )
        settings = (self._period, self._on_expire, self.label, self._interrupt)

        @functools.wraps(function)
        def watched(*args: Any, **kwargs: Any) -> Any:
            seconds, on_expire, label, interrupt = settings
            with Watchdog(seconds, on_expire=on_expire, label=label, interrupt=interrupt):
                return function(*args, **kwargs)

        return watched  # type: ignore[return-value]

    # --- watching any thread --------------------------------------------------

    @protect
    def start(self, thread: threading.Thread | None = None) -> Watchdog:
        """Watch ``thread`` (default: the current one) until `stop`.

        At expiry the thread is sent ``TimeoutExpired`` (with ``stack``), again
        every 50 ms until a kick or ``stop()``; with ``interrupt=False`` it is only
        reported.

        Raises:
            RuntimeError: Already started, or used as a ``with`` block.
            ValueError: The thread is not alive.
        """
        target = threading.current_thread() if thread is None else thread
        current_state()  # binds the C functions in this thread, not in the monitor
        if not target.is_alive() or target.ident is None:
            raise ValueError(f"thread {target.name!r} is not alive")
        with monitor.lock:
            if self._watch is not None or self._state is not CREATED:
                raise RuntimeError("Watchdog cannot be started twice, nor while used as a block")
            self._state = ACTIVE
            self._started = self._last = clock()  # start() keeps _when unset
            watch = self._watch = _ThreadWatch(self, target)
            watch.entry = monitor.schedule(self._last + self._period, watch)
        return self

    @protect
    def stop(self) -> None:
        """Stop watching the thread given to `start`."""
        with monitor.lock:
            watch = self._watch
            if watch is None:
                raise RuntimeError("Watchdog.stop() without start()")
            watch.stopped = True
            if watch.pending:
                # Sent an instant ago and not raised yet: it must not land after stop().
                clear_async_exc(watch.ident)
                watch.pending = False
            if watch.entry is not None:
                monitor.cancel(watch.entry)
                watch.entry = None
            self._state = FINISHED
            self._ended = clock()
            _sending.pop(watch.ident, None)


class _ThreadWatch(Alarm):
    """The monitor's entry for a watchdog started on a thread."""

    __slots__ = ("dog", "entry", "expired", "ident", "patience", "pending", "stopped", "thread")

    def __init__(self, dog: Watchdog, thread: threading.Thread) -> None:
        self.dog = dog
        self.thread = thread
        self.ident: int = thread.ident  # type: ignore[assignment]
        self.entry: list[Any] | None = None
        self.stopped = False
        self.patience = Patience(thread.native_id)
        #: A TimeoutExpired was sent and has not been raised yet.
        self.pending = False
        #: on_expire has run for the current expiry (the interrupt is sent again
        #: every REINJECT until a kick; on_expire runs once).
        self.expired = False

    @property
    def owner_ident(self) -> int:
        """The watched thread (after a fork, only the forking thread's entries stay)."""
        return self.ident

    def alarm(self, now: float) -> Callable[[], None] | None:
        self.entry = None
        dog = self.dog
        if self.stopped or not self.thread.is_alive():
            return None
        when = dog._renewed_until()
        if when > now:
            self.expired = False  # kicked: a later expiry calls on_expire again
            self.entry = monitor.schedule(when, self)
            return None
        dog._rarely().stack = stack_of_thread(self.ident)
        return self._expired

    def _expired(self) -> None:
        # In the monitor thread, without the lock: report or call on_expire, then
        # (unless kicked meanwhile) interrupt the thread.
        dog = self.dog
        if not dog._interrupt:
            dog._report_stuck()  # once per period
        elif not self.expired:
            self.expired = True
            dog._call_on_expire()
        with monitor.lock:
            if self.stopped:
                return
            now = clock()
            later = REINJECT if dog._interrupt else dog._period
            if (
                dog._interrupt
                and dog._renewed_until() <= now
                and self.thread.is_alive()  # its ident could be another thread's now
            ):
                _sending[self.ident] = dog
                filter_unraisable()
                if send_guarded(self.ident, _WatchdogTimeoutExpired, self.patience) is DELIVER:
                    self.pending = True
                else:
                    later = RETRY  # our code or an unsafe landing point: look again soon
            self.entry = monitor.schedule(max(now + later, dog._renewed_until()), self)


class _WatchdogTimeoutExpired(TimeoutExpired):
    """Sent to a thread watched with ``start()``; built by the interpreter, without arguments."""

    @protect
    def __init__(self, *args: object) -> None:
        dog = _sending.get(threading.get_ident())
        if dog is not None and dog._watch is not None:
            dog._watch.pending = False  # raised now: nothing left to withdraw
        if dog is None:
            super().__init__(None, name="watchdog")
        else:
            super().__init__(
                dog._period,
                elapsed=clock() - dog._start_time(),
                name=dog._name(),
                stack=dog._rarely().stack,
            )


_WatchdogTimeoutExpired.__name__ = _WatchdogTimeoutExpired.__qualname__ = "TimeoutExpired"
_WatchdogTimeoutExpired.__module__ = "watchdog_timeout"
RESENT.add(_WatchdogTimeoutExpired)

PASS_THROUGH.add(Watchdog.__enter__.__code__)
