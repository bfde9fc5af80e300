"""Stopping threads: ``stop_thread``."""

from __future__ import annotations

import threading

from ._async_raise import async_raise

__all__ = ("stop_thread",)


def stop_thread(thread: threading.Thread, exc_type: type[BaseException] = SystemExit) -> None:
    """Ask ``thread`` to stop by raising ``exc_type`` (default ``SystemExit``) inside it.

    The exception is raised the next time the thread runs Python bytecode; a thread
    blocked in C code stops only after the C call returns, and code that catches
    the exception does not stop. ``SystemExit`` ends a thread quietly.

    Example:
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
