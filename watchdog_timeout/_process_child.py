"""What runs in the child process, and how its reply travels back.

Design notes
------------
A child started by ``spawn`` or ``forkserver`` shares nothing with the caller:
the function, its arguments, its result and its exception all cross a socket as
pickles, and the child must be a tree the caller can stop and a process that
dies with it.

Things that don't work:

- ``PR_SET_PDEATHSIG`` alone: it fires when the parent *thread* exits, and the
  grandchildren of a dead child are still orphaned (``_process_tree`` kills them).
- Keeping forkserver's "alive" pipe, which every forkserver child inherits: the
  server (our parent, whose death kills us) would outlive the caller while we run.

Solution:

- Every child puts itself in its own process group, resets the Python signal
  handlers it inherited, ignores SIGINT (Ctrl-C reaches the parent, which kills
  the child) and asks for SIGKILL when its parent dies (forkserver's single
  thread, or the parent's main thread: the caller decides which). It lets go of
  forkserver's "alive" pipe, so that the server, and then the child, does die
  with the caller. It also makes itself a subreaper: orphans of its descendants
  are reparented to it rather than to init, so they stay in the tree that is
  killed at the deadline, and it reaps those that end in other process groups
  after each call (``_process_tree.reap_adopted``). This needs ctypes for
  ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` and ``prctl(PR_SET_CHILD_SUBREAPER)``,
  which neither ``os`` nor ``signal`` offers and which a process can only make
  for itself, so ctypes is imported here, in the child and on Linux only (the
  package's other ctypes users are ``_async_raise`` and ``_frames``).
- The call comes pickled, by reference or by value (``_process_pack``).
- Results and exceptions come back pickled. An exception comes with its
  frames, rebuilt in the caller after the caller's own (``_process_traceback``);
  if it was chained in the child, the child's whole traceback comes as text too
  and is attached as ``__cause__`` (a ``_ChildTraceback``, as
  ``concurrent.futures`` does). An exception that cannot travel becomes a
  ``RuntimeError`` that names its type and message.
- A pooled child says READY once started, then answers each call; with no call
  for ``idle_timeout`` it says BYE and exits (a call sent to it at that moment
  is never read). A child whose function calls ``os.fork`` answers once: the
  copy exits.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing.connection
import os
import pickle
import select
import signal
import sys
import threading
import traceback
import types
from typing import Any, Callable

from . import _delivery
from ._errors import TimeoutExpired, _Interrupt
from ._process_pack import PROTOCOL, Target, describe, dumps, resolve
from ._process_traceback import frames_of, rebuild
from ._process_tree import reap_adopted

__all__ = (
    "BYE",
    "READY",
    "NotFoundInChild",
    "detach_forkserver",
    "forked_main",
    "unpack_reply",
    "worker_main",
)

#: What a pooled child sends once it is started, and when it retires unasked.
READY, BYE = b"R", b"B"


class NotFoundInChild(TypeError):
    """The child could not find something named in the call: send it by value."""


class _ChildTraceback(Exception):
    """The traceback of an exception raised in the child process, as text.

    Attached as ``__cause__`` of the exception re-raised in the caller.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


# --- what travels: the reply -------------------------------------------------------


def unpack_reply(message: bytes, name: str) -> Any:
    """The result in the child's reply, or its exception raised again here."""
    try:
        reply = pickle.loads(message)
    except Exception as exc:
        raise TypeError(
            f"the result of {name} cannot be rebuilt in this process: {type(exc).__name__}: {exc}"
        ) from exc
    kind = reply[0]
    if kind == "ok":
        return reply[1]
    if kind == "unsendable":
        raise TypeError(f"{name} returned {reply[1]}, so it cannot be sent back from the child")
    if kind in ("unusable", "unfound"):
        error_class = NotFoundInChild if kind == "unfound" else TypeError
        raise error_class(
            f"{name} could not be set up in the child process: {reply[1]}"
        ) from _ChildTraceback(reply[2])
    _kind, data, type_name, text, tb_text, frames, chained, why = reply
    error: BaseException | None = None
    if data is not None:
        try:
            error = pickle.loads(data)
        except Exception as exc:
            why = f"it cannot be rebuilt in this process: {type(exc).__name__}: {exc}"
    cause: BaseException | None = None
    if not isinstance(error, BaseException):
        error = RuntimeError(
            f"{name} raised {type_name}: {text} (the exception itself could not be "
            f"sent back from the child process: {why})"
        )
        cause = _ChildTraceback(tb_text)
    tb = rebuild(frames)
    if cause is None and (chained or (frames and tb is None)):
        # The child's chain, or frames that could not be rebuilt: as text.
        cause = _ChildTraceback(tb_text)
    try:
        # The function's own frames follow ours, as if the call had been made here.
        raise error.with_traceback(tb) from cause
    finally:
        del error, cause, tb


# --- the child's side ------------------------------------------------------------


def worker_main(
    conn: multiprocessing.connection.Connection,
    parent_death: bool,
    idle_timeout: float | None,
    on_exit: Callable[[], object],
) -> None:
    """A pooled child: run calls until the parent closes the socket or none comes in time.

    ``on_exit`` runs when the loop ends: the caller's shutdown, which stops the
    pools of the child's own nested calls.
    """
    _prepare_child(parent_death)
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    wait_ms = -1 if idle_timeout is None else math.ceil(idle_timeout * 1000)
    cache: dict[Target, Callable[..., Any]] = {}
    me = os.getpid()
    try:
        conn.send_bytes(READY)
        while True:
            if not poller.poll(wait_ms):
                conn.send_bytes(BYE)  # and never read again: a call sent now is retried
                break
            reply = _serve(conn.recv_bytes(), cache)
            if os.getpid() != me:
                os._exit(0)  # a copy made by os.fork() in the function: it must not answer
            conn.send_bytes(reply)
            reap_adopted()
    except (EOFError, OSError):
        pass  # the parent closed our socket, or has gone
    finally:
        on_exit()


