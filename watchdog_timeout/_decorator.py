"""``@timeout(seconds)``: the decorator; the one module that imports wrapt.

Design notes
------------
Things that don't work:

- A magic keyword argument for a per-call limit (func-timeout's ``forceTimeout=``,
  stopit's ``timeout=``): it changes the decorated signature. A callable
  ``seconds`` gets the call's own arguments instead.
- ``functools.wraps`` closures: methods, classmethods and staticmethods each
  need their own handling, and the decorator cannot go outside ``@classmethod``.
  wrapt's ``FunctionWrapper`` binds like the function it wraps.
- Running ``async def`` functions in a thread: the coroutine belongs to its
  event loop. They are limited on their loop, by cancelling their task.
- Decorating a generator function: the decorated call only creates the
  generator; its body runs later, in the consumer's ``next()`` calls.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Callable, Union

from ._bytecode import function_kind
from ._deadline import check_callback, check_exception_class
from ._errors import TimeoutExpired, _Interrupt
from ._handoff import run_in_worker
from ._scope import Deadline
from ._seconds import Seconds, check_seconds

if TYPE_CHECKING:
    from typing import Literal, TypeVar

    from typing_extensions import ParamSpec

    P = ParamSpec("P")
    R = TypeVar("R")
    #: Where the limited call runs.
    Isolation = Literal["thread", "inline", "process"]

__all__ = ("DEFAULT_GRACE", "timeout")

#: Seconds the caller waits, after the limit, for interrupted code to stop.
DEFAULT_GRACE = 0.1

#: What ``seconds`` accepts: a number of seconds, None, or a function of the
#: call's arguments that returns one of those.
SecondsOrFunction = Union[Seconds, Callable[..., Seconds]]

_ISOLATIONS = ("thread", "inline", "process")


def timeout(
    seconds: SecondsOrFunction,
    *,
    isolation: Isolation = "thread",
    grace: float = DEFAULT_GRACE,
    label: str | None = None,
    start_method: str | None = None,
    on_expire: Callable[[], object] | None = None,
    exception: type[BaseException] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Limit every call of the decorated function to ``seconds``.

    The caller gets `TimeoutExpired` within ``seconds + grace`` whether the
    function runs Python or waits in a blocking call (C code that holds the GIL stops
    every thread, the caller's too: only ``isolation="process"`` stops it on time; an
    ``async def`` body that blocks without awaiting is not limited): at the limit its
    code is interrupted; if it has not stopped
    ``grace`` seconds later (it is blocked in C code) the caller is answered
    anyway, with ``stopped=False``, and the function's thread is *abandoned*: it
    is interrupted again as soon as it runs Python code, and its late outcome is
    logged (see `abandoned_workers`). Results and exceptions pass through
    unchanged, ``SystemExit`` and ``KeyboardInterrupt`` included; nested limits
    compose with ``deadline()`` (the earliest wins).

    Examples:
        >>> @timeout(2.5)  # doctest: +SKIP
        ... def fetch(url: str) -> bytes: ...
        >>> @timeout(lambda url, retries: 1.0 + retries)  # doctest: +SKIP
        ... def fetch_with_retries(url: str, retries: int) -> bytes: ...

    Args:
        seconds: The limit for each call: a non-negative number, None for no
            limit, or a function called with the call's arguments (``self`` or
            ``cls`` included for methods) that returns one.
        isolation: ``"thread"`` (default): the call runs in a worker thread,
            reused from a pool. ``"inline"``: the call runs in the caller's thread
            under ``deadline()`` (for thread-bound objects); only the main thread
            is woken from blocking calls. ``"process"``: the call runs in a child
            process that is killed at the limit: it stops C code that never
            returns; arguments and results must pickle. ``async def`` functions
            are always limited on their own event loop.
        grace: Seconds to wait, after the limit, for the code to stop (and, with
            processes, between SIGTERM and SIGKILL); 0.1 by default: Python code
            stops within milliseconds, and code that does not is interrupted
            again as soon as it runs Python.
        label: The name reported in TimeoutExpired (default: the function's).
        start_method: With ``isolation="process"``: the multiprocessing start
            method (default ``"forkserver"``; ``"fork"`` only when asked for).
        on_expire: With ``"thread"`` and ``"inline"``: called without arguments, in
            a thread of its own, when a call's time is up and before its code is
            interrupted, as ``deadline(on_expire=...)``: for unblocking a C call
            (``sock.close``, ``conn.interrupt``). A child process is killed
            instead, so ``"process"`` does not take it.
        exception: An exception class raised instead of TimeoutExpired (as
            timeout-decorator's ``timeout_exception``), with the same message and
            ``from`` the TimeoutExpired, whose fields stay reachable.

    Returns:
        A decorator; the decorated function keeps its name, docstring and
        signature.

    Raises:
        TypeError: Bad argument types, or a generator function is decorated.
        ValueError: A negative or NaN ``seconds`` or ``grace``, or an unknown
            ``isolation`` or ``start_method``.
    """
    limit: Callable[..., float | None]
    if callable(seconds):
        compute = seconds

        def limit(*args: Any, **kwargs: Any) -> float | None:
            return check_seconds(compute(*args, **kwargs))

        computed = True
        fixed = None
    else:
        fixed = check_seconds(seconds)

        def limit(*args: Any, **kwargs: Any) -> float | None:
            return fixed

        computed = False
    checked_grace = _check_options(grace, isolation, label, on_expire, start_method)
    chosen = check_exception_class(exception)

    def decorate(*decorated: Any, **unexpected: Any) -> Any:
        target = getattr(decorated[0], "__func__", decorated[0]) if decorated else None
        if len(decorated) != 1 or unexpected or not callable(target):
            raise _bare_decorator_error(seconds, decorated, unexpected)
        function: Callable[..., Any] = decorated[0]
        plain = getattr(function, "__func__", function)  # under @classmethod/@staticmethod
        kind = function_kind(plain)
        if kind in ("generator", "async generator"):
            raise TypeError(
                f"timeout() cannot limit the generator function {plain.__qualname__}: "
                "calling it only creates the generator. Limit the code that consumes "
                "it instead, with `with deadline(seconds):` around the loop."
            )
        qualname = getattr(plain, "__qualname__", repr(plain))
        name = label if label is not None else f"{qualname}()"
        thread_name = f"watchdog_timeout-worker ({qualname})"

        def seconds_for(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if not computed:
                return limit()
            if instance is not None:  # self or cls: what the function itself receives
                return limit(instance, *args, **kwargs)
            return limit(*args, **kwargs)

        import wrapt  # noqa: PLC0415 (an import that costs: only once something is decorated)

        if kind == "coroutine":
            if isolation == "process":
                raise ValueError(
                    f"isolation='process' cannot run the coroutine function {qualname}; "
                    "it is limited on its own event loop"
                )

            def call_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                return _chosen(
                    chosen,
                    _limit_coroutine(
                        wrapped(*args, **kwargs), seconds_for(instance, args, kwargs), name
                    ),
                )

            return wrapt.FunctionWrapper(function, call_async)

        if isolation == "process":
            from ._process import call_in_process  # noqa: PLC0415 (multiprocessing: only when used)

            def call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                return _raising(
                    chosen,
                    call_in_process,
                    wrapped,
                    args,
                    kwargs,
                    seconds=seconds_for(instance, args, kwargs) if computed else fixed,
                    grace=checked_grace,
                    name=name,
                    start_method=start_method,
                )

        elif isolation == "inline":

            def call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                return _inline(
                    wrapped,
                    args,
                    kwargs,
                    seconds_for(instance, args, kwargs) if computed else fixed,
                    name,
                    on_expire=on_expire,
                    exception=chosen,
                )

        else:

            def call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                return run_in_worker(
                    wrapped,
                    args,
                    kwargs,
                    seconds=seconds_for(instance, args, kwargs) if computed else fixed,
                    grace=checked_grace,
                    name=name,
                    thread_name=thread_name,
                    on_expire=on_expire,
                    exception=chosen,
                )

        return wrapt.FunctionWrapper(function, call)

    return decorate


def _check_options(
    grace: object,
    isolation: object,
    label: object,
    on_expire: object,
    start_method: str | None,
) -> float:
    """Validate timeout()'s options at decoration; return the grace in seconds."""
    checked_grace = check_seconds(grace, "grace")
    if checked_grace is None:
        raise ValueError(f"`grace` must be a finite number of seconds, got {grace!r}")
    if isolation not in _ISOLATIONS:
        raise ValueError(f"`isolation` must be 'thread', 'inline' or 'process', got {isolation!r}")
    if label is not None and not isinstance(label, str):
        raise TypeError(f"`label` must be a string or None, got {label!r}")
    check_callback(on_expire)
    if on_expire is not None and isolation == "process":
        raise ValueError(
            "`on_expire` does not apply to isolation='process': the child is killed at "
            f"the limit; got {on_expire!r}"
        )
    if start_method is not None and isolation != "process":
        raise ValueError(
            f"`start_method` applies to isolation='process', not {isolation!r}: "
            f"got {start_method!r}"
        )
    if isolation == "process":
        from ._process import check_start_method  # noqa: PLC0415 (multiprocessing: only when used)

        check_start_method(start_method)  # a typo is refused here, not at the first call
    return checked_grace


def _bare_decorator_error(
    seconds: object, decorated: tuple[Any, ...], unexpected: dict[str, Any]
) -> TypeError:
    """The error for a decorator called with something other than one function."""
    got = ", ".join([*(repr(a) for a in decorated), *(f"{k}={v!r}" for k, v in unexpected.items())])
    if callable(seconds) and getattr(seconds, "__name__", "<lambda>") != "<lambda>":
        name = getattr(seconds, "__qualname__", repr(seconds))
        return TypeError(
            f"{name}() was decorated with a bare @timeout, without parentheses: timeout "
            f"took {name} as its limit and this call's arguments ({got}) as the function "
            "to decorate. Write @timeout(seconds) above it"
        )
    return TypeError(f"timeout(...) decorates functions, one at a time; got ({got})")


def _inline(
    function: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    seconds: float | None,
    name: str,
    *,
    on_expire: Callable[[], object] | None = None,
    exception: type[BaseException] | None = None,
) -> Any:
    scope = Deadline(seconds, label=name, on_expire=on_expire, exception=exception)
    try:
        with scope:
            return function(*args, **kwargs)
    except _Interrupt as exc:
        if exc.scope is scope:  # it escaped the with statement (see _frames)
            scope._raise_expired(exc)
        raise


def _raising(
    chosen: type[BaseException] | None, call: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """``call(*args, **kwargs)``, its own TimeoutExpired raised as ``chosen`` (if any)."""
    if chosen is None:
        return call(*args, **kwargs)
    try:
        return call(*args, **kwargs)
    except TimeoutExpired as expired:
        raise chosen(str(expired)) from expired


async def _chosen(chosen: type[BaseException] | None, awaitable: Any) -> Any:
    """Await ``awaitable``, its own TimeoutExpired raised as ``chosen`` (if any)."""
    try:
        return await awaitable
    except TimeoutExpired as expired:
        if chosen is None:
            raise
        raise chosen(str(expired)) from expired


async def _limit_coroutine(coroutine: Any, seconds: float | None, name: str) -> Any:
    """Await ``coroutine``, cancelling its task after ``seconds``; as asyncio.timeout."""
    import asyncio  # noqa: PLC0415 (loaded already: a coroutine is running)

    if seconds is None:
        return await coroutine
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    cancelling = 0
    if sys.version_info >= (3, 11):
        cancelling = task.cancelling()
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    start = loop.time()
    handle = loop.call_at(start + seconds, expire)
    taken_back = False
    try:
        return await coroutine
    except asyncio.CancelledError as exc:
        if not expired:
            raise
        if sys.version_info >= (3, 11):
            # Ours only if no other cancellation is pending on the task.
            taken_back = True
            if task.uncancel() > cancelling:
                raise
        raise TimeoutExpired(seconds, elapsed=loop.time() - start, name=name) from exc
    finally:
        handle.cancel()
        if sys.version_info >= (3, 11):
            if expired and not taken_back:
                task.uncancel()  # the body ended anyway: take our cancellation back
