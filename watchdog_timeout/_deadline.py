"""``deadline()``, ``deadline_at()`` and ``remaining()``: the public ways to limit a block.

The scope they make is ``_scope.Deadline``; the checks of their arguments are shared
with ``@timeout``.
"""

from __future__ import annotations

import sys
from typing import Callable

from ._monitor import monitor
from ._registry import earliest_when, existing_state, retire_left
from ._scope import Deadline
from ._seconds import Seconds, check_seconds, check_when, clock

__all__ = ("check_callback", "check_exception_class", "deadline", "deadline_at", "remaining")


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
    it becomes `TimeoutExpired` (or nothing, with ``suppress=True``).
    Nested deadlines compose: the earliest wins and the one whose time ran out
    reports. A ``Deadline`` can be entered once.

    What can be interrupted: Python code, in any thread. In the main thread also
    blocking calls that a signal interrupts (``time.sleep``, ``Event.wait``,
    ``Lock.acquire``, ``queue.get``, sockets, ``select``): the monitor sends the
    main thread a real-time signal (``SIGRTMAX - 2``; ``WATCHDOG_TIMEOUT_SIGNAL``
    chooses another, ``0`` none) if the application has not claimed it. In other
    threads a blocking call ends only when it returns (then the interrupt is
    raised); pass ``on_expire`` to unblock it, or a native timeout from
    `remaining`. C code that never returns to Python cannot be interrupted
    in any thread: use ``@timeout(isolation="process")``.

    Examples:
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
        The `Deadline`, for ``with ... as scope``.

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
    """As `deadline`, with an absolute deadline on the ``time.monotonic()`` clock.

    For one deadline shared by several steps (asyncio's ``timeout_at``, trio's
    ``fail_at``): ``scope.when`` is ``when``; ``scope.seconds`` is what was left of
    it when the block began (0 if it had passed: the block is then interrupted at
    once).

    Examples:
        >>> end = time.monotonic() + 5.0  # doctest: +SKIP
        >>> with deadline_at(end):  # doctest: +SKIP
        ...     step_one()
        >>> with deadline_at(end):  # doctest: +SKIP
        ...     step_two()  # the time step_one() left

    Args:
        when: A time on the ``time.monotonic()`` clock; None or ``inf``: no limit.
        suppress: As for `deadline`.
        label: As for `deadline`.
        on_expire: As for `deadline`.
        exception: As for `deadline`.

    Returns:
        The `Deadline`, for ``with ... as scope``.

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
    the call's own limit and the caller's deadlines), 0.0 once passed, or None when
    none has a limit. For
    handing a native timeout to a blocking call: ``sock.settimeout(remaining())``.
    """
    monitor.release_leaked()  # (an exception from elsewhere, on 3.9/3.10)
    link = existing_state()
    if link is not None:
        retire_left(link, sys._getframe(1))
    earliest = earliest_when(link) if link is not None else None
    if earliest is None:
        return None
    return max(0.0, earliest - clock())
