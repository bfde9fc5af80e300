"""The exceptions: what callers see, and what is injected into running code.

Callers see `TimeoutExpired`. Running code is interrupted with
`_Interrupt`, a private ``BaseException`` subclass, so that ``except
Exception:`` in user or library code cannot swallow it; the scope whose time ran
out turns it into ``TimeoutExpired`` (``raise ... from``) where the scope ends.
"""

from __future__ import annotations

import os.path
from typing import Any, Callable

__all__ = ("ProcessCrashed", "TimeoutExpired")


def _format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "no"
    return f"{seconds:g}"


_UNSET: Any = object()


class TimeoutExpired(TimeoutError):
    """A time limit ran out before the limited code finished.

    Raised by ``deadline()`` where its block ends and by ``@timeout`` in the
    caller. It is a ``TimeoutError`` (and so an ``Exception``); what interrupted
    the running code is chained to it as ``__cause__``. It can also be built like
    any exception, ``TimeoutExpired()`` or ``TimeoutExpired("message")``.

    Attributes:
        seconds: The limit, in seconds, measured from the start of the limited code
            (None when built with a message).
        elapsed: Seconds from the start of the limited code until it was reported.
        name: The label of the deadline, or the qualified name of the function
            (without ``()``; the message has them).
        stopped: True if the limited code really stopped; False if it could not be
            stopped (blocked in C code) and was left running in the background.
        stack: For a ``Watchdog``: where the watched thread was at expiry, innermost
            frame first, as ``(filename, lineno, function)``; None otherwise.
    """

    seconds: float | None
    elapsed: float
    name: str
    stopped: bool
    stack: StackSummary | None

    def __init__(
        self,
        seconds: float | str | None = _UNSET,
        *args: object,
        elapsed: float = 0.0,
        name: str = "deadline()",
        stopped: bool = True,
        stack: StackSummary | None = None,
    ) -> None:
        # "f()" names a call in the message; the attribute is the plain name.
        self.name = name[:-2] if name.endswith("()") else name
        self.elapsed = elapsed
        self.stopped = stopped
        self.stack = stack
        if seconds is _UNSET or isinstance(seconds, str):
            # Built like any exception: TimeoutExpired() or TimeoutExpired("message").
            self.seconds = None
            plain = () if seconds is _UNSET else (seconds, *args)
            super().__init__(*plain)
            self.args = plain
            return
        self.seconds = seconds
        message = f"{name} exceeded its time limit of {_format_seconds(seconds)} seconds"
        if seconds is not None and elapsed > seconds * 1.5 + 0.05:
            message += f" (it ran for {elapsed:.3g} seconds)"
        if not stopped:
            message += " and could not be stopped: it is still running in the background"
        if stack:
            message += "; it was in " + describe_stack(stack)
        super().__init__(message)
        # OSError.__init__ ignores its arguments in classes whose __new__ is
        # overridden (as in _LateTimeoutExpired); set them explicitly.
        self.args = (message,)

    def __reduce__(self) -> tuple[Callable[..., TimeoutExpired], tuple[Any, ...]]:
        # The keyword-only constructor does not fit BaseException's default
        # pickling; always rebuild the public class (see _LateTimeoutExpired).
        return (
            _rebuild_timeout_expired,
            (self.seconds, self.elapsed, self.name, self.stopped, self.stack, self.args),
        )


def _rebuild_timeout_expired(*fields: Any) -> TimeoutExpired:
    seconds, elapsed, name, stopped, stack, args = (*fields, None, None)[:6]
    rebuilt = TimeoutExpired(seconds, elapsed=elapsed, name=name, stopped=stopped, stack=stack)
    if args is not None:  # the message as it was, "()" included
        rebuilt.args = args
    return rebuilt


#: Where a thread was: ``(filename, lineno, function)`` per frame, innermost first.
StackSummary = tuple[tuple[str, int, str], ...]


def describe_stack(stack: StackSummary, limit: int = 3) -> str:
    """``f (file.py:12), called from g (file.py:30)``: the innermost frames, briefly."""
    parts = [f"{name} ({os.path.basename(file)}:{line})" for file, line, name in stack[:limit]]
    return ", called from ".join(parts)


