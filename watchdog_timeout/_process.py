"""``isolation="process"``: run a call in a child process, which can always be stopped.

Design notes
------------
An asynchronous exception cannot stop C code that never returns to the
interpreter; killing a process can. Everything here serves one promise: at the
deadline the child and everything it started are gone, and the caller learns how
the call ended. This module is the caller's side: the start method, the warm
pool, the wait for the reply, exit and fork. What runs in the child and how a
call travels is in ``_process_child``; how a child's tree is killed, in
``_process_tree``.

Things that don't work:

- ``fork`` as the default: it copies the caller's threads' locks mid-use (CPython
  3.12 warns, 3.14 no longer defaults to it), and a pool forked once would run
  the module state of the moment it was forked.
- ``spawn`` for every child: 50-100 ms of interpreter start-up per child, paid
  again after every kill.
- ``daemon=True`` children (pebble, wrapt-timeout-decorator): they may not have
  children, so nested calls fail ("daemonic processes are not allowed to have
  children"). But non-daemonic children are joined by ``multiprocessing`` at
  exit, and in a multiprocessing child (a Pool worker) that happens before
  ``atexit`` runs: an idle child kept it waiting for ``IDLE_TIMEOUT``.
- Relying on forkserver's ``__main__`` preload: it never happens (CPython asks
  for ``main_path``, the preparation data calls it ``init_main_from_path``), so
  every child imports the main module and this package again (~70 ms here).
- multiprocessing's forkserver in an ``os.fork()`` copy of the caller: it
  calls ``waitpid()`` on a server that is not its child: ChildProcessError.
- Waiting for the reply in one blocking call: the caller's outer deadline and
  Ctrl-C land only when it returns.

Solution:

- The default start method is ``forkserver``, on every Python (spawn where it is
  missing): children are forked from a small single-threaded server, 5-15 ms
  each after a one-off ~150 ms, and behave the same on 3.9 and 3.14, whose
  default it is. This module is preloaded in the server (when we start it); the
  main module is still imported by each child, as multiprocessing does. ``fork``
  only when asked for: then each call forks a fresh copy of the caller
  (closures, lambdas and unpicklable arguments work) and there is no pool.
- A warm pool per start method: idle children wait on a socket pair; a call
  takes the newest ready one (or one starting, or starts one) and gives it back;
  up to ``MAX_IDLE`` are kept. A child with no call for ``IDLE_TIMEOUT`` says
  goodbye and exits by itself; a call sent to it at that moment gets the goodbye
  and is retried on another child (it never ran). A killed child is replaced at
  once, started in the background. One C lock guards the lists, held only for
  list operations; acquire, release and discard are protected from our own
  interrupts (``_delivery.protect``).
- The caller waits in slices of at most ``SLICE`` seconds, shorter when an
  outer deadline comes sooner: its interrupt (or Ctrl-C) lands between slices, or
  in the main thread interrupts the wait itself; the except path kills the tree
  before the interrupt goes on. The limit starts when a ready child gets the call,
  so interpreter start-up never eats the function's time.
- At exit (``atexit``, and a ``multiprocessing.util.Finalize`` that runs before
  multiprocessing joins its children), idle children are told to go (their
  socket closes) and busy ones are killed; a daemon thread still waiting gets a
  quiet SystemExit. After ``os.fork`` the copy forgets the parent's pool (and
  forkserver) without touching them.
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import math
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import multiprocessing.process
import multiprocessing.util
import os
import select
import sys
import threading
from typing import Any, Callable, TypeVar

from ._delivery import protect
from ._errors import ProcessCrashed, TimeoutExpired
from ._process_child import (
    BYE,
    detach_forkserver,
    forked_main,
    pack_call,
    unpack_reply,
    worker_main,
)
from ._process_tree import stop_tree, wait_dead
from ._scope import remaining
from ._seconds import clock

__all__ = ("DEFAULT_START_METHOD", "IDLE_TIMEOUT", "MAX_IDLE", "call_in_process")

R = TypeVar("R")

#: Used when ``start_method`` is None (``spawn`` where forkserver is missing).
DEFAULT_START_METHOD = "forkserver"
#: Idle children kept per start method.
MAX_IDLE = 4
#: Seconds an idle child waits for a call before it exits by itself (None: never).
IDLE_TIMEOUT: float | None = 30.0
#: Seconds a new child may take to start before the call gives up.
START_TIMEOUT = 30.0
#: The longest the caller blocks at once, so that interrupts land in time.
SLICE = 0.05
_MIN_SLICE = 0.002
_ATTEMPTS = 3

#: Private test hook: called with the child's pid before each call is handed over.
_dispatch_hook: Callable[[int], object] | None = None
_closed = False
_exit_registered_in = 0


class _ChildDied(Exception):
    """The child ended (or its socket broke) before it replied."""


class _State(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    RETIRED = "retired"
    DEAD = "dead"


_STARTING, _IDLE, _BUSY, _RETIRED, _DEAD = _State


class _Worker:
    """A child process and the parent's end of its socket."""

    __slots__ = ("conn", "killed", "poller", "process", "reaped", "state", "stopped")

    def __init__(self, process: Any, conn: multiprocessing.connection.Connection) -> None:
        self.process = process
        self.conn = conn
        self.state = _STARTING
        self.killed = False  # stopped by us: its death is not a crash
        self.stopped = True
        self.reaped = False
        self.poller = select.poll()
        self.poller.register(conn.fileno(), select.POLLIN)
        self.poller.register(process.sentinel, select.POLLIN)

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def __repr__(self) -> str:
        return f"<_Worker pid={self.process.pid} [{self.state.value}]>"


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
            :data:`DEFAULT_START_METHOD`.

    Returns:
        What the function returned in the child.

    Raises:
        TimeoutExpired: The limit ran out; the child's tree was killed
            (``stopped=False`` if it outlived SIGKILL).
        ProcessCrashed: The child died on its own (a signal or an exit code).
        TypeError: The function, an argument or the result cannot travel between
            the processes; the message names it and says why.
        ValueError: ``start_method`` is unknown or not available.
        BaseException: Whatever the function raised, with the child's traceback
            as ``__cause__``.
    """
    method = _check_start_method(start_method)
    if method == "fork":
        return _call_forked(function, args, kwargs, seconds=seconds, grace=grace, name=name)
    payload = pack_call(function, args, kwargs, name, method)
    pool = _pool_for(method)
    for _attempt in range(_ATTEMPTS):
        worker: _Worker | None = None
        try:
            worker = pool.acquire()
            if worker.state is _STARTING:
                _await_ready(worker, grace, name)
            reply = _run(pool, worker, payload, seconds=seconds, grace=grace, name=name)
        except BaseException:
            if worker is not None:
                _discard_surely(pool, worker, grace)
            raise
        if reply is not None:
            pool.release(worker)
            return unpack_reply(reply, name)  # type: ignore[no-any-return]
        pool.forget(worker)  # it retired before it read the call: try another
    raise RuntimeError(f"no child process would take {name} after {_ATTEMPTS} attempts")


def _check_start_method(start_method: str | None) -> str:
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


def _await_ready(worker: _Worker, grace: float, name: str) -> None:
    try:
        message = _next_message(worker, clock() + START_TIMEOUT)
    except _ChildDied:
        raise _died(worker, grace, name) from RuntimeError(
            "the child process died while it started: under spawn and forkserver it "
            "imports the main module again, so guard a script's own code with "
            "`if __name__ == '__main__':` (its traceback is on stderr)"
        )
    if message is None:
        raise RuntimeError(f"the child process for {name} did not start in {START_TIMEOUT:g} s")
    worker.state = _IDLE


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
    if code < 0:
        return ProcessCrashed(name, signal=-code)
    return ProcessCrashed(name, exitcode=code)


def _stopped_at_exit(worker: _Worker) -> bool:
    return worker.killed or _closed


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


def _start_forked(function: Callable[..., Any], args: Any, kwargs: Any) -> _Worker:
    context = multiprocessing.get_context("fork")
    parent_end, child_end = context.Pipe()
    process = context.Process(
        target=forked_main,
        args=(child_end, function, args, kwargs),
        name="watchdog_timeout-process",
        daemon=False,
    )
    try:
        _start_process(process)
    finally:
        child_end.close()
    worker = _Worker(process, parent_end)
    worker.state = _BUSY
    return worker


# --- the pool ----------------------------------------------------------------


class _Pool:
    """Warm children for one start method, shared by every calling thread."""

    __slots__ = ("_closed", "_context", "_idle", "_lock", "_method", "_retired", "_workers")

    def __init__(self, method: str) -> None:
        self._method = method
        self._context: Any = multiprocessing.get_context(method)
        if method == "forkserver":
            _preload_in_forkserver(self._context)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []  # ready or starting, newest last
        self._workers: set[_Worker] = set()  # every child not retired or dead
        self._retired: list[_Worker] = []  # told to exit, not reaped yet
        self._closed = False

    def acquire(self) -> _Worker:
        """The newest ready idle child, else one that is starting, else a new one."""
        with self._lock:
            if self._closed:
                raise _exiting()
            self._reap()
            idle = self._idle
            for index in range(len(idle) - 1, -1, -1):
                worker = idle[index]
                if worker.state is not _IDLE:
                    continue
                del idle[index]
                if worker.poller.poll(0):  # a goodbye, or the child is gone
                    self._retire(worker)
                    continue
                worker.state = _BUSY
                return worker
            if idle:
                return idle.pop()  # starting: the caller waits until it is ready
        return self._start()

    def release(self, worker: _Worker) -> None:
        """Take back a child that finished a call."""
        with self._lock:
            if worker.state is not _BUSY:
                return
            if self._closed or len(self._idle) >= MAX_IDLE:
                self._retire(worker)
                return
            worker.state = _IDLE
            self._idle.append(worker)

    def forget(self, worker: _Worker) -> None:
        """Drop a child that said goodbye."""
        with self._lock:
            if worker in self._workers:
                self._retire(worker)

    def discard(self, worker: _Worker, grace: float, *, replace: bool = False) -> bool:
        """Kill a child's tree; with ``replace``, start a new child in its place."""
        with self._lock:
            if worker.state is _DEAD:
                return worker.stopped  # already done (by the timeout path, or at exit)
            self._workers.discard(worker)
            if worker in self._idle:
                self._idle.remove(worker)
        stopped = _finish(worker, grace)
        if not stopped:
            with self._lock:
                self._retired.append(worker)  # reaped later, if ever
        if replace:
            with self._lock:
                wanted = not self._closed and len(self._idle) < MAX_IDLE
            if wanted:
                # Started now, ready by the next call; a failure shows up there.
                with contextlib.suppress(Exception):
                    fresh = self._start()
                    with self._lock:
                        self._idle.insert(0, fresh)
        return stopped

    def _start(self) -> _Worker:
        parent_end, child_end = self._context.Pipe()
        parent_death = self._method == "forkserver" or (
            threading.current_thread() is threading.main_thread()
        )
        process = self._context.Process(
            target=worker_main,
            args=(child_end, parent_death, IDLE_TIMEOUT, _shutdown),
            name="watchdog_timeout-process",
            daemon=False,
        )
        try:
            _start_process(process)
        finally:
            child_end.close()
        worker = _Worker(process, parent_end)
        with self._lock:
            self._workers.add(worker)
        return worker

    def _retire(self, worker: _Worker) -> None:
        # Lock held. Closing our end makes the child's loop end.
        worker.state = _RETIRED
        self._workers.discard(worker)
        with contextlib.suppress(OSError):
            worker.conn.close()
        self._retired.append(worker)

    def _reap(self) -> None:
        # Lock held: collect retired children that have exited (no zombies).
        if self._retired:
            self._retired = [w for w in self._retired if not _reaped(w)]

    def close(self, timeout: float) -> None:
        """Stop every child: idle ones are told to go, busy ones are killed."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = [w for w in self._workers if w not in idle]
            for worker in idle:
                self._retire(worker)
            leaving, self._retired = self._retired, []
            self._workers.clear()
        for worker in busy:
            worker.killed = True
            _finish(worker, 0.2)
        end = clock() + timeout
        for worker in leaving:
            if not worker.reaped and not wait_dead(worker.process, max(0.0, end - clock())):
                _finish(worker, 0.2)
            _reaped(worker)

    def forget_in_child(self) -> None:
        """After ``os.fork``, in the child: let go of the parent's children untouched."""
        children = getattr(multiprocessing.process, "_children", None)
        for worker in [*self._idle, *self._workers, *self._retired]:
            if children is not None:
                children.discard(worker.process)
            with contextlib.suppress(OSError):
                worker.conn.close()
        self._idle, self._workers, self._retired = [], set(), []
        self._lock = threading.Lock()


