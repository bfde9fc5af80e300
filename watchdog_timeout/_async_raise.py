"""Raising an exception inside another thread: the one module that touches ctypes.

Design notes
------------
CPython's ``PyThreadState_SetAsyncExc(unsigned long id, PyObject *exc)`` queues
``exc`` on the thread with that id; the thread raises it the next time it checks
its "eval breaker" (at calls, backward jumps and function entries), so it stops
only code that runs bytecode: a thread blocked in C raises it when the C call
returns.

Things that don't work:

- Declaring no ``argtypes``: a Python int is passed as a 32-bit C int and the call
  returns 0 ("no such thread") for a live thread.
- A signed ``c_long`` id (the classic recipe): idents above 2**63 are refused.
- ``argtypes=(c_ulong, py_object)`` and passing None to clear: that queues
  ``Py_None`` itself and the target later dies with ``SystemError``.
- Passing an exception *instance*: the call returns 1 and the target later dies
  with ``SystemError``. Only classes work, so they are checked before the call.
- Trusting an ident taken from a finished ``Thread``: idents are reused at once,
  and the exception would hit whichever thread has the ident now.

- Declaring ``argtypes`` on ``ctypes.pythonapi.PyThreadState_SetAsyncExc``: ctypes
  caches that object process-wide, and other libraries (stopit, func-timeout, the
  classic recipe) pass a ``c_long`` to it: they would get ``ArgumentError``.

Solution: two function objects of our own for the same symbol
(``pythonapi[name]`` makes a new one each time), one declared
``(c_ulong, py_object)`` to raise and one ``(c_ulong, c_void_p)`` whose None is a
real NULL to clear; exception classes checked up front; a ``Thread`` checked to
be alive and to still own its ident right before the call.

PyPy has no ``ctypes.pythonapi`` but offers ``__pypy__.thread._raise_in_thread``,
which raises the same way and cannot clear. Other interpreters get a RuntimeError
when the function is called; importing this module always works.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable, Union

from ._apart import run_apart

__all__ = (
    "ThreadOrIdent",
    "can_clear",
    "ensure_loaded",
    "clear_async_exc",
    "raise_in",
    "send_async_exc",
    "withdraw_async_exc",
)

#: The largest ident the C call can take: an ``unsigned long``.
_MAX_IDENT = 2 ** (64 if sys.maxsize > 2**32 and sys.platform != "win32" else 32) - 1

#: A thread, as a ``threading.Thread`` or as its ``ident``.
ThreadOrIdent = Union[threading.Thread, int]

#: ``PyThreadState_SetAsyncExc`` declared ``(c_ulong, py_object)``: queue a class.
#: Code that must not pass a check point between deciding and acting (the monitor)
#: calls it directly: the entry of a Python wrapper is such a point.
send_async_exc: Callable[[int, type[BaseException]], int] | None = None
#: The same C function declared ``(c_ulong, c_void_p)``: ``(ident, None)`` withdraws.
withdraw_async_exc: Callable[[int, None], int] | None = None
_unsupported: str | None = None


def _load() -> None:
    global send_async_exc, withdraw_async_exc, _unsupported
    bound = _bind_ctypes()
    half_run = [
        name
        for name, module in list(sys.modules.items())
        if name.split(".")[0] == "ctypes" and module is not None  # (None: import blocked)
    ]
    if bound is None and half_run and sys.implementation.name == "cpython":
        # CPython has them: a first import of ctypes that an exception from elsewhere
        # (Ctrl-C) cut short in importlib's cleanup can leave a half-run module in
        # sys.modules, and every later import returns it. Import it afresh, once.
        for name in half_run:
            del sys.modules[name]
        bound = _bind_ctypes()
    if bound is not None:
        send_async_exc, withdraw_async_exc = bound
        return
    try:
        from __pypy__.thread import (  # type: ignore[import-not-found]  # noqa: PLC0415
            _raise_in_thread,
        )
    except ImportError:
        _unsupported = (
            f"{sys.implementation.name} {sys.version.split()[0]} offers no way to raise "
            "an exception in another thread (CPython and PyPy do)"
        )
        return

    def raise_in_thread(ident: int, exc_type: type[BaseException]) -> int:
        try:
            _raise_in_thread(ident, exc_type)
        except ValueError:  # "couldn't find thread"
            return 0
        return 1

    send_async_exc = raise_in_thread


def _bind_ctypes() -> tuple[Any, Any] | None:
    try:
        import ctypes  # noqa: PLC0415 (optional: not every interpreter has it)

        # Function objects of our own: pythonapi[...] makes a new one, while
        # pythonapi.PyThreadState_SetAsyncExc is cached for the whole process and
        # declaring its argtypes would break every other library that calls it.
        send = ctypes.pythonapi["PyThreadState_SetAsyncExc"]
        withdraw = ctypes.pythonapi["PyThreadState_SetAsyncExc"]
    except (ImportError, AttributeError, KeyError):
        return None
    send.argtypes = (ctypes.c_ulong, ctypes.py_object)
    send.restype = ctypes.c_int
    withdraw.argtypes = (ctypes.c_ulong, ctypes.c_void_p)
    withdraw.restype = ctypes.c_int
    return send, withdraw


_loaded = False


def ensure_loaded() -> None:
    """Bind the C functions, once, before any use.

    Called where a thread first uses the library (its first scope, ``async_raise``,
    ``kill()``, ``Watchdog.start()``), never at import (ctypes costs an import) and
    never in the monitor: importing ctypes there costs a GIL switch per file read
    while the thread it must interrupt is busy (measured: 70 ms). The import runs in
    a thread of its own (``run_apart``): a Ctrl-C cannot leave it half-run.
    """
    global _loaded
    if not _loaded:
        run_apart(_load)
        _loaded = True


def raise_in(ident: int, exc_type: type[BaseException]) -> int:
    """Queue ``exc_type`` on thread ``ident``, unchecked; return how many threads got it.

    Raises:
        RuntimeError: The interpreter cannot raise in another thread.
    """
    ensure_loaded()
    if send_async_exc is None:
        raise RuntimeError(_unsupported)
    return send_async_exc(ident, exc_type)


def can_clear() -> bool:
    """Whether a queued exception can be withdrawn (CPython: yes, PyPy: no)."""
    ensure_loaded()
    return withdraw_async_exc is not None


def clear_async_exc(ident: int) -> None:
    """Withdraw the exception queued on thread ``ident``, if any and if possible."""
    ensure_loaded()
    if withdraw_async_exc is not None:
        withdraw_async_exc(ident, None)


def _check_exc_type(exc_type: object) -> type[BaseException]:
    if isinstance(exc_type, type) and issubclass(exc_type, BaseException):
        return exc_type
    if isinstance(exc_type, BaseException):
        raise TypeError(
            f"`exc_type` must be an exception class, got the instance {exc_type!r}: "
            f"pass {type(exc_type).__name__} itself"
        )
    raise TypeError(f"`exc_type` must be an exception class, got {exc_type!r}")


def _check_target(thread_or_ident: object) -> int:
    if isinstance(thread_or_ident, threading.Thread):
        thread = thread_or_ident
        ident = thread.ident
        if ident is None:
            raise ValueError(f"thread {thread.name!r} has not been started")
        if not thread.is_alive() or threading._active.get(ident) not in (None, thread):  # type: ignore[attr-defined]
            # The second test catches a dead Thread whose ident a new thread reuses.
            raise ValueError(f"thread {thread.name!r} is not alive")
    elif isinstance(thread_or_ident, int) and not isinstance(thread_or_ident, bool):
        ident = thread_or_ident
        if ident <= 0:
            raise ValueError(f"`thread_or_ident` must be a positive thread ident, got {ident}")
        if ident > _MAX_IDENT:
            # ctypes would silently truncate it to some other thread's ident.
            raise ValueError(
                f"`thread_or_ident` must be a thread ident of at most {_MAX_IDENT}, got {ident}"
            )
    else:
        raise TypeError(
            "`thread_or_ident` must be a threading.Thread or a thread ident, "
            f"got {thread_or_ident!r}"
        )
    if ident == threading.get_ident():
        raise ValueError("cannot raise asynchronously in the current thread: use a raise statement")
    return ident
