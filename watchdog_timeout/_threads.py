"""Stopping threads: ``StoppableThread`` (ask, then insist) and ``stop_thread``.

Design notes
------------
The classic recipe offers two tools: a cooperative ``stop()`` that sets an event
the thread checks, and a forced stop that raises inside the thread. Each alone
falls short: a thread that never checks ignores the first, and the second hits
a thread wherever it is, swallowed by a bare ``except:`` or lost while the
thread is blocked in C.

Solution: ``kill()`` asks first (``stop()``), waits ``grace`` for the thread to
end, then raises ``exc_type`` in it, again every 50 ms until it ends or
``timeout`` passes. It never raises into our own bookkeeping or inside a
``shield()`` block (it waits), and a thread blocked in C is reported as still
alive rather than waited for forever. What the thread's ``run()`` raised is kept
on the object.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from ._async_raise import _check_exc_type
from ._monitor import monitor
from ._registry import current_state, send_guarded
from ._seconds import check_seconds, clock
from ._sender import DELIVER, GONE, REINJECT, RETRY, Patience, async_raise

__all__ = ("StoppableThread", "stop_thread")


def stop_thread(thread: threading.Thread, exc_type: type[BaseException] = SystemExit) -> None:
    """Ask ``thread`` to stop by raising ``exc_type`` (default ``SystemExit``) inside it.

    The exception is raised the next time the thread runs Python bytecode; a thread
    blocked in C code stops only after the C call returns, and code that catches
    the exception does not stop. ``SystemExit`` ends a thread quietly. For a thread
    that may ignore it, use `StoppableThread.kill`.

    Examples:
        >>> stop_thread(worker)  # doctest: +SKIP
        >>> worker.join(1.0)  # doctest: +SKIP

    Raises:
        TypeError: ``thread`` is not a ``threading.Thread``, or ``exc_type`` is not an
            exception class.
        ValueError: ``thread`` is the current thread, has not started, or has ended.
        RuntimeError: The interpreter cannot raise in another thread.
    """
    if not isinstance(thread, threading.Thread):
        raise TypeError(f"`thread` must be a threading.Thread, got {thread!r}")
    async_raise(thread, exc_type)


class StoppableThread(threading.Thread):
    """A thread with a cooperative ``stop()`` and a forced ``kill()``.

    Compatible with the classic recipe: ``stop()`` sets an event and ``stopped()``
    reads it; the event itself is ``stop_event``, for ``stop_event.wait(seconds)``
    in the thread's loop. ``exception`` keeps what ``run()`` raised.

    Examples:
        >>> def serve(thread: StoppableThread) -> None:  # doctest: +SKIP
        ...     while not thread.stopped():
        ...         handle_one()
        >>> worker = StoppableThread(target=serve)  # doctest: +SKIP
        >>> worker._args = (worker,)  # doctest: +SKIP
        >>> worker.start()  # doctest: +SKIP
        >>> worker.kill(grace=1.0, timeout=5.0)  # doctest: +SKIP
        True
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stop_event = threading.Event()
        #: What ``run()`` raised, kept after the thread ended (None if it returned).
        self.exception: BaseException | None = None

    @property
    def stop_event(self) -> threading.Event:
        """The event that ``stop()`` sets."""
        return self._stop_event

    def stop(self) -> None:
        """Ask the thread to stop: set ``stop_event``; the thread must check it."""
        self._stop_event.set()

    def stopped(self) -> bool:
        """Whether ``stop()`` was called."""
        return self._stop_event.is_set()

    def start(self) -> None:
        """Start the thread; what its ``run()`` raises is kept in ``exception``."""
        run: Callable[[], None] = self.run  # also a subclass's own run()

        def run_and_keep() -> None:
            try:
                run()
            except SystemExit as error:  # how kill() ends a thread: quietly
                self.exception = error
            except BaseException as error:
                self.exception = error
                raise  # still reported by threading.excepthook

        self.run = run_and_keep  # type: ignore[method-assign]
        super().start()

    def kill(
        self,
        exc_type: type[BaseException] = SystemExit,
        *,
        grace: float = 1.0,
        timeout: float | None = None,
    ) -> bool:
        """Stop the thread: ask, wait ``grace``, then raise ``exc_type`` in it until it ends.

        The exception is raised again every 50 ms (a bare ``except:`` cannot keep
        the thread alive), never into this library's own bookkeeping nor inside a
        ``shield()`` block. A thread blocked in C code ends only when the call
        returns.

        Args:
            exc_type: The exception class raised in the thread.
            grace: Seconds to wait after ``stop()`` before raising.
            timeout: Seconds to keep trying after ``grace``; None: until it ends.

        Returns:
            Whether the thread has ended.

        Raises:
            TypeError: ``exc_type`` is not an exception class.
            ValueError: Bad ``grace`` or ``timeout``; or ``kill()`` was called from
                the thread itself.
            RuntimeError: The thread has not been started.
        """
        checked_type = _check_exc_type(exc_type)
        checked_grace = check_seconds(grace, "grace")
        checked_timeout = check_seconds(timeout, "timeout")
        if self is threading.current_thread():
            raise ValueError("a thread cannot kill itself: raise SystemExit instead")
        if self.ident is None:
            raise RuntimeError(f"thread {self.name!r} has not been started")
        current_state()  # binds the C functions in this thread, not in the monitor
        self.stop()
        self.join(checked_grace)
        give_up = None if checked_timeout is None else clock() + checked_timeout
        patience = Patience(self.native_id)
        while self.is_alive():
            with monitor.lock:  # no shield can begin while we look and send
                where = send_guarded(self.ident, checked_type, patience)
            if where is GONE:
                break
            # Level-triggered; sooner while it waits for a safe landing point.
            again = REINJECT if where is DELIVER else RETRY
            wait = again if give_up is None else min(again, give_up - clock())
            if wait <= 0:
                break
            self.join(wait)
        return not self.is_alive()