_pools: dict[str, _Pool] = {}
_pools_lock = threading.Lock()


def _pool_for(method: str) -> _Pool:
    pool = _pools.get(method)
    if pool is None:
        with _pools_lock:
            if _closed:
                raise _exiting()
            pool = _pools.get(method)
            if pool is None:
                _stop_at_exit()
                pool = _pools[method] = _Pool(method)
    return pool


def _stop_at_exit() -> None:
    # In a multiprocessing child (a Pool worker, say) the process ends with
    # multiprocessing's exit function, which joins every child before atexit
    # runs: our finalizer runs before those joins. Registered once per process.
    global _exit_registered_in
    if _exit_registered_in != os.getpid():
        _exit_registered_in = os.getpid()
        multiprocessing.util.Finalize(None, _shutdown, exitpriority=100)


def _preload_in_forkserver(context: Any) -> None:
    # Import this module once in the server rather than in every child (~70 ms
    # each); only if the server has not started yet, and keeping what the
    # application asked to preload.
    server = getattr(sys.modules.get("multiprocessing.forkserver"), "_forkserver", None)
    if server is None or getattr(server, "_forkserver_pid", None) is not None:
        return
    modules = list(getattr(server, "_preload_modules", None) or [])
    if __name__ not in modules:
        context.set_forkserver_preload([*modules, __name__])


