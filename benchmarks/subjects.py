"""What the benchmarks compare: our library, the peers it replaces, and reference points.

Each subject says how it limits a call (``limiter``: ``(seconds, function)`` to a
limited function that raises on expiry) and, where it has one, how it limits a
block (``scope``). Every library, ours included, is imported only when one of its
subjects is built: a missing or broken peer is reported for that subject alone, and
no library runs beside another in the same process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import importlib.util
import sys
import threading
from collections.abc import Awaitable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable

__all__ = ("SUBJECTS", "Subject", "is_timeout", "missing_reason")

Call = Callable[..., Any]
AsyncCall = Callable[..., Awaitable[Any]]
#: ``(seconds, function)`` to ``function`` limited to ``seconds``.
Limiter = Callable[[float, Call], Call]
AsyncLimiter = Callable[[float, AsyncCall], AsyncCall]
ScopeFactory = Callable[[float], contextlib.AbstractContextManager[Any]]

#: Names of the exceptions the subjects raise when a limit expires.
_TIMEOUT_NAMES = frozenset({"FunctionTimedOut", "TimeoutException", "TimeoutError"})


@dataclass(frozen=True)
class Subject:
    """One library mode or reference point.

    Attributes:
        key: Stable identifier, used in the JSON results.
        label: What the tables and the chart call it.
        kind: ``"ours"``, ``"peer"`` or ``"reference"``.
        module: The module to import (None: the standard library or ours).
        distribution: The package to install for it (PyPI name).
        min_python: The oldest Python it runs on.
        main_thread_only: Signal-based: works only in the main thread.
        note: One line for the tables.
    """

    key: str
    label: str
    kind: str
    limiter: Limiter | None = None
    async_limiter: AsyncLimiter | None = None
    scope: ScopeFactory | None = None
    async_scope: Callable[[float], Any] | None = None
    module: str | None = None
    distribution: str | None = None
    min_python: tuple[int, int] = (3, 9)
    main_thread_only: bool = False
    note: str = ""


def _peer(module: str) -> Any:
    return importlib.import_module(module)


def missing_reason(subject: Subject) -> str | None:
    """Why ``subject`` cannot run on this interpreter ("missing: ..."), or None."""
    if sys.version_info[:2] < subject.min_python:
        return "missing: needs Python >= {}.{}".format(*subject.min_python)
    if subject.module is not None and importlib.util.find_spec(subject.module) is None:
        return f"missing: {subject.distribution or subject.module} is not installed"
    return None


def is_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is how a subject reports an expired limit."""
    if isinstance(exc, (TimeoutError, concurrent.futures.TimeoutError)):
        return True  # ours (TimeoutExpired), pebble, wrapt-timeout-decorator
    # func-timeout's FunctionTimedOut, stopit's TimeoutException, timeout-decorator's
    # TimeoutError (an AssertionError)
    return type(exc).__name__ in _TIMEOUT_NAMES


# --- ours ---------------------------------------------------------------------


def _ours_thread(seconds: float, function: Call) -> Call:
    from watchdog_timeout import timeout  # noqa: PLC0415 (lazily, as every library)

    return timeout(seconds)(function)


def _ours_inline(seconds: float, function: Call) -> Call:
    from watchdog_timeout import timeout  # noqa: PLC0415

    return timeout(seconds, isolation="inline")(function)


def _ours_process(seconds: float, function: Call) -> Call:
    from watchdog_timeout import timeout  # noqa: PLC0415

    return timeout(seconds, isolation="process")(function)


def _ours_async(seconds: float, function: AsyncCall) -> AsyncCall:
    from watchdog_timeout import timeout  # noqa: PLC0415

    return timeout(seconds)(function)


def _ours_deadline(seconds: float, function: Call) -> Call:
    from watchdog_timeout import deadline  # noqa: PLC0415

    def limited(*args: Any, **kwargs: Any) -> Any:
        with deadline(seconds):
            return function(*args, **kwargs)

    return limited


def _ours_scope(seconds: float) -> contextlib.AbstractContextManager[Any]:
    from watchdog_timeout import deadline  # noqa: PLC0415

    return deadline(seconds)


# --- peers ------------------------------------------------------------------------


def _func_timeout(seconds: float, function: Call) -> Call:
    return _peer("func_timeout").func_set_timeout(seconds)(function)  # type: ignore[no-any-return]