def forked_main(
    conn: multiprocessing.connection.Connection, function: Any, args: Any, kwargs: Any
) -> None:
    """A fresh fork of the caller: make one call and send the reply."""
    _prepare_child(parent_death=True)
    me = os.getpid()
    reply = _call_and_pack(function, args, kwargs)
    if os.getpid() != me:
        os._exit(0)  # a copy made by os.fork() in the function: it must not answer
    with contextlib.suppress(OSError):  # the parent has gone
        conn.send_bytes(reply)


def _serve(job: bytes, cache: dict[Target, Callable[..., Any]]) -> bytes:
    try:
        target, args, kwargs = pickle.loads(job)
        function = _callable_of(target, cache)
    except BaseException as exc:
        # Something named is not here (defined under the main module's guard, or
        # set at run time): the caller sends it again by value.
        kind = "unfound" if isinstance(exc, (LookupError, AttributeError, ImportError)) else ""
        detail = f"{type(exc).__name__}: {exc}"
        return pickle.dumps((kind or "unusable", detail, _format(exc)), protocol=PROTOCOL)
    return _call_and_pack(function, args, kwargs)


def _callable_of(target: Target, cache: dict[Target, Callable[..., Any]]) -> Callable[..., Any]:
    kind = target[0]
    if kind == "value":
        return target[1]  # type: ignore[no-any-return]
    ref = target[2] if kind == "method" else target
    function = cache.get(ref)
    if function is None:
        function = cache[ref] = resolve(*ref[1:])
    if kind == "method":
        return types.MethodType(function, target[1])
    return function


def _call_and_pack(function: Callable[..., Any], args: Any, kwargs: Any) -> bytes:
    try:
        result = function(*args, **kwargs)
    except BaseException as exc:
        return _pack_exception(exc)
    finally:
        del args, kwargs
    try:
        return dumps(("ok", result))
    except Exception as exc:
        what = f"{describe(result)}, which cannot be pickled ({type(exc).__name__}: {exc})"
        return pickle.dumps(("unsendable", what), protocol=PROTOCOL)


def _pack_exception(exc: BaseException) -> bytes:
    if isinstance(exc, _Interrupt) and not isinstance(exc, TimeoutExpired):
        # A deadline's interrupt escaped its scope here: it means nothing to the parent.
        exc = RuntimeError(f"an interrupt escaped its deadline in the child process: {exc}")
    kind = type(exc)
    type_name = f"{kind.__module__}.{kind.__qualname__}"
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable>"
    data: bytes | None
    why = ""
    try:
        data = dumps(exc)
    except Exception as error:
        data, why = None, f"{type(error).__name__}: {error}"
    chained = exc.__cause__ is not None or (
        exc.__context__ is not None and not exc.__suppress_context__
    )
    frames = frames_of(exc, __file__)
    reply = ("raised", data, type_name, text, _format(exc), frames, chained, why)
    return pickle.dumps(reply, protocol=PROTOCOL)


def _format(exc: BaseException) -> str:
    tb = exc.__traceback__
    if tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next  # our own frame that made the call
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _prepare_child(parent_death: bool) -> None:
    """Make a new child a tree we can stop, deaf to the parent's signal handlers."""
    parent = os.getppid()
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # a group of its own: Ctrl-C at the terminal goes to the parent
    _prctl(parent_death)
    detach_forkserver()
    _reset_signals()
    if parent_death and os.getppid() != parent:
        os._exit(1)  # the parent died before the parent-death signal was armed


def _prctl(parent_death: bool) -> None:
    """Linux: die with the parent (if asked), and adopt the orphans of our descendants."""
    if not sys.platform.startswith("linux"):
        return
    # The child's only use of ctypes, on Linux: two prctl() calls.
    import ctypes  # noqa: PLC0415

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if parent_death:
            libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0)
        # An orphan (a daemon's double fork, `setsid cmd &` from a shell that exits)
        # comes to us instead of init, so it stays in the tree that is killed.
        libc.prctl(_PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1), 0, 0, 0)
    except (OSError, AttributeError):
        pass


_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36


def detach_forkserver(*, forget_server: bool = False) -> None:
    """Let go of the forkserver's "alive" pipe (and with ``forget_server``, of the server).

    Every forkserver child holds that pipe, so the server (our parent, whose
    death kills us) would otherwise outlive the caller while we run.
    """
    server = getattr(sys.modules.get("multiprocessing.forkserver"), "_forkserver", None)
    if server is None:
        return
    if forget_server:
        server._forkserver_pid = server._forkserver_address = None
        server._lock = threading.Lock()
    elif getattr(server, "_forkserver_pid", 0) is not None:
        return  # not a forkserver child: the server is ours
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None:
        server._forkserver_alive_fd = None
        with contextlib.suppress(OSError):
            os.close(fd)


def _reset_signals() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    keep = getattr(_delivery, "_on_wakeup_signal", None)
    for number in signal.valid_signals():
        try:
            handler = signal.getsignal(number)
            if callable(handler) and handler is not keep:
                signal.signal(number, signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            continue
    signal.signal(signal.SIGINT, _ignore_signal)
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)


def _ignore_signal(signum: int, frame: types.FrameType | None) -> None:
    """SIGINT in a child: ignored (a Python handler, so that exec resets it)."""