def _exiting() -> RuntimeError:
    return RuntimeError("isolation='process' is not available: the interpreter is exiting")


def _start_process(process: Any) -> None:
    # Inside a daemonic process (a multiprocessing.Pool worker) start() refuses to
    # have children; ours are killed with their tree, so lift the flag for the call.
    config = multiprocessing.process.current_process()._config  # type: ignore[attr-defined]
    if not config.get("daemon"):
        process.start()
        return
    config["daemon"] = False
    try:
        process.start()
    finally:
        config["daemon"] = True


def _shutdown(timeout: float = 2.0) -> None:
    """Stop every pool: at interpreter exit, and when a pooled child's loop ends."""
    global _closed
    with _pools_lock:
        _closed = True
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close(timeout)


def _after_fork_in_child() -> None:
    global _pools_lock
    _pools_lock = threading.Lock()
    if "forkserver" in _pools:
        # multiprocessing's forkserver fails in a forked copy (it waitpid()s a
        # server that is not its child): start a server of its own when needed.
        detach_forkserver(forget_server=True)
    for pool in _pools.values():
        pool.forget_in_child()
    _pools.clear()


# Registered after multiprocessing.util's own exit function, so it runs first:
# the idle children are gone before multiprocessing joins its children.
atexit.register(_shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --- a worker's end: its tree killed (_process_tree), the child reaped --------


def _finish(worker: _Worker, grace: float) -> bool:
    """Kill ``worker``'s tree (if not done yet) and reap it; whether it is gone."""
    if worker.state is _DEAD:
        return worker.stopped
    if worker.reaped:
        worker.state = _DEAD
        return True
    worker.state = _DEAD
    process = worker.process
    if process.pid is not None:
        worker.stopped = stop_tree(process, grace)
    with contextlib.suppress(OSError):
        worker.conn.close()
    if worker.stopped:
        _reaped(worker)
    return worker.stopped


def _reaped(worker: _Worker) -> bool:
    """Whether the child has ended and been reaped; then release its descriptors."""
    if worker.reaped:
        return True
    if worker.process.is_alive():
        return False
    worker.reaped = True
    with contextlib.suppress(ValueError):
        worker.process.close()
    return True


protect(
    _Pool.acquire,
    _Pool.release,
    _Pool.forget,
    _Pool.discard,
    _Pool._start,
    _finish,
    _start_forked,
    _died,
)