def _stopit_thread(seconds: float, function: Call) -> Call:
    # What @stopit.threading_timeoutable does, but raising instead of returning a default.
    threading_timeout = _peer("stopit").ThreadingTimeout

    def limited(*args: Any, **kwargs: Any) -> Any:
        with threading_timeout(seconds, swallow_exc=False):
            return function(*args, **kwargs)

    return limited


def _stopit_thread_scope(seconds: float) -> contextlib.AbstractContextManager[Any]:
    return _peer("stopit").ThreadingTimeout(seconds, swallow_exc=False)  # type: ignore[no-any-return]


def _stopit_signal_scope(seconds: float) -> contextlib.AbstractContextManager[Any]:
    return _peer("stopit").SignalTimeout(seconds, swallow_exc=False)  # type: ignore[no-any-return]


def _decorator_peer(module_name: str, use_signals: bool) -> Limiter:
    """timeout-decorator and wrapt-timeout-decorator: the same ``timeout()`` API."""

    def limit(seconds: float, function: Call) -> Call:
        module = _peer(module_name)
        return module.timeout(seconds, use_signals=use_signals)(function)  # type: ignore[no-any-return]

    return limit


def _pebble_thread(seconds: float, function: Call) -> Call:
    # pebble cannot stop a thread: the caller stops waiting, the work runs on.
    decorated = _peer("pebble").concurrent.thread(function)

    def limited(*args: Any, **kwargs: Any) -> Any:
        return decorated(*args, **kwargs).result(timeout=seconds)

    return limited


def _pebble_process(seconds: float, function: Call) -> Call:
    decorated = _peer("pebble").concurrent.process(timeout=seconds)(function)

    def limited(*args: Any, **kwargs: Any) -> Any:
        return decorated(*args, **kwargs).result()

    return limited


_pebble_pools: list[Any] = []


def _pebble_pool(seconds: float, function: Call) -> Call:
    if not _pebble_pools:
        _pebble_pools.append(_peer("pebble").ProcessPool())
    pool = _pebble_pools[0]

    def limited(*args: Any, **kwargs: Any) -> Any:
        return pool.schedule(function, args=args, kwargs=kwargs, timeout=seconds).result()

    return limited


# --- reference points -----------------------------------------------------------------


def _bare(seconds: float, function: Call) -> Call:
    return function


def _thread_start_join(seconds: float, function: Call) -> Call:
    def limited(*args: Any, **kwargs: Any) -> None:
        thread = threading.Thread(target=function, args=args, kwargs=kwargs)
        thread.start()
        thread.join(seconds)

    return limited


def _ping_pong(seconds: float, function: Call) -> Call:
    """The floor of any hand-off: two locks passed back and forth between two threads.

    A partner thread, started once, waits on ``request``, runs ``function`` and
    releases ``reply``; a call releases ``request`` and waits on ``reply``. Nothing
    is limited, allocated or queued: two wake-ups per call and nothing else.
    """
    request, reply = threading.Lock(), threading.Lock()
    request.acquire()
    reply.acquire()

    def partner() -> None:
        while True:
            request.acquire()
            function()
            reply.release()

    threading.Thread(target=partner, name="ping-pong partner", daemon=True).start()

    def limited() -> None:
        request.release()
        reply.acquire()

    return limited


_executors: list[concurrent.futures.ThreadPoolExecutor] = []


def _executor_handoff(seconds: float, function: Call) -> Call:
    if not _executors:
        _executors.append(concurrent.futures.ThreadPoolExecutor(max_workers=1))
    executor = _executors[0]

    def limited(*args: Any, **kwargs: Any) -> Any:
        return executor.submit(function, *args, **kwargs).result(timeout=seconds)

    return limited


def _asyncio_timeout(seconds: float, function: AsyncCall) -> AsyncCall:
    async def limited(*args: Any, **kwargs: Any) -> Any:
        async with asyncio.timeout(seconds):  # type: ignore[attr-defined,unused-ignore]
            return await function(*args, **kwargs)

    return limited


def _asyncio_scope(seconds: float) -> Any:
    return asyncio.timeout(seconds)  # type: ignore[attr-defined,unused-ignore]


