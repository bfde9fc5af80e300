"""``isolation="process"``: run a call in a child process, which can always be stopped.

Design notes
------------
An asynchronous exception cannot stop C code that never returns to the
interpreter; killing a process can. Everything here serves one promise: at the
deadline the child and everything it started are gone, and the caller learns how
the call ended. This module is the caller's side of one call: the start method,
handing the call to a child, the wait for the reply, the error for a child that
died, and the ``fork`` path. The warm pool of children, with exit and fork
handling, is in ``_process_pool``; what runs in the child and how a call
travels, in ``_process_child``; how a child's tree is killed, in
``_process_tree``.

Things that don't work:

- ``fork`` as the default: it copies the caller's threads' locks mid-use (CPython
  3.12 warns, 3.14 no longer defaults to it), and a pool forked once would run
  the module state of the moment it was forked.
- ``spawn`` for every child: 50-100 ms of interpreter start-up per child, paid
  again after every kill.
- Waiting for the reply in one blocking call: the caller's outer deadline and
  Ctrl-C land only when it returns.

Solution:

- The default start method is ``forkserver``, on every Python (spawn where it is
  missing): children are forked from a small single-threaded server, 5-15 ms
  each after a one-off ~150 ms, and behave the same on 3.9 and 3.14, whose
  default it is; they are kept warm and replaced in the background
  (``_process_pool``). ``fork`` only when asked for: then each call forks a
  fresh copy of the caller (nothing is pickled on the way in)
  and there is no pool.
- The caller waits in slices of at most ``SLICE`` seconds, shorter when an
  outer deadline comes sooner: its interrupt (or Ctrl-C) lands between slices, or
  in the main thread interrupts the wait itself; the except path kills the tree
  before the interrupt goes on. The limit starts when a ready child gets the call,
  so interpreter start-up never eats the function's time.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import multiprocessing.process
import os
import sys
from typing import Any, Callable, TypeVar

from ._deadline import remaining
from ._errors import ProcessCrashed, TimeoutExpired
from ._process_child import BYE, NotFoundInChild, forked_main, unpack_reply
from ._process_pack import pack_call, track_local_classes
from ._process_pool import (
    _BUSY,
    _DEAD,
    _IDLE,
    _STARTING,
    CHILD_NAME,
    _finish,
    _Pool,
    _pool_for,
    _reaped,
    _stopped_at_exit,
    _Worker,
    start_worker,
)
from ._process_tree import wait_dead
from ._seconds import clock
from ._sender import protect

__all__ = ("DEFAULT_START_METHOD", "call_in_process", "check_start_method")

R = TypeVar("R")

#: Used when ``start_method`` is None (``spawn`` where forkserver is missing).
DEFAULT_START_METHOD = "forkserver"
#: Seconds a new child may take to start before the call gives up.
START_TIMEOUT = 30.0
#: The longest the caller blocks at once, so that interrupts land in time.
SLICE = 0.05
_MIN_SLICE = 0.002
_ATTEMPTS = 3
#: The exit code of a new child whose import of the main module made a call.
_NO_MAIN_GUARD = 87

#: Private test hook: called with the child's pid before each call is handed over.
_dispatch_hook: Callable[[int], object] | None = None


class _ChildDied(Exception):
    """The child ended (or its socket broke) before it replied."""


def call_in_process(
    function: Callable[..., R],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    seconds: float | None,
    grace: float,
    name: str,
    start_method: str | None = None,
) -> R:
    """Call ``function(*args, **kwargs)`` in a child process; kill its tree after ``seconds``.

    Args:
        function: The undecorated function (or bound method, or picklable callable).
        args: Positional arguments, pickled for the child.
        kwargs: Keyword arguments, pickled for the child.
        seconds: The limit, counted from the moment a ready child gets the call;
            None for none. The caller's outer deadlines also apply.
        grace: How long to wait for the child to end after SIGTERM, and again after SIGKILL.
        name: The label for messages, e.g. ``"fetch()"``.
        start_method: ``"forkserver"``, ``"spawn"`` or ``"fork"``; None for
            `DEFAULT_START_METHOD`.

    Returns:
        What the function returned in the child.

    Raises:
        TimeoutExpired: The limit ran out; the child's tree was killed
            (``stopped=False`` if it outlived SIGKILL).
        ProcessCrashed: The child died on its own (a signal or an exit code).
        TypeError: The function, an argument or the result cannot travel between
            the processes; the message names it and says why.
        ValueError: ``start_method`` is unknown or not available.
        BaseException: Whatever the function raised, its traceback going on
            into the function's frames in the child.
    """
    me = multiprocessing.process.current_process()
    if getattr(me, "_inheriting", False) and me.name == CHILD_NAME:
        # We are a new child of ours importing the caller's main module, whose top
        # level made this call: leave quietly, and the caller explains (_await_ready).
        os._exit(_NO_MAIN_GUARD)
    method = check_start_method(start_method)
    if method == "fork":
        return _call_forked(function, args, kwargs, seconds=seconds, grace=grace, name=name)
    payload = pack_call(function, args, kwargs, name, method)
    pool = _pool_for(method)
    by_value = False
    attempts = 0
    while attempts < _ATTEMPTS:
        worker: _Worker | None = None
        try:
            worker = pool.acquire()
            if worker.state is _STARTING:
                _await_ready(worker, grace, name, method)
            reply = _run(pool, worker, payload, seconds=seconds, grace=grace, name=name)
        except BaseException:
            if worker is not None:
                _discard_surely(pool, worker, grace)
            raise
        if reply is None:
            pool.forget(worker)  # it retired before it read the call: try another
            attempts += 1
            continue
        pool.release(worker)
        try:
            return unpack_reply(reply, name)  # type: ignore[no-any-return]
        except NotFoundInChild:
            if by_value:
                raise
        # The function never ran: send it again, by value (at most once).
        by_value = True
        payload = pack_call(function, args, kwargs, name, method, by_value=True)
    raise RuntimeError(f"no child process would take {name} after {_ATTEMPTS} attempts")


def check_start_method(start_method: str | None) -> str:
    """The start method to use for ``start_method``; ValueError if unknown or unavailable."""
    available = multiprocessing.get_all_start_methods()
    if start_method is None:
        return DEFAULT_START_METHOD if DEFAULT_START_METHOD in available else "spawn"
    if start_method not in ("forkserver", "spawn", "fork"):
        raise ValueError(
            f"`start_method` must be 'forkserver', 'spawn', 'fork' or None, got {start_method!r}"
        )
    if start_method not in available:
        raise ValueError(f"`start_method` {start_method!r} is not available on this platform")
    return start_method


# --- the caller's side of one call -------------------------------------------


def _run(
    pool: _Pool,
    worker: _Worker,
    payload: bytes,
    *,
    seconds: float | None,
    grace: float,
    name: str,
) -> bytes | None:
    """Hand the call to ``worker`` and wait; the reply, or None if it retired first."""
    _notify(worker)
    try:
        worker.conn.send_bytes(payload)
    except OSError:
        return None  # it exited while idle: the call never reached it
    worker.state = _BUSY
    message = _await_reply(pool, worker, seconds=seconds, grace=grace, name=name)
    return None if message == BYE else message


def _await_reply(
    pool: _Pool | None, worker: _Worker, *, seconds: float | None, grace: float, name: str
) -> bytes:
    """The child's reply; raises TimeoutExpired (after killing its tree) or ProcessCrashed."""
    started = clock()
    until = None if seconds is None else started + seconds
    try:
        message = _next_message(worker, until)
    except _ChildDied:
        raise _died(worker, grace, name) from None
    if message is None:
        if pool is None:
            stopped = _finish(worker, grace)
        else:
            stopped = pool.discard(worker, grace, replace=True)
        raise TimeoutExpired(seconds, elapsed=clock() - started, name=name, stopped=stopped)
    return message


