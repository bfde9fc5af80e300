"""The warm pool behind ``isolation="process"``: children kept ready, per start method.

Design notes
------------
A child costs 5-15 ms to start under forkserver and 50-100 ms under spawn, more
than many calls it will run, so children are started ahead, lent to one call at
a time and taken back. This module owns them: it starts, lends, retires and
kills children, and answers for them when the caller's process exits or forks.
Sending a call and waiting for the reply is ``_process`` (which imports this
module, never the other way round); what runs in the child, ``_process_child``;
how a child's tree is killed, ``_process_tree``.

Things that don't work:

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

Solution:

- A warm pool per start method: idle children wait on a socket pair; a call
  takes the newest ready one (or one starting, or starts one) and gives it back;
  up to ``MAX_IDLE`` are kept. A child with no call for ``IDLE_TIMEOUT`` says
  goodbye and exits by itself; a call sent to it at that moment gets the goodbye
  and is retried on another child (it never ran). A killed child is replaced at
  once, started in the background. One C lock guards the lists, held only for
  list operations; acquire, release and discard are protected from our own
  interrupts (``_delivery.protect``).
- The caller's side, ``_process`` (and with it this module and
  ``_process_child``), is preloaded in the forkserver (when we start it): a
  child forked from it has what its loop and nested calls need. The main module
  is still imported by each child, as multiprocessing does.
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
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import multiprocessing.process
import multiprocessing.util
import os
import select
import sys
import threading
from typing import Any

from ._process_child import detach_forkserver, worker_main
from ._process_tree import stop_tree, wait_dead
from ._seconds import clock
from ._sender import protect

__all__ = ("CHILD_NAME", "IDLE_TIMEOUT", "MAX_IDLE")

#: The name of every child process we start (``multiprocessing`` sets it in the
#: child before it imports the main module).
CHILD_NAME = "watchdog_timeout-process"
#: Idle children kept per start method.
MAX_IDLE = 4
#: Seconds an idle child waits for a call before it exits by itself (None: never).
IDLE_TIMEOUT: float | None = 30.0

#: What the forkserver imports once for every child: the caller's side, which
#: imports this module (named here, not imported: imports only go this way).
_PRELOAD = f"{__name__.rpartition('.')[0]}._process"
_closed = False
_exit_registered_in = 0


class _State(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    RETIRED = "retired"
    DEAD = "dead"


_STARTING, _IDLE, _BUSY, _RETIRED, _DEAD = _State


class _Worker:
    """A child process and the parent's end of its socket."""

    __slots__ = ("conn", "killed", "pid", "poller", "process", "reaped", "state", "stopped")

    def __init__(self, process: Any, conn: multiprocessing.connection.Connection) -> None:
        self.process = process
        self.pid: int = process.pid  # kept: the process object is closed once reaped
        self.conn = conn
        self.state = _STARTING
        self.killed = False  # stopped by us: its death is not a crash
        self.stopped = True
        self.reaped = False
        self.poller = select.poll()
        self.poller.register(conn.fileno(), select.POLLIN)
        self.poller.register(process.sentinel, select.POLLIN)

    def __repr__(self) -> str:
        return f"<_Worker pid={self.pid} [{self.state.value}]>"


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

    @protect
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

    @protect
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

    @protect
    def forget(self, worker: _Worker) -> None:
        """Drop a child that said goodbye."""
        with self._lock:
            if worker in self._workers:
                self._retire(worker)

    @protect
    def discard(self, worker: _Worker, grace: float, *, replace: bool = False) -> bool:
        """Kill a child's tree; with ``replace``, start a new child in its place."""
        with self._lock:
            self._workers.discard(worker)
            if worker in self._idle:
                self._idle.remove(worker)
            if worker.state is _DEAD:  # already done (by the timeout path, or at exit)
                if not worker.stopped and worker not in self._retired:
                    self._retired.append(worker)  # reaped later, if ever
                return worker.stopped
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

    @protect
    def _start(self) -> _Worker:
        parent_death = self._method == "forkserver" or (
            threading.current_thread() is threading.main_thread()
        )
        worker = start_worker(self._context, worker_main, (parent_death, IDLE_TIMEOUT, _shutdown))
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
    # Import the caller's side (and so this module) once in the server rather
    # than in every child (~70 ms each); only if the server has not started yet,
    # and keeping what the application asked to preload.
    server = getattr(sys.modules.get("multiprocessing.forkserver"), "_forkserver", None)
    if server is None or getattr(server, "_forkserver_pid", None) is not None:
        return
    modules = list(getattr(server, "_preload_modules", None) or [])
    if _PRELOAD not in modules:
        context.set_forkserver_preload([*modules, _PRELOAD])


def _exiting() -> RuntimeError:
    return RuntimeError("isolation='process' is not available: the interpreter is exiting")


@protect
def start_worker(context: Any, target: Any, args: tuple[Any, ...]) -> _Worker:
    """Start a child running ``target(conn, *args)``, connected to us by a pipe."""
    parent_end, child_end = context.Pipe()
    process = context.Process(
        target=target,
        args=(child_end, *args),
        name=CHILD_NAME,
        daemon=False,
    )
    # Inside a daemonic process (a multiprocessing.Pool worker) start() refuses to
    # have children; ours are killed with their tree, so lift the flag for the call.
    config = multiprocessing.process.current_process()._config  # type: ignore[attr-defined]
    daemonic = bool(config.get("daemon"))
    try:
        if daemonic:
            config["daemon"] = False
        process.start()
    except BaseException:
        parent_end.close()
        raise
    finally:
        if daemonic:
            config["daemon"] = True
        child_end.close()
    return _Worker(process, parent_end)


def _shutdown(timeout: float = 2.0) -> None:
    """Stop every pool: at interpreter exit, and when a pooled child's loop ends."""
    global _closed
    with _pools_lock:
        _closed = True
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close(timeout)


def _stopped_at_exit(worker: _Worker) -> bool:
    """Whether ``worker`` was stopped because the interpreter is exiting."""
    return worker.killed or _closed


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


@protect
def _finish(worker: _Worker, grace: float) -> bool:
    """Kill ``worker``'s tree (if not done yet) and reap it; whether it is gone."""
    if worker.state is _DEAD:
        return worker.stopped
    if worker.reaped:
        worker.state = _DEAD
        return True
    before, worker.state = worker.state, _DEAD  # claimed: the exit path may race us
    if worker.pid is not None:
        try:
            worker.stopped = stop_tree(worker.process, grace)
        except BaseException:  # a second Ctrl-C: left as it was, so the retry kills
            worker.state = before
            raise
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