class ProcessCrashed(RuntimeError):
    """The child process running an ``isolation="process"`` call died on its own.

    A crash, a signal from elsewhere or the OOM killer: not a timeout. Raised in
    the caller; it pickles, so it can travel on (from a nested call, say).

    Attributes:
        name: The qualified name of the function, with ``()``.
        pid: The child's process id, or None if unknown.
        exitcode: The child's exit status as ``multiprocessing`` gives it: the exit
            code, or the negative number of the signal that killed it.
        signal: The name of the signal that killed it (``"SIGKILL"``), or None if
            it exited.
    """

    name: str
    pid: int | None
    exitcode: int
    signal: str | None

    def __init__(self, name: str, *, exitcode: int, pid: int | None = None) -> None:
        self.name = name
        self.pid = pid
        self.exitcode = exitcode
        self.signal = _signal_name(-exitcode) if exitcode < 0 else None
        who = f"the process running {name}" if pid is None else f"the process {pid} running {name}"
        if self.signal is not None:
            how = f"was killed by {self.signal}"
            if self.signal.startswith("SIG"):
                how += f" (signal {-exitcode})"
        else:
            how = f"exited with code {exitcode} before returning a result"
        super().__init__(f"{who} {how}")

    def __reduce__(self) -> tuple[Callable[..., ProcessCrashed], tuple[Any, ...]]:
        return (_rebuild_process_crashed, (self.name, self.exitcode, self.pid))


def _rebuild_process_crashed(name: str, exitcode: int, pid: int | None) -> ProcessCrashed:
    return ProcessCrashed(name, exitcode=exitcode, pid=pid)


def _signal_name(number: int) -> str:
    """``"SIGSEGV"``; ``"SIGRTMIN+3"`` for a real-time signal; ``"signal 200"`` if unknown."""
    import signal  # noqa: PLC0415 (only for a message)

    try:
        return signal.Signals(number).name
    except ValueError:
        pass
    low, high = getattr(signal, "SIGRTMIN", 0), getattr(signal, "SIGRTMAX", -1)
    if low < number <= high:
        return f"SIGRTMIN+{number - low}"
    return f"signal {number}"


# Set by _scope: called, in the interrupted thread, when the interpreter builds
# an _Interrupt for a pending asynchronous exception. It returns the scope the
# interrupt belongs to, or a replacement exception when the interrupt landed
# after its block had already finished (see _scope).
_delivery_hook: Callable[[], object] | None = None


class _Interrupt(BaseException):
    """Injected into code whose time ran out; turned into TimeoutExpired by its scope.

    ``scope`` tags the interrupt with the scope that sent it, so that every scope
    can tell its own interrupt from another one's without matching by class.
    """

    scope: object

    def __new__(cls, *args: object, **kwargs: object) -> Any:
        # The interpreter builds the instance itself (CPython without arguments,
        # PyPy with a message); our code passes ``scope=`` to tag it directly.
        if cls is _Interrupt and "scope" not in kwargs and _delivery_hook is not None:
            found = _delivery_hook()
            if isinstance(found, BaseException):
                return found  # a replacement (see _LateTimeoutExpired)
            instance = super().__new__(cls)
            instance.scope = found
            return instance
        return super().__new__(cls)

    def __init__(
        self, *args: object, scope: object = None, stopped: bool = True, **kwargs: object
    ) -> None:
        super().__init__(*args)
        if "scope" not in self.__dict__ or scope is not None:
            self.scope = scope
        #: False when raised in a caller that gave up on code it could not stop.
        self.stopped = stopped

    def __str__(self) -> str:
        return (
            f"interrupt sent by {self.scope!r}; it is turned into TimeoutExpired where "
            "that scope ends, and reaches other code only if it escaped its scope"
        )


class _LateTimeoutExpired(_Interrupt, TimeoutExpired):
    """A TimeoutExpired produced where an interrupt landed after its block ended.

    An asynchronous exception left pending while the thread was blocked in a C
    call that then failed is raised at the entry of the scope's ``__exit__`` (or,
    on 3.9/3.10, in place of calling it). The scope's exit then never runs, so the
    delivery hook does its bookkeeping and raises this instead: an instance of both
    classes, so that the interpreter keeps its exception type consistent and user
    code catches it as TimeoutExpired.
    """

    #: The scope whose exit the delivery hook finished.
    finished: object = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # type.__call__ calls __init__ again on the instance that _Interrupt.__new__
        # returned, with the interpreter's arguments (none on CPython, a message on
        # PyPy): keep what the first call set.
        if "seconds" not in self.__dict__:
            TimeoutExpired.__init__(self, *args, **kwargs)
        self.scope = None

    __str__ = TimeoutExpired.__str__


_LateTimeoutExpired.__name__ = _LateTimeoutExpired.__qualname__ = "TimeoutExpired"
_LateTimeoutExpired.__module__ = "watchdog_timeout"