class _NoOp:
    """A context manager that does nothing: the cost of a bare ``with``."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None


def _bare_with(seconds: float) -> contextlib.AbstractContextManager[None]:
    return _NoOp()


_ALL = (
    Subject("bare", "bare call", "reference", limiter=_bare),
    Subject("ours-thread", "watchdog_timeout thread", "ours", limiter=_ours_thread),
    Subject("ours-inline", "watchdog_timeout inline", "ours", limiter=_ours_inline),
    Subject(
        "ours-process",
        "watchdog_timeout process",
        "ours",
        limiter=_ours_process,
        note="warm forkserver children",
    ),
    Subject(
        "ours-async",
        "watchdog_timeout on async def",
        "ours",
        async_limiter=_ours_async,
        note="inside a running event loop",
    ),
    Subject(
        "ours-deadline",
        "watchdog_timeout with deadline()",
        "ours",
        limiter=_ours_deadline,
        scope=_ours_scope,
    ),
    Subject(
        "func-timeout",
        "func-timeout",
        "peer",
        limiter=_func_timeout,
        module="func_timeout",
        distribution="func-timeout",
        note="a new thread per call",
    ),
    Subject(
        "stopit-thread",
        "stopit ThreadingTimeout",
        "peer",
        limiter=_stopit_thread,
        scope=_stopit_thread_scope,
        module="stopit",
        distribution="stopit",
        note="a Timer thread per scope",
    ),
    Subject(
        "stopit-signal",
        "stopit SignalTimeout",
        "peer",
        scope=_stopit_signal_scope,
        module="stopit",
        distribution="stopit",
        main_thread_only=True,
        note="whole seconds only (signal.alarm)",
    ),
    Subject(
        "timeout-decorator-signal",
        "timeout-decorator signals",
        "peer",
        limiter=_decorator_peer("timeout_decorator", use_signals=True),
        module="timeout_decorator",
        distribution="timeout-decorator",
        main_thread_only=True,
        note="SIGALRM, main thread only",
    ),
    Subject(
        "timeout-decorator-process",
        "timeout-decorator processes",
        "peer",
        limiter=_decorator_peer("timeout_decorator", use_signals=False),
        module="timeout_decorator",
        distribution="timeout-decorator",
        note="a new process per call",
    ),
    Subject(
        "wrapt-timeout-decorator-signal",
        "wrapt-timeout-decorator signals",
        "peer",
        limiter=_decorator_peer("wrapt_timeout_decorator", use_signals=True),
        module="wrapt_timeout_decorator",
        distribution="wrapt-timeout-decorator",
        main_thread_only=True,
        note="SIGALRM, main thread only",
    ),
    Subject(
        "wrapt-timeout-decorator-process",
        "wrapt-timeout-decorator processes",
        "peer",
        limiter=_decorator_peer("wrapt_timeout_decorator", use_signals=False),
        module="wrapt_timeout_decorator",
        distribution="wrapt-timeout-decorator",
        note="a new process per call",
    ),
    Subject(
        "pebble-thread",
        "pebble thread",
        "peer",
        limiter=_pebble_thread,
        module="pebble",
        distribution="pebble",
        note="a new thread per call; the work is never stopped",
    ),
    Subject(
        "pebble-process",
        "pebble process",
        "peer",
        limiter=_pebble_process,
        module="pebble",
        distribution="pebble",
        note="a new process per call",
    ),
    Subject(
        "pebble-pool",
        "pebble ProcessPool",
        "peer",
        limiter=_pebble_pool,
        module="pebble",
        distribution="pebble",
        note="pooled processes",
    ),
    Subject(
        "asyncio-timeout",
        "asyncio.timeout",
        "reference",
        async_limiter=_asyncio_timeout,
        async_scope=_asyncio_scope,
        min_python=(3, 11),
        note="inside a running event loop",
    ),
    Subject(
        "thread-start-join",
        "threading.Thread start+join",
        "reference",
        limiter=_thread_start_join,
    ),
    Subject(
        "ping-pong",
        "two-lock ping-pong (floor)",
        "reference",
        limiter=_ping_pong,
        note="the floor: two lock hand-offs to an existing thread, nothing limited",
    ),
    Subject(
        "executor-handoff",
        "ThreadPoolExecutor handoff",
        "reference",
        limiter=_executor_handoff,
        note="submit+result to an existing thread",
    ),
    Subject("bare-with", "bare with (no-op)", "reference", scope=_bare_with),
)

#: Every subject, by key, in table order.
SUBJECTS: dict[str, Subject] = {subject.key: subject for subject in _ALL}