def _await_ready(worker: _Worker, grace: float, name: str, method: str) -> None:
    try:
        message = _next_message(worker, clock() + START_TIMEOUT)
    except _ChildDied:
        error = _died(worker, grace, name)
        if isinstance(error, ProcessCrashed) and error.exitcode == _NO_MAIN_GUARD:
            raise _no_main_guard(name, method) from None
        raise error from RuntimeError(
            "the child process died while it started: under spawn and forkserver it "
            "imports the main module again (its traceback is on stderr)"
        )
    if message is None:
        raise RuntimeError(f"the child process for {name} did not start in {START_TIMEOUT:g} s")
    worker.state = _IDLE


def _no_main_guard(name: str, method: str) -> RuntimeError:
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    where = "the main module" if main is None else os.path.basename(main)
    return RuntimeError(
        f'{where} needs `if __name__ == "__main__":` around the code that calls {name}: '
        f"each child process started by {method!r} imports the main module again, and its "
        f"top-level code called {name} there too (or pass start_method='fork')"
    )


def _next_message(worker: _Worker, until: float | None) -> bytes | None:
    """The child's next message, or None once ``until`` passes.

    Waits in slices, so that an outer deadline's interrupt or a KeyboardInterrupt
    lands here in time. Raises _ChildDied if the child ends first.
    """
    conn_fd = worker.conn.fileno()
    while True:
        wait = SLICE
        outer = remaining()
        if outer is not None:
            wait = min(wait, max(outer, _MIN_SLICE))
        if until is not None:
            wait = max(0.0, min(wait, until - clock()))
        events = worker.poller.poll(math.ceil(wait * 1000))
        if any(fd == conn_fd for fd, _mask in events):
            try:
                return worker.conn.recv_bytes()
            except (EOFError, OSError):
                raise _ChildDied from None
        if events or not worker.process.is_alive():
            raise _ChildDied
        if until is not None and clock() >= until:
            return None


@protect
def _died(worker: _Worker, grace: float, name: str) -> BaseException:
    """The error for a child that ended without replying; clears up what it left."""
    exiting = SystemExit(f"the process running {name} was stopped: the interpreter is exiting")
    if _stopped_at_exit(worker):
        # Only daemon threads still wait at exit: end them quietly, whatever the
        # clean-up meets while the interpreter shuts down.
        with contextlib.suppress(Exception):
            _finish(worker, grace)
        return exiting
    process = worker.process
    wait_dead(process, grace)
    code = process.exitcode
    _finish(worker, grace)
    if _stopped_at_exit(worker):  # the exit began while we waited
        return exiting
    if code is None:
        return RuntimeError(f"lost contact with the process running {name}")
    return ProcessCrashed(name, exitcode=code, pid=worker.pid)


def _notify(worker: _Worker) -> None:
    hook = _dispatch_hook
    if hook is not None:
        hook(worker.pid)


def _discard_surely(pool: _Pool | None, worker: _Worker, grace: float) -> None:
    """Kill ``worker``'s tree even if an interrupt lands in the middle of it."""
    for _attempt in range(3):
        try:
            if pool is None:
                _finish(worker, grace)
            else:
                pool.discard(worker, grace)
        except BaseException:
            continue  # finish the job; the caller re-raises the first exception
        return


# --- fork: a fresh copy of the caller for each call --------------------------


def _call_forked(
    function: Callable[..., R],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    seconds: float | None,
    grace: float,
    name: str,
) -> R:
    track_local_classes(function, args, kwargs)
    worker: _Worker | None = None
    try:
        worker = _start_forked(function, args, kwargs)
        _notify(worker)
        message = _await_reply(None, worker, seconds=seconds, grace=grace, name=name)
    except BaseException:
        if worker is not None:
            _discard_surely(None, worker, grace)
        raise
    if wait_dead(worker.process, grace):
        worker.state = _DEAD
        worker.conn.close()
        _reaped(worker)
    else:
        _finish(worker, grace)  # it lingers after replying (threads, atexit): stop it
    return unpack_reply(message, name)  # type: ignore[no-any-return]


@protect
def _start_forked(function: Callable[..., Any], args: Any, kwargs: Any) -> _Worker:
    worker = start_worker(
        multiprocessing.get_context("fork"), forked_main, (function, args, kwargs)
    )
    worker.state = _BUSY
    return worker
